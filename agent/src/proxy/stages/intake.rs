//! Intake: read the request body once and, when a policy rule reads bodies, normalize it, so that
//! what the policy judges is exactly what goes upstream.
//!
//! A body that cannot be read or inspected is not refused here: it is refused once the request is
//! on record (see `record`), so the refusal is audited like any other.
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{ConnectionInfo, Refusal};
use crate::{
    audit::record::Outcome,
    openai::{
        endpoint::EndpointKind,
        error::ApiError,
        request::{normalized_body, request_fields, RequestFields},
    },
    policy::active::CompiledPolicy,
    proxy::{
        body_budget::BodyBudget,
        exchange_log::{CountedBody, ExchangeLog},
        http_server::Timeouts,
        recording::is_binary,
    },
};

/// The request as intake read it.
pub struct Intake {
    pub parts: http::request::Parts,
    pub endpoint: EndpointKind,
    /// Taken after the (possibly slow) read, so that a reload during it applies to this request.
    pub policy: Arc<CompiledPolicy>,
    /// The API call read from the body (empty when there is no body to read it from).
    pub fields: RequestFields,
    /// The body read whole: normalized when a policy rule reads bodies.
    pub whole: Option<Bytes>,
    /// When a policy rule reads bodies: the body parsed, once, for the policy and its masks.
    pub parsed: Option<serde_json::Value>,
    /// The body forwarded as it arrives, counted as it passes.
    pub streamed: Option<CountedBody<PrefixedBody>>,
    /// The part read of a body too large to inspect, forwarded uninspected.
    pub uninspected_prefix: Option<Bytes>,
    /// Why the body cannot go upstream, refused once the request is on record.
    pub unreadable: Option<Refusal>,
}

const UNREADABLE: &str = "request body unreadable";

pub async fn intake(
    connection: &ConnectionInfo,
    log: &mut ExchangeLog,
    mut parts: http::request::Parts,
    body: Incoming,
) -> Result<Intake, Refusal> {
    let endpoint = log.summary.endpoint;
    let context = &connection.context;
    let inspect_limit = context.config.policy.max_inspect_bytes as usize;
    let mut uninspected_prefix = None;
    let timeouts = Timeouts::of(&context.config.limits);
    let read = read_body(
        &parts.headers,
        body,
        inspect_limit,
        &context.body_budget,
        &timeouts,
    )
    .await;
    let policy = context.policy.current();
    let reads_bodies = policy.policy.reads_bodies();
    let (mut whole, streamed, mut unreadable) = match read {
        RequestBody::Whole(bytes) => (Some(bytes), None, None),
        RequestBody::Streamed(body) => (
            None,
            Some(
                log.summary
                    .count_request_body(PrefixedBody::new(Bytes::new(), body)),
            ),
            None,
        ),
        // Fail closed: a body too big to inspect passes only when no rule would inspect it.
        RequestBody::TooLarge(prefix, rest) if !reads_bodies => {
            uninspected_prefix = Some(prefix.clone());
            (
                None,
                Some(
                    log.summary
                        .count_request_body(PrefixedBody::new(prefix, rest)),
                ),
                None,
            )
        }
        RequestBody::TooLarge(..) => {
            let message = format!(
                "Request body exceeds Warden's inspection limit of {inspect_limit} bytes ([policy] max_inspect_bytes), and a policy rule would inspect it"
            );
            let error = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                message,
            )
            .with_code("invalid_body");
            (
                None,
                None,
                Some(Refusal::new(error, UNREADABLE, Outcome::Denied)),
            )
        }
        RequestBody::Unreadable(error, outcome) => {
            (None, None, Some(Refusal::new(error, UNREADABLE, outcome)))
        }
    };
    let mut fields = None;
    let mut parsed = None;
    if reads_bodies {
        match whole.as_deref().map(normalized_body) {
            // What the policy judged is exactly what goes upstream: one copy of every key.
            Some(Ok(normalized)) => {
                whole = Some(normalized.bytes);
                fields = Some(normalized.fields);
                parsed = normalized.value;
                parts.headers.remove(header::CONTENT_LENGTH);
            }
            Some(Err(why)) => {
                let message = format!("Warden could not inspect this request body ({why}), and a policy rule must inspect it");
                let error =
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
                        .with_code("invalid_body");
                unreadable = Some(Refusal::new(error, UNREADABLE, Outcome::Denied));
            }
            None => {}
        }
    }
    let fields = fields
        .or_else(|| whole.as_deref().map(request_fields))
        .unwrap_or_default();
    log.summary.model = fields.model.clone();
    Ok(Intake {
        parts,
        endpoint,
        policy,
        fields,
        whole,
        parsed,
        streamed,
        uninspected_prefix,
        unreadable,
    })
}

