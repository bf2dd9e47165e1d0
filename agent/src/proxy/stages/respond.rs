//! Respond: the upstream's response as the agent gets it: hop-by-hop headers stripped and the
//! policy's response masks applied, an event stream event by event, a JSON body whole. The
//! exchange log then takes the body over (`http::handle`), recording it as it passes.
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};

use super::{forward::strip_hop_by_hop, forward::Forwarded, whole_body, ConnectionInfo, Refusal};
use crate::{
    audit::record::Outcome,
    proxy::{
        exchange_log::ExchangeLog,
        response_mask::{ResponseMasks, SharedMaskCounts},
        upstream::UpstreamBody,
    },
};

/// The response to hand the agent.
pub struct Answer {
    pub parts: http::response::Parts,
    pub body: UpstreamBody,
    /// Whether the response is an event stream.
    pub streamed: bool,
}

pub async fn respond(
    connection: &ConnectionInfo,
    log: &mut ExchangeLog,
    forwarded: Forwarded,
) -> Result<Answer, Refusal> {
    let Forwarded {
        response,
        endpoint,
        policy,
        response_rules,
    } = forwarded;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let streamed = is_event_stream(&parts.headers);
    if response_rules.is_empty() {
        let body = body.boxed_unsync();
        return Ok(Answer {
            parts,
            body,
            streamed,
        });
    }
    let masks = ResponseMasks {
        policy,
        rules: response_rules,
        counts: SharedMaskCounts::default(),
    };
    log.record_response_masks(masks.counts.clone());
    let upstream_error = |reason: String| -> Refusal {
        let error = crate::openai::error::bad_gateway(&connection.server_name, &reason);
        Refusal::new(error, reason, Outcome::UpstreamError)
    };
    let encoded = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        // Warden asked for identity; a compressed answer cannot be masked, so it is not passed on.
        let reason = "the upstream sent a compressed response that masking cannot read";
        return Err(upstream_error(reason.to_string()));
    }
    let body = if streamed {
        parts.headers.remove(header::CONTENT_LENGTH);
        masks.mask_stream(endpoint, body).boxed_unsync()
    } else if content_type_is(&parts.headers, "application/json") {
        // A JSON body is masked whole before the agent sees any of it; one too big to inspect is
        // not passed on unmasked.
        let inspect_limit = connection.context.config.policy.max_inspect_bytes as usize;
        let idle = connection.context.config.upstream_idle_timeout();
        let collected = tokio::time::timeout(idle, Limited::new(body, inspect_limit).collect());
        let Ok(collected) = collected.await else {
            let reason = format!(
                "the upstream's JSON response did not arrive within {}s ([upstream] idle_timeout_secs)",
                idle.as_secs()
            );
            let error = crate::openai::error::bad_gateway(&connection.server_name, &reason);
            return Err(Refusal::new(error, reason, Outcome::Timeout));
        };
        match collected {
            Ok(collected) => {
                let original = collected.to_bytes();
                let Some(masked) = masks.mask_whole(endpoint, original) else {
                    let reason = "the upstream's JSON response could not be parsed for masking";
                    return Err(upstream_error(reason.to_string()));
                };
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, masked.len().into());
                whole_body(masked)
            }
            Err(error) => {
                let reason = format!("response could not be inspected for masking: {error}");
                return Err(upstream_error(reason));
            }
        }
    } else {
        body.boxed_unsync()
    };
    Ok(Answer {
        parts,
        body,
        streamed,
    })
}

pub fn is_event_stream(headers: &HeaderMap) -> bool {
    content_type_is(headers, "text/event-stream")
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}
