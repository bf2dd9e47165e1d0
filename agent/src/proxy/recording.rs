//! Turn what passes through the proxy into audit records: the request before it is forwarded, the
//! response as it streams by, and the connection when it ends.
use std::time::Instant;

use http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use crate::{
    audit::record::{ExchangeResponse, Outcome, RecordedBody, StreamEvent},
    openai::{
        assemble::{assemble_json, StreamAssembler},
        endpoint::EndpointKind,
        sse::{SseEvent, SseParser},
    },
};

/// Header and query-parameter names containing one of these carry credentials: headers are
/// recorded as a fingerprint, query values as `[REDACTED]`.
const CREDENTIAL_NAME_PARTS: [&str; 9] = [
    "auth",
    "key",
    "token",
    "secret",
    "cookie",
    "session",
    "signature",
    "password",
    "sig",
];
/// Only credentials at least this long show their last 4 characters in a fingerprint.
const LAST4_MIN_LEN: usize = 20;
/// The event that marks where a stream's recording stopped (the assembly goes on).
const TRUNCATED_EVENT: &str = "warden.recording_truncated";

// Shared with the approvals' records, which are not the proxy's.
pub use crate::ids::{new_id, now_us};

fn is_credential_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    CREDENTIAL_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// A credential's fingerprint: the scheme, the start of the SHA-256 of the secret itself (so a
/// known key can be matched: `printf %s "$KEY" | sha256sum`), and for long secrets such as API
/// keys their last 4 characters. Short secrets, Basic credentials and cookies show no characters.
pub fn fingerprint(header: &str, value: &str) -> String {
    let (scheme, secret) = match value.split_once(' ') {
        Some((scheme, secret)) if !scheme.contains('=') => (Some(scheme), secret.trim()),
        _ => (None, value.trim()),
    };
    let digest = Sha256::digest(secret.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let guessable = scheme.is_some_and(|s| s.eq_ignore_ascii_case("basic"))
        || header.to_ascii_lowercase().contains("cookie")
        || secret.chars().count() < LAST4_MIN_LEN;
    let last4 = if guessable {
        String::new()
    } else {
        let tail: Vec<char> = secret.chars().rev().take(4).collect();
        format!("…{} ", tail.into_iter().rev().collect::<String>())
    };
    let scheme = scheme.map_or_else(String::new, |s| format!("{s} "));
    format!("{scheme}{last4}sha256:{hash}")
}

/// Header names (lowercase) and values as recorded, credentials fingerprinted.
pub fn recorded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            let recorded = if is_credential_name(name.as_str()) {
                fingerprint(name.as_str(), &value)
            } else {
                value.into_owned()
            };
            (name.as_str().to_string(), recorded)
        })
        .collect()
}

/// A request target as recorded: the values of credential-named query parameters redacted.
pub fn recorded_target(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_credential_name(name) => format!("{name}=[REDACTED]"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", redacted.join("&"))
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.to_string())
}

fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Bodies Warden does not read whole: uploads and media, forwarded as they stream.
pub fn is_binary(headers: &HeaderMap) -> bool {
    let Some(content_type) = content_type(headers) else {
        return false;
    };
    let essence = essence(&content_type);
    ["multipart/", "audio/", "image/", "video/"]
        .iter()
        .any(|p| essence.starts_with(p))
        || essence == "application/octet-stream"
}

/// Text-like bodies are recorded; binary and compressed ones only by type and size.
fn is_textual(headers: &HeaderMap, bytes: &[u8]) -> bool {
    if headers.contains_key(header::CONTENT_ENCODING) {
        return false;
    }
    match content_type(headers).as_deref().map(essence) {
        Some(e) => {
            e == "application/json"
                || e.starts_with("text/")
                || e.ends_with("+json")
                || e.ends_with("x-www-form-urlencoded")
        }
        None => std::str::from_utf8(bytes).is_ok(),
    }
}

/// A request body as recorded: the forwarded bytes when textual (up to `limit`), else type and size.
pub fn recorded_body(
    headers: &HeaderMap,
    bytes: Option<&[u8]>,
    size: u64,
    limit: usize,
) -> RecordedBody {
    let text = bytes
        .filter(|bytes| is_textual(headers, bytes))
        .map(|bytes| String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned());
    RecordedBody {
        truncated: text.is_some() && size > limit as u64,
        content_type: content_type(headers),
        size,
        text,
    }
}

/// Collects a response as it streams to the agent: the body (non-streamed) or the events and
/// their assembly (SSE), and when the first byte came.
pub struct ResponseCapture {
    endpoint: EndpointKind,
    started: Instant,
    limit: usize,
    headers: HeaderMap,
    size: u64,
    /// Whether the body is worth keeping: text, or of unknown type (checked again at the end).
    keep_body: bool,
    body: Vec<u8>,
    stream: Option<StreamCapture>,
    /// None when no response arrived.
    ttfb_ms: Option<f64>,
}

