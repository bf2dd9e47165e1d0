//! Classify a request path into the OpenAI endpoint kind recorded and filtered on.
use std::fmt;
use std::str::FromStr;

/// Which OpenAI API a request called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    ChatCompletions,
    Responses,
    Embeddings,
    Completions,
    Files,
    Batches,
    Models,
    Other,
}

/// A `--endpoint` value that names no endpoint kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown endpoint {given:?}; expected one of: chat.completions, responses, embeddings, completions, files, batches, models, other")]
pub struct UnknownEndpoint {
    pub given: String,
}

impl EndpointKind {
    pub const ALL: [EndpointKind; 8] = [
        EndpointKind::ChatCompletions,
        EndpointKind::Responses,
        EndpointKind::Embeddings,
        EndpointKind::Completions,
        EndpointKind::Files,
        EndpointKind::Batches,
        EndpointKind::Models,
        EndpointKind::Other,
    ];

    /// The name stored in audit records and accepted by `--endpoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::ChatCompletions => "chat.completions",
            EndpointKind::Responses => "responses",
            EndpointKind::Embeddings => "embeddings",
            EndpointKind::Completions => "completions",
            EndpointKind::Files => "files",
            EndpointKind::Batches => "batches",
            EndpointKind::Models => "models",
            EndpointKind::Other => "other",
        }
    }

    /// Classifies a request target (`/v1/chat/completions?x=y`). The API part starts after a `v1`
    /// segment (`/v1/…`, `/openai/v1/…`) or an Azure-style `/openai/deployments/{name}/…` prefix;
    /// paths with neither are `Other`, since the intercepted hosts always use them.
    pub fn of_path(path: &str) -> EndpointKind {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let mut segments = path.split('/').filter(|segment| !segment.is_empty());
        let api_start = {
            let mut probe = segments.clone();
            match (probe.next(), probe.next(), probe.next()) {
                (Some("openai"), Some("deployments"), Some(_)) => Some(probe),
                _ => None,
            }
        };
        let mut rest = match api_start {
            Some(rest) => rest,
            None => {
                if !segments.any(|segment| segment == "v1") {
                    return EndpointKind::Other;
                }
                segments
            }
        };
        match (rest.next(), rest.next()) {
            (Some("chat"), Some("completions")) => EndpointKind::ChatCompletions,
            (Some("responses"), _) => EndpointKind::Responses,
            (Some("embeddings"), None) => EndpointKind::Embeddings,
            (Some("completions"), None) => EndpointKind::Completions,
            (Some("files"), _) => EndpointKind::Files,
            (Some("batches"), _) => EndpointKind::Batches,
            (Some("models"), _) => EndpointKind::Models,
            _ => EndpointKind::Other,
        }
    }
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndpointKind {
    type Err = UnknownEndpoint;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        EndpointKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == given)
            .ok_or_else(|| UnknownEndpoint {
                given: given.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::EndpointKind::{self, *};

    #[test]
    fn v1_paths_are_classified() {
        let cases = [
            ("/v1/chat/completions", ChatCompletions),
            (
                "/v1/chat/completions/chatcmpl-abc/messages",
                ChatCompletions,
            ),
            ("/v1/responses", Responses),
            ("/v1/responses/resp_123", Responses),
            ("/v1/responses/resp_123/input_items", Responses),
            ("/v1/responses/resp_123/cancel", Responses),
            ("/v1/embeddings", Embeddings),
            ("/v1/completions", Completions),
            ("/v1/files", Files),
            ("/v1/files/file-abc/content", Files),
            ("/v1/batches", Batches),
            ("/v1/batches/batch_abc/cancel", Batches),
            ("/v1/models", Models),
            ("/v1/models/gpt-4o", Models),
            ("/v1/images/generations", Other),
            ("/v1/audio/transcriptions", Other),
            ("/v1", Other),
            ("/", Other),
            ("", Other),
        ];
        for (path, kind) in cases {
            assert_eq!(EndpointKind::of_path(path), kind, "{path}");
        }
    }

    #[test]
    fn query_strings_and_trailing_slashes_are_ignored() {
        assert_eq!(
            EndpointKind::of_path("/v1/chat/completions?foo=bar"),
            ChatCompletions
        );
        assert_eq!(EndpointKind::of_path("/v1/embeddings/"), Embeddings);
        assert_eq!(EndpointKind::of_path("/v1/models?after=x#frag"), Models);
        assert_eq!(EndpointKind::of_path("/v1/files?purpose=batch"), Files);
    }

    #[test]
    fn prefixed_paths_are_classified() {
        assert_eq!(EndpointKind::of_path("/openai/v1/responses"), Responses);
        assert_eq!(
            EndpointKind::of_path(
                "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
            ),
            ChatCompletions
        );
        assert_eq!(
            EndpointKind::of_path("/openai/deployments/emb/embeddings"),
            Embeddings
        );
    }

    #[test]
    fn paths_without_an_api_prefix_are_other() {
        assert_eq!(EndpointKind::of_path("/chat/completions"), Other);
        assert_eq!(EndpointKind::of_path("/v2/chat/completions"), Other);
        assert_eq!(EndpointKind::of_path("/v1/chat"), Other);
        assert_eq!(EndpointKind::of_path("/v1/embeddings/extra"), Other);
    }

    #[test]
    fn names_round_trip_through_from_str() {
        for kind in EndpointKind::ALL {
            assert_eq!(kind.as_str().parse::<EndpointKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let err = "chat".parse::<EndpointKind>().unwrap_err();
        assert!(err.to_string().contains("\"chat\""), "{err}");
        assert!(err.to_string().contains("chat.completions"), "{err}");
    }
}
