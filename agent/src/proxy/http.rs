//! Forward one intercepted HTTP request upstream and stream its response back.
//!
//! Request bodies are read whole (the API call is parsed and recorded from them), except uploads
//! and media; every response is streamed frame by frame, so an SSE response reaches the agent event
//! by event.
use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::{
    counters::Counters,
    exchange_log::{ExchangeLog, Recorder, RequestSummary},
    policy_check::check_policy,
    recording::{is_binary, new_id, now_us, recorded_body, recorded_headers, recorded_target},
    response_mask::{ResponseMasks, SharedMaskCounts},
    upstream::UpstreamBody,
    ProxyContext,
};
use crate::{
    audit::record::{AuditRecord, ExchangeRequest, IdentitySnapshot, Outcome},
    identity::Identity,
    openai::{
        endpoint::EndpointKind,
        error::ApiError,
        request::{request_fields, try_request_fields, RequestFields},
    },
};

/// The port the upstream URI leaves implicit.
const HTTPS_PORT: u16 = 443;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1); never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Everything a request handler needs to know about its connection.
pub struct ConnectionInfo {
    pub context: Arc<ProxyContext>,
    pub identity: Arc<Identity>,
    pub server_name: String,
    /// The port the agent connected to; the upstream is reached on the same port.
    pub destination_port: u16,
    pub connection_id: String,
}