struct StreamCapture {
    parser: SseParser,
    assembler: StreamAssembler,
    events: Vec<StreamEvent>,
    /// Bytes of event data recorded so far; past the limit events are no longer stored.
    recorded_bytes: usize,
    /// Reused between chunks.
    parsed: Vec<SseEvent>,
}

impl StreamCapture {
    fn take(&mut self, offset_ms: f64, limit: usize) {
        for event in self.parsed.drain(..) {
            self.assembler.on_event(&event);
            if self.recorded_bytes > limit {
                continue;
            }
            self.recorded_bytes += event.data.len();
            if self.recorded_bytes > limit {
                self.events.push(StreamEvent {
                    offset_ms,
                    event: Some(TRUNCATED_EVENT.to_string()),
                    data: format!("events past {limit} bytes were not recorded; the assembled result covers the whole stream"),
                });
                continue;
            }
            self.events.push(StreamEvent {
                offset_ms,
                event: event.event,
                data: event.data,
            });
        }
    }
}

impl ResponseCapture {
    /// `started` is when the exchange began; the response headers have just arrived.
    pub fn new(
        endpoint: EndpointKind,
        headers: &HeaderMap,
        streamed: bool,
        started: Instant,
        limit: usize,
    ) -> Self {
        let stream = streamed.then(|| StreamCapture {
            parser: SseParser::default(),
            assembler: StreamAssembler::new(endpoint),
            events: Vec::new(),
            recorded_bytes: 0,
            parsed: Vec::new(),
        });
        ResponseCapture {
            endpoint,
            started,
            limit,
            keep_body: is_textual(headers, b""),
            headers: headers.clone(),
            size: 0,
            body: Vec::new(),
            stream,
            ttfb_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
        }
    }

    /// For an exchange that ended before any response arrived.
    pub fn no_response(endpoint: EndpointKind, started: Instant, limit: usize) -> Self {
        ResponseCapture {
            ttfb_ms: None,
            ..ResponseCapture::new(endpoint, &HeaderMap::new(), false, started, limit)
        }
    }

    pub fn on_data(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        match &mut self.stream {
            Some(stream) => {
                let offset_ms = self.started.elapsed().as_secs_f64() * 1000.0;
                stream.parser.feed(chunk, &mut stream.parsed);
                stream.take(offset_ms, self.limit);
            }
            None if self.keep_body => {
                let room = self.limit.saturating_sub(self.body.len());
                self.body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            None => {}
        }
    }

    /// Whether a streamed response has passed its final event (`[DONE]`, `response.completed`).
    pub fn stream_complete(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|stream| stream.assembler.is_complete())
    }

    /// The response record. An aborted stream keeps what had been assembled so far; a stream that
    /// reported an error or ended before its final event is an `upstream_error`, however it ended
    /// on the wire.
    pub fn into_record(
        self,
        exchange_id: String,
        status: Option<u16>,
        headers: Vec<(String, String)>,
        mut outcome: Outcome,
        mut reason: Option<String>,
    ) -> ExchangeResponse {
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let streamed = self.stream.is_some();
        let (body, events, assembled) = match self.stream {
            Some(mut stream) => {
                let offset_ms = duration_ms;
                stream.parser.finish(&mut stream.parsed);
                stream.take(offset_ms, self.limit);
                let complete = stream.assembler.is_complete();
                let unreadable = stream.assembler.unreadable_events();
                let assembled = stream.assembler.finish();
                if outcome == Outcome::Ok {
                    if let Some(error) = &assembled.error {
                        outcome = Outcome::UpstreamError;
                        reason = Some(format!("the stream reported an error: {error}"));
                    } else if unreadable > 0 {
                        // The agent's SDK cannot read them either: a malformed stream.
                        outcome = Outcome::UpstreamError;
                        reason = Some(format!(
                            "the stream sent {unreadable} event(s) whose data is not JSON of the API's shape"
                        ));
                    } else if !complete {
                        outcome = Outcome::UpstreamError;
                        reason = Some("the stream ended before its final event".to_string());
                    }
                } else if outcome == Outcome::ClientAborted && unreadable > 0 {
                    // The SDKs give up on an event they cannot parse and close the stream: the
                    // upstream's fault, not the client's.
                    outcome = Outcome::UpstreamError;
                    reason = Some(format!(
                        "the stream sent {unreadable} event(s) whose data is not JSON of the \
                         API's shape; the client then went away"
                    ));
                }
                (None, stream.events, Some(assembled))
            }
            None => {
                let assembled = assemble_json(self.endpoint, &self.body);
                let kept = self.keep_body.then_some(self.body.as_slice());
                let body = recorded_body(&self.headers, kept, self.size, self.limit);
                (Some(body), Vec::new(), assembled)
            }
        };
        ExchangeResponse {
            exchange_id,
            ended_at_us: now_us(),
            status,
            headers,
            body,
            streamed,
            events,
            assembled,
            ttfb_ms: self.ttfb_ms,
            duration_ms,
            outcome,
            reason,
            masked: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests;
