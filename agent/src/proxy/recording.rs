//! Turn what passes through the proxy into audit records: the request before it is forwarded, the
//! response as it streams by, and the connection when it ends.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

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

/// Headers whose values are credentials: recorded as a fingerprint, never as the value.
const CREDENTIAL_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "api-key",
    "x-api-key",
    "cookie",
    "set-cookie",
];

/// Unix time in microseconds.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A new id, unique on this host: `PREFIX-<unix ms, hex>-<sequence, hex>`. Sorting by id sorts by
/// creation time.
pub fn new_id(prefix: &str) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
    format!("{prefix}-{:011x}-{sequence:06x}", now_us() / 1000)
}

/// A credential's fingerprint: its last 4 characters and the start of its SHA-256, enough to tell
/// keys apart and to match a known key, useless to call the API with.
pub fn fingerprint(value: &str) -> String {
    let secret = value.rsplit(' ').next().unwrap_or(value);
    let last4: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let digest = Sha256::digest(value.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("…{last4} sha256:{hash}")
}

/// Header names (lowercase) and values as recorded, credentials fingerprinted.
pub fn recorded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            let recorded = if CREDENTIAL_HEADERS.contains(&name.as_str()) {
                fingerprint(&value)
            } else {
                value.into_owned()
            };
            (name.as_str().to_string(), recorded)
        })
        .collect()
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.to_string())
}

/// Text-like bodies are recorded; binary ones (file downloads, audio) only by type and size.
fn is_textual(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.starts_with("text/") || essence.ends_with("+json")
}

/// A request body as recorded: the forwarded bytes when textual (up to `limit`), else type and size.
pub fn recorded_body(
    headers: &HeaderMap,
    bytes: Option<&[u8]>,
    size: u64,
    limit: usize,
) -> RecordedBody {
    let content_type = content_type(headers);
    let text = bytes
        .filter(|_| is_textual(content_type.as_deref()))
        .map(|bytes| String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned());
    RecordedBody {
        truncated: bytes.is_some_and(|b| b.len() > limit),
        content_type,
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
    content_type: Option<String>,
    textual: bool,
    size: u64,
    body: Vec<u8>,
    stream: Option<StreamCapture>,
    ttfb_ms: f64,
}

struct StreamCapture {
    parser: SseParser,
    assembler: StreamAssembler,
    events: Vec<StreamEvent>,
    /// Reused between chunks.
    parsed: Vec<SseEvent>,
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
        let content_type = content_type(headers);
        let stream = streamed.then(|| StreamCapture {
            parser: SseParser::default(),
            assembler: StreamAssembler::new(endpoint),
            events: Vec::new(),
            parsed: Vec::new(),
        });
        ResponseCapture {
            endpoint,
            started,
            limit,
            textual: is_textual(content_type.as_deref()),
            content_type,
            size: 0,
            body: Vec::new(),
            stream,
            ttfb_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
    }

    pub fn on_data(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        match &mut self.stream {
            Some(stream) => {
                let offset_ms = self.started.elapsed().as_secs_f64() * 1000.0;
                stream.parser.feed(chunk, &mut stream.parsed);
                for event in stream.parsed.drain(..) {
                    stream.assembler.on_event(&event);
                    stream.events.push(StreamEvent {
                        offset_ms,
                        event: event.event,
                        data: event.data,
                    });
                }
            }
            None if self.textual => {
                let room = self.limit.saturating_sub(self.body.len());
                self.body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            None => {}
        }
    }

    /// The response record. An aborted stream keeps what had been assembled so far.
    pub fn into_record(
        self,
        exchange_id: String,
        status: Option<u16>,
        headers: Vec<(String, String)>,
        outcome: Outcome,
        reason: Option<String>,
    ) -> ExchangeResponse {
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let streamed = self.stream.is_some();
        let (body, events, assembled) = match self.stream {
            Some(stream) => (None, stream.events, Some(stream.assembler.finish())),
            None => {
                let assembled = assemble_json(self.endpoint, &self.body);
                let body = RecordedBody {
                    content_type: self.content_type,
                    size: self.size,
                    truncated: self.textual && self.size > self.body.len() as u64,
                    text: self
                        .textual
                        .then(|| String::from_utf8_lossy(&self.body).into_owned()),
                };
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
            ttfb_ms: Some(self.ttfb_ms),
            duration_ms,
            outcome,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn credentials_are_fingerprinted_never_recorded() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-test-SECRET-abcd1234"),
        );
        headers.insert("x-api-key", HeaderValue::from_static("key-SECRET-wxyz"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let recorded = recorded_headers(&headers);
        let text = format!("{recorded:?}");
        assert!(!text.contains("SECRET"), "{text}");
        let authorization = &recorded
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert!(
            authorization.starts_with("…1234 sha256:"),
            "{authorization}"
        );
        assert_eq!(fingerprint("Bearer a"), fingerprint("Bearer a"));
        assert_ne!(fingerprint("Bearer a"), fingerprint("Bearer b"));
        assert!(recorded.contains(&("content-type".into(), "application/json".into())));
    }

    #[test]
    fn binary_bodies_are_recorded_by_type_and_size_only() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("multipart/form-data; boundary=x"),
        );
        let body = recorded_body(&headers, Some(b"\x00\x01"), 2, 1024);
        assert_eq!(body.text, None);
        assert_eq!(body.size, 2);
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let body = recorded_body(&headers, Some(b"{\"model\":\"m\"}"), 13, 4);
        assert_eq!(body.text.as_deref(), Some("{\"mo"));
        assert!(body.truncated);
    }

    #[test]
    fn ids_are_unique_and_prefixed() {
        let a = new_id("ex");
        let b = new_id("ex");
        assert!(a.starts_with("ex-") && a != b, "{a} {b}");
    }
}
