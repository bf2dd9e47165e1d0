//! Forward one intercepted HTTP request upstream and stream its response back, logging the exchange.
//!
//! JSON request bodies are read whole (the API call is parsed from them); every other body and
//! every response is streamed frame by frame, so an SSE response reaches the agent event by event.
use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tracing::Level;

use super::{upstream::UpstreamBody, ProxyContext};
use crate::{
    identity::Identity, identity_event, openai::error::ApiError, proxy::counters::Counters,
};

/// The largest JSON request body Warden reads to parse the API call.
pub const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

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
}

/// What the exchange log line reports about the request side.
struct RequestSummary {
    method: String,
    host: String,
    path: String,
    model: Option<String>,
    request_bytes: u64,
}

pub async fn handle(
    connection: Arc<ConnectionInfo>,
    request: Request<Incoming>,
) -> Result<Response<UpstreamBody>, Infallible> {
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    let mut summary = RequestSummary {
        method: parts.method.to_string(),
        host: connection.server_name.clone(),
        path: parts.uri.path().to_string(),
        model: None,
        request_bytes: 0,
    };
    let log = ExchangeLog {
        connection: connection.clone(),
        started,
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
            return Ok(log.error_response(
                &summary,
                error,
                "host does not match the TLS server name",
            ));
        }
    }

    let forwarded_body: UpstreamBody = if is_json(&parts.headers) {
        match Limited::new(body, MAX_JSON_BODY).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                summary.request_bytes = bytes.len() as u64;
                summary.model = model_of(&bytes);
                Full::new(bytes)
                    .map_err(|never| match never {})
                    .boxed_unsync()
            }
            Err(error) => {
                let (status, message) = if error.is::<http_body_util::LengthLimitError>() {
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("Request body exceeds Warden's limit of {MAX_JSON_BODY} bytes"),
                    )
                } else {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("Reading the request body failed: {error}"),
                    )
                };
                let error = ApiError::new(status, "invalid_request_error", message)
                    .with_code("invalid_body");
                return Ok(log.error_response(&summary, error, "request body unreadable"));
            }
        }
    } else {
        summary.request_bytes = body.size_hint().exact().unwrap_or(0);
        body.boxed_unsync()
    };

    parts.uri = match upstream_uri(&connection.server_name, &parts.uri) {
        Some(uri) => uri,
        None => {
            let error = ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "Invalid request target",
            )
            .with_code("invalid_request_target");
            return Ok(log.error_response(&summary, error, "invalid request target"));
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    // The upstream connection's own authority is set from the URI (Host for h1, :authority for h2).
    parts.headers.remove(header::HOST);
    parts.version = http::Version::HTTP_11;

    match connection
        .context
        .upstream
        .send(Request::from_parts(parts, forwarded_body))
        .await
    {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let streamed = is_event_stream(&parts.headers);
            let body = LoggedBody {
                inner: body,
                response_bytes: 0,
                finish: Some(Finish {
                    log,
                    summary,
                    status: parts.status,
                    streamed,
                }),
            };
            Ok(Response::from_parts(parts, body.boxed_unsync()))
        }
        Err(error) => {
            Counters::bump(&connection.context.counters.upstream_errors);
            let reason = upstream_error_reason(&error);
            let error = crate::openai::error::bad_gateway(&connection.server_name, &reason);
            Ok(log.error_response(&summary, error, &reason))
        }
    }
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

fn upstream_uri(server_name: &str, uri: &http::Uri) -> Option<http::Uri> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    http::Uri::builder()
        .scheme("https")
        .authority(server_name)
        .path_and_query(path)
        .build()
        .ok()
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

fn is_json(headers: &HeaderMap) -> bool {
    content_type_is(headers, "application/json")
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

/// The `model` of a JSON API call, if any.
fn model_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelOnly {
        model: Option<String>,
    }
    serde_json::from_slice::<ModelOnly>(body).ok()?.model
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

/// Emits the exchange log line.
struct ExchangeLog {
    connection: Arc<ConnectionInfo>,
    started: Instant,
}

impl ExchangeLog {
    fn error_response(
        &self,
        summary: &RequestSummary,
        error: ApiError,
        reason: &str,
    ) -> Response<UpstreamBody> {
        self.emit(summary, error.status, false, 0, Some(reason));
        let mut response = error.into_response();
        response
            .headers_mut()
            .insert("x-warden-error", HeaderValue::from_static("true"));
        response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
    }

    fn emit(
        &self,
        summary: &RequestSummary,
        status: StatusCode,
        streamed: bool,
        response_bytes: u64,
        error: Option<&str>,
    ) {
        Counters::bump(&self.connection.context.counters.exchanges);
        identity_event!(
            Level::INFO,
            &self.connection.identity,
            method = %summary.method,
            host = %summary.host,
            path = %summary.path,
            status = status.as_u16(),
            model = summary.model.as_deref(),
            streamed,
            request_bytes = summary.request_bytes,
            response_bytes,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            error,
            "exchange"
        );
    }
}

struct Finish {
    log: ExchangeLog,
    summary: RequestSummary,
    status: StatusCode,
    streamed: bool,
}

/// The upstream response body, passed through frame by frame, logging the exchange when it ends
/// (or when the agent goes away first).
struct LoggedBody {
    inner: Incoming,
    response_bytes: u64,
    finish: Option<Finish>,
}

impl LoggedBody {
    fn finish(&mut self, error: Option<&str>) {
        if let Some(finish) = self.finish.take() {
            finish.log.emit(
                &finish.summary,
                finish.status,
                finish.streamed,
                self.response_bytes,
                error,
            );
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.response_bytes += data.len() as u64;
                }
                // hyper may stop polling once the body says it has ended, before Ready(None).
                if self.inner.is_end_stream() {
                    self.finish(None);
                }
            }
            Poll::Ready(Some(Err(error))) => {
                let reason = format!("upstream response failed: {error}");
                self.finish(Some(&reason));
            }
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.finish(None);
        } else {
            self.finish(Some("client went away before the response ended"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_read_from_json_bodies_only() {
        assert_eq!(
            model_of(br#"{"model":"gpt-4o-mini","messages":[]}"#).as_deref(),
            Some("gpt-4o-mini")
        );
        assert_eq!(model_of(br#"{"messages":[]}"#), None);
        assert_eq!(model_of(b"not json"), None);
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-test"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("authorization"));
    }

    #[test]
    fn upstream_uri_keeps_path_and_query() {
        let uri: http::Uri = "/v1/models?limit=2".parse().unwrap();
        assert_eq!(
            upstream_uri("api.openai.com", &uri).unwrap().to_string(),
            "https://api.openai.com/v1/models?limit=2"
        );
    }

    #[test]
    fn content_types_ignore_parameters_and_case() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("Text/Event-Stream; charset=utf-8"),
        );
        assert!(is_event_stream(&headers));
        assert!(!is_json(&headers));
    }
}
