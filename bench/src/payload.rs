//! The bodies the bench sends and serves: a 1 KiB chat request, a 2 KiB chat response, and the
//! events of a streamed chat completion. Built once, before anything is measured.

use bytes::Bytes;
use serde_json::json;

/// The size the chat request is padded to.
pub const REQUEST_BYTES: usize = 1024;
/// The size the non-streamed chat response is padded to.
pub const RESPONSE_BYTES: usize = 2048;
/// The model every request names; the bench policy allows it.
pub const MODEL: &str = "gpt-4o-mini";

/// A prompt of ordinary prose without personal data, as most prompts are: the policy's masking
/// scans all of it and replaces nothing.
const PROSE: &str = "Summarise the deployment notes below for the on-call engineer. The service \
    rolls out in three waves; each wave waits for the error budget to recover before the next one \
    starts. Keep the summary short and list the rollback steps first. ";

/// An address the bench policy masks (`mask-pii`, recognizer `email`): a request carrying it must
/// reach the upstream without it.
pub const UNMASKED_EMAIL: &str = "jane.roe@example.com";
/// A model outside the bench policy's `approved-models-only`: requests for it are denied.
pub const DENIED_MODEL: &str = "gpt-3.5-turbo";
/// Asks the upstream to hold its stream after the first event until the client side goes away
/// (a client that aborts mid-stream, with nothing left to race against).
pub const HOLD_MARKER: &str = "[soak: hold this stream until the client leaves]";

/// The non-streamed (`stream: false`) or streamed chat request, exactly [`REQUEST_BYTES`] long.
pub fn chat_request(stream: bool) -> Bytes {
    chat_request_of(MODEL, "", stream)
}

/// A chat request for `model` whose prompt starts with `lead`, padded to [`REQUEST_BYTES`].
pub fn chat_request_of(model: &str, lead: &str, stream: bool) -> Bytes {
    let padded = |padding: &str| {
        let content = format!("{lead}{padding}");
        let mut body = json!({
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a concise assistant for an SRE team."},
                {"role": "user", "content": content},
            ],
            "temperature": 0.2,
            "max_tokens": 256,
        });
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        serde_json::to_vec(&body).expect("a json! value serializes")
    };
    Bytes::from(pad_to(REQUEST_BYTES, padded))
}

/// A chat.completion object exactly [`RESPONSE_BYTES`] long.
pub fn chat_response() -> Bytes {
    let body = |content: &str| {
        serde_json::to_vec(&json!({
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion",
            "created": 1_763_683_200,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 230, "completion_tokens": 410, "total_tokens": 640},
            "system_fingerprint": "fp_bench",
        }))
        .expect("a json! value serializes")
    };
    Bytes::from(pad_to(RESPONSE_BYTES, body))
}

/// `events` content chunks, a usage chunk and `data: [DONE]`, each one SSE event.
pub fn stream_events(events: usize) -> Vec<Bytes> {
    let chunk = |delta: serde_json::Value, usage: serde_json::Value| {
        let event = json!({
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion.chunk",
            "created": 1_763_683_200,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": if delta.is_null() { json!([]) } else {
                json!([{"index": 0, "delta": delta, "finish_reason": null}])
            },
            "usage": usage,
        });
        Bytes::from(format!("data: {event}\n\n"))
    };
    let mut out = Vec::with_capacity(events + 2);
    for i in 0..events {
        let delta = if i == 0 {
            json!({"role": "assistant", "content": ""})
        } else {
            json!({"content": "rollout "})
        };
        out.push(chunk(delta, serde_json::Value::Null));
    }
    out.push(chunk(
        serde_json::Value::Null,
        json!({"prompt_tokens": 230, "completion_tokens": events, "total_tokens": 230 + events}),
    ));
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

/// Whether a chat request asks for a stream. The bench's own requests are compact JSON, and every
/// proxy forwards them as such (or re-serializes them compactly).
pub fn asks_for_stream(body: &[u8]) -> bool {
    contains(body, b"\"stream\":true")
}

/// Whether `needle` occurs in `body`.
pub fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|window| window == needle)
}

/// Grows `content` until `render(content)` is exactly `target` bytes.
fn pad_to(target: usize, render: impl Fn(&str) -> Vec<u8>) -> Vec<u8> {
    let mut content = String::new();
    while render(&content).len() < target {
        let missing = target - render(&content).len();
        let take = missing.min(PROSE.len());
        content.push_str(&PROSE[..take]);
    }
    let body = render(&content);
    assert_eq!(body.len(), target, "padding overshot: PROSE must be ASCII");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_sizes_the_report_names() {
        assert_eq!(chat_request(false).len(), REQUEST_BYTES);
        assert_eq!(chat_request(true).len(), REQUEST_BYTES);
        assert_eq!(chat_response().len(), RESPONSE_BYTES);
        let masked = chat_request_of(MODEL, UNMASKED_EMAIL, false);
        assert_eq!(masked.len(), REQUEST_BYTES);
        assert!(contains(&masked, UNMASKED_EMAIL.as_bytes()));
    }

    #[test]
    fn only_the_streamed_request_asks_for_a_stream() {
        assert!(asks_for_stream(&chat_request(true)));
        assert!(!asks_for_stream(&chat_request(false)));
    }

    #[test]
    fn a_stream_ends_with_usage_and_done() {
        let events = stream_events(3);
        assert_eq!(events.len(), 5);
        assert!(events[3].starts_with(b"data: {") && events[3].ends_with(b"\n\n"));
        assert_eq!(&events[4][..], b"data: [DONE]\n\n");
    }
}