pub async fn handle(
    connection: Arc<ConnectionInfo>,
    request: Request<Incoming>,
) -> Result<Response<UpstreamBody>, Infallible> {
    let started = Instant::now();
    let started_at_us = now_us();
    let (mut parts, body) = request.into_parts();
    let endpoint = EndpointKind::of_path(parts.uri.path());
    let summary = RequestSummary::new(
        parts.method.to_string(),
        connection.server_name.clone(),
        parts.uri.path().to_string(),
        endpoint,
    );
    // Dropped unlogged only if hyper abandons this handler; its drop then logs the client leaving.
    let mut log = ExchangeLog::new(
        connection.identity.clone(),
        connection.context.counters.clone(),
        connection.context.metrics.clone(),
        started,
        summary,
    );

    let context = &connection.context;
    let inspect_limit = context.config.policy.max_inspect_bytes as usize;
    let mut uninspected_prefix = None;
    let read = read_body(&parts.headers, body, inspect_limit).await;
    // Taken after the (possibly slow) read, so that a reload during it applies to this request.
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
            (None, None, Some((error, Outcome::Denied)))
        }
        RequestBody::Unreadable(error, outcome) => (None, None, Some((error, outcome))),
    };
    let mut fields = None;
    if reads_bodies {
        match whole.as_deref().map(normalized_body) {
            // What the policy judged is exactly what goes upstream: one copy of every key.
            Some(Ok((normalized, parsed))) => {
                whole = Some(normalized);
                fields = Some(parsed);
                parts.headers.remove(header::CONTENT_LENGTH);
            }
            Some(Err(why)) => {
                let message = format!("Warden could not inspect this request body ({why}), and a policy rule must inspect it");
                let error =
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
                        .with_code("invalid_body");
                unreadable = Some((error, Outcome::Denied));
            }
            None => {}
        }
    }
    let fields = fields
        .or_else(|| whole.as_deref().map(request_fields))
        .unwrap_or_default();
    log.summary.model = fields.model.clone();

    // The policy decides on the request as it came, and masks it before anything is recorded
    // or forwarded: the original values go nowhere.
    let checked = check_policy(&policy, &connection, endpoint, &fields, whole.as_deref());
    if let Some(masked) = checked.masked_body {
        whole = Some(masked);
        // The body changed length: hyper sets the new Content-Length from it.
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let forwarded_body: Result<UpstreamBody, (ApiError, Outcome)> =
        match (unreadable, &whole, streamed) {
            (Some(error), _, _) => Err(error),
            (None, Some(bytes), _) => {
                log.summary.set_request_bytes(bytes.len() as u64);
                Ok(Full::new(bytes.clone())
                    .map_err(|never| match never {})
                    .boxed_unsync())
            }
            (None, None, Some(body)) => Ok(body.boxed_unsync()),
            (None, None, None) => Ok(Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed_unsync()),
        };

    // The request is on record before anything of it goes upstream; if it cannot be recorded it
    // does not go at all.
    let body_limit = context.config.audit.max_body_bytes as usize;
    let size = whole
        .as_ref()
        .map_or_else(|| declared_length(&parts.headers), |b| b.len() as u64);
    let exchange_id = new_id("ex");
    let record = ExchangeRequest {
        exchange_id: exchange_id.clone(),
        connection_id: connection.connection_id.clone(),
        started_at_us,
        identity: IdentitySnapshot::from(connection.identity.as_ref()),
        method: parts.method.to_string(),
        host: connection.server_name.clone(),
        path: recorded_target(parts.uri.path_and_query().map_or("/", |p| p.as_str())),
        endpoint: endpoint.as_str().to_string(),
        model: fields.model,
        params: fields.params,
        headers: recorded_headers(&parts.headers),
        body: recorded_body(
            &parts.headers,
            whole.as_deref().or(uninspected_prefix.as_deref()),
            size,
            body_limit.min(uninspected_prefix.as_ref().map_or(usize::MAX, Bytes::len)),
        ),
        policy: checked.record,
    };
    let mut record = record;
    if uninspected_prefix.is_some() {
        // Only the beginning was read; the rest went upstream as it came.
        record.body.truncated = true;
        record.body.size = record
            .body
            .size
            .max(record.body.text.as_ref().map_or(0, |t| t.len() as u64));
    }
    log.record_to(Recorder {
        audit: context.audit.clone(),
        exchange_id: exchange_id.clone(),
        endpoint,
        body_limit,
    });
    if let Err(error) = context.audit.commit(AuditRecord::Request(record)).await {
        tracing::error!(%error, exchange_id, "audit store: request record not committed; refusing the request");
        log.stop_recording();
        let error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "Warden could not record this request in its audit store, so it was not sent",
        )
        .with_code("audit_unavailable");
        return Ok(log.error_response(error, "audit store unavailable", Outcome::Denied));
    }

    if let Some((error, reason)) = checked.refusal {
        if let Ok(body) = forwarded_body {
            discard_rest(body).await;
        }
        return Ok(log.error_response(error, &reason, Outcome::Denied));
    }

    let forwarded_body = match forwarded_body {
        Ok(body) => body,
        Err((error, outcome)) => {
            return Ok(log.error_response(error, "request body unreadable", outcome))
        }
    };

    if let Some(authority) = request_authority(&parts) {
        if !authority.eq_ignore_ascii_case(&connection.server_name) {
            let error = ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "invalid_request_error",
                format!(
                    "This connection is for {}; a request for {authority} cannot be sent on it",
                    connection.server_name
                ),
            )
            .with_code("misdirected_request");
            let reason = "host does not match the TLS server name";
            discard_rest(forwarded_body).await;
            return Ok(log.error_response(error, reason, Outcome::Denied));
        }
    }

    if ambiguous_path(parts.uri.path()) {
        let error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Warden refuses request paths with dot segments, percent-escapes or backslashes",
        )
        .with_code("invalid_path");
        discard_rest(forwarded_body).await;
        return Ok(log.error_response(error, "ambiguous request path", Outcome::Denied));
    }

    if let Some(protocol) = requested_upgrade(&parts) {
        let error = crate::openai::error::upgrade_not_supported(&connection.server_name);
        let reason = format!("protocol upgrade ({protocol}) not supported");
        discard_rest(forwarded_body).await;
        return Ok(log.error_response(error, &reason, Outcome::Denied));
    }

    let upstream_uri = upstream_uri(
        &connection.server_name,
        connection.destination_port,
        &parts.uri,
    );
    parts.uri = match upstream_uri {
        Some(uri) => uri,
        None => {
            let error = ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "Invalid request target",
            )
            .with_code("invalid_request_target");
            return Ok(log.error_response(error, "invalid request target", Outcome::Denied));
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    // Warden must read the response to record and mask it: ask for it uncompressed (the hop to the
    // agent is local).
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        http::HeaderValue::from_static("identity"),
    );
    // The upstream connection's own authority is set from the URI (Host for h1, :authority for h2).
    parts.headers.remove(header::HOST);
    parts.version = http::Version::HTTP_11;

    match context
        .upstream
        .send(Request::from_parts(parts, forwarded_body))
        .await
    {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let streamed = is_event_stream(&parts.headers);
            let body: UpstreamBody = if checked.response_rules.is_empty() {
                body.boxed_unsync()
            } else {
                let masks = ResponseMasks {
                    policy: policy.clone(),
                    rules: checked.response_rules,
                    counts: SharedMaskCounts::default(),
                };
                log.record_response_masks(masks.counts.clone());
                let encoded = parts
                    .headers
                    .get(header::CONTENT_ENCODING)
                    .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
                if encoded {
                    // Warden asked for identity; a compressed answer cannot be masked, so it is
                    // not passed on.
                    let reason = "the upstream sent a compressed response that masking cannot read";
                    let error = crate::openai::error::bad_gateway(&connection.server_name, reason);
                    return Ok(log.error_response(error, reason, Outcome::UpstreamError));
                }
                if streamed {
                    parts.headers.remove(header::CONTENT_LENGTH);
                    masks.mask_stream(endpoint, body).boxed_unsync()
                } else if content_type_is(&parts.headers, "application/json") {
                    // A JSON body is masked whole before the agent sees any of it; one too big to
                    // inspect is not passed on unmasked.
                    match Limited::new(body, inspect_limit).collect().await {
                        Ok(collected) => {
                            let original = collected.to_bytes();
                            let Some(masked) = masks.mask_whole(endpoint, original) else {
                                let reason =
                                    "the upstream's JSON response could not be parsed for masking";
                                let error = crate::openai::error::bad_gateway(
                                    &connection.server_name,
                                    reason,
                                );
                                return Ok(log.error_response(
                                    error,
                                    reason,
                                    Outcome::UpstreamError,
                                ));
                            };
                            parts
                                .headers
                                .insert(header::CONTENT_LENGTH, masked.len().into());
                            Full::new(masked)
                                .map_err(|never| match never {})
                                .boxed_unsync()
                        }
                        Err(error) => {
                            let reason =
                                format!("response could not be inspected for masking: {error}");
                            let error =
                                crate::openai::error::bad_gateway(&connection.server_name, &reason);
                            return Ok(log.error_response(error, &reason, Outcome::UpstreamError));
                        }
                    }
                } else {
                    body.boxed_unsync()
                }
            };
            let body = log.into_response_body(parts.status, &parts.headers, streamed, body);
            Ok(Response::from_parts(parts, body.boxed_unsync()))
        }
        Err(error) => {
            Counters::bump(&context.counters.upstream_errors);
            let reason = upstream_error_reason(&error);
            let outcome = if timed_out(&error) {
                Outcome::Timeout
            } else {
                Outcome::UpstreamError
            };
            let error = crate::openai::error::bad_gateway(&connection.server_name, &reason);
            Ok(log.error_response(error, &reason, outcome))
        }
    }
}