/// A request body as intake has it: read whole (so the API call can be parsed and recorded),
/// left streaming (uploads and media), too large to inspect (what was read, and the rest), or
/// refused with the error the agent gets and the outcome.
enum RequestBody {
    Whole(Bytes),
    Streamed(Incoming),
    TooLarge(Bytes, Incoming),
    Unreadable(ApiError, Outcome),
}

/// Everything but clearly binary bodies is read whole: a prompt must not get past the record by
/// leaving out or changing its Content-Type. What is read is held against the body memory
/// budget, and must arrive within the body timeouts.
async fn read_body(
    headers: &HeaderMap,
    mut body: Incoming,
    limit: usize,
    budget: &Arc<BodyBudget>,
    timeouts: &Timeouts,
) -> RequestBody {
    if is_binary(headers) {
        return RequestBody::Streamed(body);
    }
    let mut collected = BytesMut::new();
    let mut reservation = budget.reservation();
    let deadline = tokio::time::Instant::now() + timeouts.body_read;
    loop {
        let wait_until = deadline.min(tokio::time::Instant::now() + timeouts.body_idle);
        let Ok(frame) = tokio::time::timeout_at(wait_until, body.frame()).await else {
            return body_timed_out(wait_until == deadline, timeouts);
        };
        match frame {
            None => return RequestBody::Whole(reservation.hold(collected)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if !reservation.grow(data.len()) {
                        return over_budget(budget);
                    }
                    collected.extend_from_slice(&data);
                    if collected.len() > limit {
                        return RequestBody::TooLarge(reservation.hold(collected), body);
                    }
                }
            }
            Some(Err(error)) => {
                // The client went away mid-upload.
                let message = format!("Reading the request body failed: {error}");
                let error =
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
                        .with_code("invalid_body");
                return RequestBody::Unreadable(error, Outcome::ClientAborted);
            }
        }
    }
}

/// 408: the body did not arrive in time. The SDKs retry a 408, which suits a slow network.
fn body_timed_out(whole_deadline: bool, timeouts: &Timeouts) -> RequestBody {
    let message = match whole_deadline {
        true => format!(
            "Warden stopped waiting for the request body: it did not arrive whole within {}s ([limits] body_read_timeout_secs)",
            timeouts.body_read.as_secs()
        ),
        false => format!(
            "Warden stopped waiting for the request body: nothing arrived for {}s ([limits] body_idle_timeout_secs)",
            timeouts.body_idle.as_secs()
        ),
    };
    let error = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "invalid_request_error",
        message,
    )
    .with_code("request_timeout");
    RequestBody::Unreadable(error, Outcome::Timeout)
}

/// 503, retryable: other requests' bodies fill the budget now; this one fits once they are gone.
fn over_budget(budget: &BodyBudget) -> RequestBody {
    let message = format!(
        "Warden is holding as many request bodies as it may ({} bytes, [limits] body_memory_budget_bytes); retry shortly",
        budget.limit()
    );
    let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
        .with_code("body_memory_budget_exhausted")
        .with_should_retry(true);
    RequestBody::Unreadable(error, Outcome::Denied)
}

/// A request body forwarded as it streams, after the part already read from it.
pub struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: Incoming,
}

impl PrefixedBody {
    fn new(prefix: Bytes, rest: Incoming) -> Self {
        PrefixedBody {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
        }
    }
}

impl http_body::Body for PrefixedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(prefix))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}
