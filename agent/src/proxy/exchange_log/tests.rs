//! Tests of the exchange log: exactly one line per exchange, however it ends.
use std::{
    io::Write,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::Frame;

use super::*;
use crate::audit::record::Outcome;
use crate::{
    ebpf::origin::ConnectionOrigin,
    identity::{Container, IdentityResolver},
};

/// The JSON log lines written while a capture was active.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

/// Sends this thread's log lines to the returned buffer until the guard is dropped.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

fn logged<T>(run: impl FnOnce() -> T) -> (T, Vec<serde_json::Value>) {
    let (captured, guard) = capture();
    let result = run();
    drop(guard);
    (result, captured.lines())
}

fn identity() -> Identity {
    // A pid that cannot exist: the identity is built from the "kernel capture" alone.
    let origin = ConnectionOrigin {
        original_dst: SocketAddr::from(([127, 0, 0, 1], 443)),
        tgid: u32::MAX,
        uid: 0,
        gid: 0,
        cgroup_id: 1,
        comm: "agent".to_string(),
    };
    let resolved = IdentityResolver::new(Vec::new(), None).resolve(&origin);
    (*resolved).clone()
}

fn exchange_log_for(identity: Identity, counters: &Arc<Counters>) -> ExchangeLog {
    let summary = RequestSummary::new(
        "POST".to_string(),
        "api.openai.com".to_string(),
        "/v1/responses".to_string(),
        EndpointKind::Responses,
    );
    ExchangeLog::new(
        Arc::new(identity),
        counters.clone(),
        Arc::new(Metrics::new(crate::metrics::LiveReadings::zero())),
        Instant::now(),
        summary,
    )
}

fn exchange_log(counters: &Arc<Counters>) -> ExchangeLog {
    exchange_log_for(identity(), counters)
}

/// A body that yields `chunks` as data frames, one per poll.
struct Chunks(std::collections::VecDeque<&'static str>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let chunk = self.0.pop_front();
        Poll::Ready(chunk.map(|chunk| Ok(Frame::data(Bytes::from_static(chunk.as_bytes())))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn body(chunks: &[&'static str]) -> Chunks {
    Chunks(chunks.iter().copied().collect())
}

#[test]
fn dropping_the_guard_logs_the_client_going_away_once() {
    let counters = Arc::new(Counters::default());
    let ((), lines) = logged(|| {
        let log = exchange_log(&counters);
        log.summary.set_request_bytes(12);
        drop(log);
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["message"], "exchange");
    assert_eq!(line["error"], CLIENT_WENT_AWAY);
    assert_eq!(line["request_bytes"], 12);
    assert_eq!(line["path"], "/v1/responses");
    assert!(line.get("status").is_none(), "{line}");
    assert_eq!(counters.snapshot().exchanges, 1);
}

#[test]
fn an_error_response_is_logged_once_with_its_status() {
    let counters = Arc::new(Counters::default());
    let (response, lines) = logged(|| {
        let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", "no");
        exchange_log(&counters).error_response(error, "bad input", Outcome::Denied)
    });
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["x-warden-error"], "true");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["status"], 400);
    assert_eq!(lines[0]["error"], "bad input");
    assert_eq!(counters.snapshot().exchanges, 1);
}

#[tokio::test]
async fn a_handed_off_body_logs_when_it_ends_with_both_byte_counts() {
    let counters = Arc::new(Counters::default());
    let (captured, _guard) = capture();

    let log = exchange_log(&counters);
    let request = log.summary.count_request_body(body(&["abc", "defg"]));
    assert_eq!(request.collect().await.unwrap().to_bytes(), "abcdefg");
    let response = log.into_response_body(
        StatusCode::OK,
        &http::HeaderMap::new(),
        true,
        body(&["data: 1\n\n"]),
    );
    assert_eq!(response.collect().await.unwrap().to_bytes(), "data: 1\n\n");

    let lines = captured.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["status"], 200);
    assert_eq!(line["streamed"], true);
    assert_eq!(line["request_bytes"], 7);
    assert_eq!(line["response_bytes"], 9);
    assert!(line.get("error").is_none(), "{line}");
    assert_eq!(counters.snapshot().exchanges, 1);
}

#[test]
fn a_response_body_dropped_early_logs_the_status_and_the_client_leaving() {
    let counters = Arc::new(Counters::default());
    let ((), lines) = logged(|| {
        let log = exchange_log(&counters);
        let response =
            log.into_response_body(StatusCode::OK, &http::HeaderMap::new(), false, body(&["x"]));
        drop(response);
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["error"], CLIENT_LEFT_MID_RESPONSE);
}

/// A streamed chat response recorded to a store in `dir`, read for `frames` frames and dropped
/// with the rest of `chunks` unread (the client left). The exchange's log line and its stored
/// response record.
async fn stream_left_after(
    dir: &std::path::Path,
    chunks: &[&'static str],
    frames: usize,
) -> (serde_json::Value, serde_json::Value) {
    let counters = Arc::new(Counters::default());
    let audit =
        crate::audit::AuditWriter::start(&dir.join("audit.db"), Default::default()).unwrap();
    let (captured, _guard) = capture();
    let mut log = exchange_log(&counters);
    log.record_to(Recorder {
        audit: audit.clone(),
        exchange_id: "ex-1".to_string(),
        endpoint: crate::openai::endpoint::EndpointKind::ChatCompletions,
        body_limit: 1 << 20,
        anomaly: None,
    });
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    let mut response = log.into_response_body(StatusCode::OK, &headers, true, body(chunks));
    for _ in 0..frames {
        response.frame().await.unwrap().unwrap();
    }
    drop(response);
    tokio::task::spawn_blocking(move || audit.shutdown())
        .await
        .unwrap();
    let lines = captured.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    (lines[0].clone(), stored_response(&dir.join("audit.db")))
}

/// The one response record in the store at `db`, as JSON.
fn stored_response(db: &std::path::Path) -> serde_json::Value {
    let store = rusqlite::Connection::open(db).unwrap();
    let bodies: Vec<String> = store
        .prepare("SELECT body FROM records WHERE kind = 'response'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(bodies.len(), 1, "one response record: {bodies:?}");
    serde_json::from_str(&bodies[0]).unwrap()
}

const CHUNK: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_after_done_had_the_whole_stream() {
    let dir = tempfile::tempdir().unwrap();
    // The chunked body's end (here: one more empty frame) has not been read when the client goes.
    let (line, stored) = stream_left_after(dir.path(), &[CHUNK, DONE, ""], 2).await;
    assert_eq!(stored["outcome"], "ok", "{stored}");
    assert!(stored["reason"].is_null(), "{stored}");
    assert!(line.get("error").is_none(), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_before_done_left_mid_response() {
    let dir = tempfile::tempdir().unwrap();
    let (line, stored) = stream_left_after(dir.path(), &[CHUNK, DONE, ""], 1).await;
    assert_eq!(stored["outcome"], "client_aborted", "{stored}");
    assert_eq!(line["error"], CLIENT_LEFT_MID_RESPONSE, "{line}");
}

#[test]
fn identity_fields_come_first_and_the_container_is_runtime_and_id() {
    let counters = Arc::new(Counters::default());
    let mut identity = identity();
    identity.container = Some(Container {
        runtime: "docker",
        id: "0123abcd".to_string(),
    });
    let ((), lines) = logged(|| drop(exchange_log_for(identity, &counters)));
    let line = &lines[0];
    assert_eq!(line["container"], "docker:0123abcd", "{line}");
    assert_eq!(line["pid"], u32::MAX, "{line}");
    assert_eq!(line["comm"], "agent", "{line}");
    assert_eq!(line["process_exited"], true, "{line}");
}

#[test]
fn a_revocation_cuts_the_body_with_an_error_and_logs_it_once() {
    let counters = Arc::new(Counters::default());
    let dir = tempfile::tempdir().unwrap();
    let revocations = Arc::new(crate::revocation::Revocations::load(dir.path()).unwrap());
    let identity = Arc::new(identity());
    let ((), lines) = logged(|| {
        let chunks = body(&["data: {}\n\n", "data: {}\n\n"]);
        let mut response = exchange_log_for((*identity).clone(), &counters)
            .into_response_body(StatusCode::OK, &http::HeaderMap::new(), true, chunks)
            .cut_when(revocations.cut(identity.clone()));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let first = Pin::new(&mut response).poll_frame(&mut cx);
        assert!(matches!(first, Poll::Ready(Some(Ok(_)))));
        let by = crate::audit::governance::Actor::default();
        let reason = Some("test".to_string());
        revocations.revoke("uid:0", reason, by, |_| Ok(())).unwrap();
        let cut = Pin::new(&mut response).poll_frame(&mut cx);
        let Poll::Ready(Some(Err(error))) = cut else {
            panic!("the body goes on after the revocation")
        };
        assert!(
            error.to_string().contains("identity revoked (uid:0"),
            "{error}"
        );
        drop(response);
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(
        lines[0]["error"],
        "identity revoked (uid:0 by uid 0: test) mid-response"
    );
}