/// A body re-serialized from its parsed JSON, or why it cannot be inspected: compressed, not JSON
/// an API call can be read from (duplicated or mistyped fields), so that what a policy judges and
/// what the upstream receives cannot differ.
/// Returns the fields read from it too, so the body is not parsed again for them.
/// Before refusing a request whose body is still arriving (an upload forwarded as it streams),
/// read and discard the rest of it, up to a bound: an HTTP/2 stream answered before its request
/// ended is reset, and clients such as curl then report the reset instead of Warden's answer.
/// Past the bound (or the deadline) the refusal goes out anyway.
async fn discard_rest(body: UpstreamBody) {
    const MAX_DISCARDED: usize = 16 * 1024 * 1024;
    const DEADLINE: Duration = Duration::from_secs(5);
    let discard = async {
        let mut body = body;
        let mut discarded = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            discarded += frame.data_ref().map_or(0, Bytes::len);
            if discarded > MAX_DISCARDED {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DEADLINE, discard).await;
}

fn normalized_body(body: &[u8]) -> Result<(Bytes, RequestFields), &'static str> {
    if body.is_empty() {
        return Ok((Bytes::new(), RequestFields::default()));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
    let fields = try_request_fields(body).ok_or("duplicated or mistyped fields")?;
    let normalized = serde_json::to_vec(&value).map_err(|_| "not serializable")?;
    Ok((Bytes::from(normalized), fields))
}

/// Paths an upstream or CDN could read differently than Warden: dot segments, escapes,
/// backslashes. Refused on intercepted hosts, so that endpoint rules and masking cannot be dodged.
fn ambiguous_path(path: &str) -> bool {
    path.contains('%')
        || path.contains('\\')
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// A request body as the handler has it: read whole (so the API call can be parsed and recorded),
/// left streaming (uploads and media), too large to inspect (what was read, and the rest), or
/// refused with the error the agent gets and the outcome.
enum RequestBody {
    Whole(Bytes),
    Streamed(Incoming),
    TooLarge(Bytes, Incoming),
    Unreadable(ApiError, Outcome),
}

/// Everything but clearly binary bodies is read whole: a prompt must not get past the record by
/// leaving out or changing its Content-Type.
async fn read_body(headers: &HeaderMap, mut body: Incoming, limit: usize) -> RequestBody {
    if is_binary(headers) {
        return RequestBody::Streamed(body);
    }
    let mut collected = BytesMut::new();
    loop {
        match body.frame().await {
            None => return RequestBody::Whole(collected.freeze()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    collected.extend_from_slice(&data);
                    if collected.len() > limit {
                        return RequestBody::TooLarge(collected.freeze(), body);
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

fn declared_length(headers: &HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The protocol a request asks to switch to (an HTTP/1.1 `Upgrade`, a CONNECT or an h2 extended
/// CONNECT such as WebSocket over h2), which Warden cannot forward yet. `h2c` is not reported: a
/// server may ignore it and answer over HTTP/1.1, and it is meaningless over TLS anyway.
fn requested_upgrade(parts: &http::request::Parts) -> Option<String> {
    if parts.method == Method::CONNECT {
        let protocol = parts.extensions.get::<hyper::ext::Protocol>();
        return Some(protocol.map_or("CONNECT", |p| p.as_str()).to_string());
    }
    let protocols: Vec<&str> = parts
        .headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
        .collect();
    (!protocols.is_empty()).then(|| protocols.join(", "))
}

fn request_authority(parts: &http::request::Parts) -> Option<String> {
    let authority = match parts.uri.authority() {
        Some(authority) => authority.host().to_string(),
        None => {
            let host = parts.headers.get(header::HOST)?.to_str().ok()?;
            // Strip a port; IPv6 literals are never intercepted server names.
            host.rsplit_once(':').map_or(host, |(h, _)| h).to_string()
        }
    };
    Some(authority)
}

fn upstream_uri(server_name: &str, port: u16, uri: &http::Uri) -> Option<http::Uri> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = if port == HTTPS_PORT {
        server_name.to_string()
    } else {
        format!("{server_name}:{port}")
    };
    http::Uri::builder()
        .scheme("https")
        .authority(authority)
        .path_and_query(path)
        .build()
        .ok()
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
        return;
    }
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|name| name.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    content_type_is(headers, "text/event-stream")
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

/// Whether the upstream request failed because something took too long (connect, handshake).
fn timed_out(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The most specific cause of a failed upstream request, for the agent and the log.
fn upstream_error_reason(error: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    let mut reason = error.to_string();
    while let Some(cause) = source {
        reason = cause.to_string();
        source = cause.source();
    }
    reason
}

#[cfg(test)]
mod tests;
