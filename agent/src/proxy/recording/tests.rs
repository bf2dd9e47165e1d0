//! Tests of what the proxy records: credentials, targets, bodies and streams.
use std::time::Instant;

use http::{HeaderMap, HeaderValue};

use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn credentials_are_fingerprinted_never_recorded() {
    let recorded = recorded_headers(&headers(&[
        ("authorization", "Bearer sk-test-SECRET-0123456789abcd1234"),
        ("x-goog-api-key", "AIzaSECRETSECRETSECRETwxyz"),
        ("cookie", "session=SECRET"),
        ("content-type", "application/json"),
    ]));
    let text = format!("{recorded:?}");
    assert!(!text.contains("SECRET"), "{text}");
    let authorization = &recorded
        .iter()
        .find(|(n, _)| n == "authorization")
        .unwrap()
        .1;
    assert!(
        authorization.starts_with("Bearer …1234 sha256:"),
        "{authorization}"
    );
    assert!(recorded.contains(&("content-type".into(), "application/json".into())));
}

#[test]
fn the_fingerprint_hashes_the_secret_and_hides_short_ones() {
    // sha256("sk-abc…") can be computed from the key alone, without the scheme.
    let key = "sk-0123456789abcdefghij";
    let digest = Sha256::digest(key.as_bytes());
    let expected: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        fingerprint("authorization", &format!("Bearer {key}")),
        format!("Bearer …ghij sha256:{expected}")
    );
    assert!(!fingerprint("authorization", "Bearer short-pw").contains('…'));
    assert!(!fingerprint("authorization", "Basic dXNlcjpwYXNzd29yZHBhc3N3b3Jk").contains('…'));
    assert!(!fingerprint("cookie", "session=abcdefghijklmnopqrstuvwxyz").contains('…'));
    assert_ne!(
        fingerprint("authorization", "Bearer a"),
        fingerprint("authorization", "Bearer b")
    );
}

#[test]
fn credential_query_parameters_are_redacted() {
    assert_eq!(
        recorded_target("/v1/models?api-key=SECRET&limit=2"),
        "/v1/models?api-key=[REDACTED]&limit=2"
    );
    assert_eq!(
        recorded_target("/v1/x?sig=abc&token=t"),
        "/v1/x?sig=[REDACTED]&token=[REDACTED]"
    );
    assert_eq!(
        recorded_target("/v1/chat/completions"),
        "/v1/chat/completions"
    );
}

#[test]
fn binary_bodies_are_recorded_by_type_and_size_only() {
    let multipart = headers(&[("content-type", "multipart/form-data; boundary=x")]);
    assert!(is_binary(&multipart));
    let body = recorded_body(&multipart, Some(b"\x00\x01"), 2, 1024);
    assert_eq!((body.text, body.size), (None, 2));
    let json = headers(&[("content-type", "application/json")]);
    let body = recorded_body(&json, Some(b"{\"model\":\"m\"}"), 13, 4);
    assert_eq!(body.text.as_deref(), Some("{\"mo"));
    assert!(body.truncated);
    // No content type: recorded when it is text.
    let body = recorded_body(&HeaderMap::new(), Some(b"{\"model\":\"m\"}"), 13, 1024);
    assert!(body.text.is_some());
    let gzip = headers(&[
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ]);
    assert_eq!(recorded_body(&gzip, Some(b"\x1f\x8b"), 2, 1024).text, None);
}

#[test]
fn ids_are_unique_and_prefixed() {
    let a = new_id("ex");
    let b = new_id("ex");
    assert!(a.starts_with("ex-") && a != b, "{a} {b}");
}

fn sse_capture(limit: usize) -> ResponseCapture {
    let sse = headers(&[("content-type", "text/event-stream")]);
    ResponseCapture::new(
        EndpointKind::ChatCompletions,
        &sse,
        true,
        Instant::now(),
        limit,
    )
}

const CHUNK: &str = "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi \"}}]}\n\n";

#[test]
fn a_complete_stream_is_ok_and_an_unfinished_one_is_an_upstream_error() {
    let mut complete = sse_capture(1 << 20);
    complete.on_data(CHUNK.as_bytes());
    complete.on_data(b"data: [DONE]\n\n");
    let record = complete.into_record("ex-1".into(), Some(200), vec![], Outcome::Ok, None);
    assert_eq!(record.outcome, Outcome::Ok);
    assert_eq!(record.assembled.unwrap().text, "hi ");

    let mut cut = sse_capture(1 << 20);
    cut.on_data(CHUNK.as_bytes());
    let record = cut.into_record("ex-2".into(), Some(200), vec![], Outcome::Ok, None);
    assert_eq!(record.outcome, Outcome::UpstreamError);
    assert!(record.reason.unwrap().contains("before its final event"));
}

#[test]
fn a_stream_with_events_that_are_not_json_is_an_upstream_error_even_when_it_completes() {
    let mut capture = sse_capture(1 << 20);
    capture.on_data(CHUNK.as_bytes());
    capture.on_data(b"data: {\"choices\": [{\"delta\n\ndata: <html>oops</html>\n\n");
    capture.on_data(b"data: [DONE]\n\n");
    let record = capture.into_record("ex-6".into(), Some(200), vec![], Outcome::Ok, None);
    assert_eq!(record.outcome, Outcome::UpstreamError);
    assert_eq!(
        record.reason.as_deref(),
        Some("the stream sent 2 event(s) whose data is not JSON of the API's shape")
    );
    assert_eq!(record.assembled.unwrap().text, "hi ");
}

#[test]
fn a_client_that_leaves_at_a_malformed_event_is_recorded_as_an_upstream_error() {
    let mut capture = sse_capture(1 << 20);
    capture.on_data(CHUNK.as_bytes());
    capture.on_data(b"data: {\"choices\": [{\"delta\n\n");
    let record = capture.into_record(
        "ex-7".into(),
        Some(200),
        vec![],
        Outcome::ClientAborted,
        Some("client went away before the response ended".into()),
    );
    assert_eq!(record.outcome, Outcome::UpstreamError);
    assert_eq!(
        record.reason.as_deref(),
        Some("the stream sent 1 event(s) whose data is not JSON of the API's shape; the client then went away")
    );
}

#[test]
fn a_last_event_without_its_blank_line_is_still_recorded() {
    let mut capture = sse_capture(1 << 20);
    capture.on_data(CHUNK.as_bytes());
    capture.on_data(b"data: [DONE]");
    let record = capture.into_record("ex-3".into(), Some(200), vec![], Outcome::Ok, None);
    assert_eq!(record.events.len(), 2);
    assert_eq!(record.outcome, Outcome::Ok);
}

#[test]
fn stream_events_past_the_limit_are_not_stored_but_still_assembled() {
    let mut capture = sse_capture(200);
    for _ in 0..10 {
        capture.on_data(CHUNK.as_bytes());
    }
    capture.on_data(b"data: [DONE]\n\n");
    let record = capture.into_record("ex-4".into(), Some(200), vec![], Outcome::Ok, None);
    assert!(record.events.len() < 10, "{}", record.events.len());
    assert_eq!(
        record.events.last().unwrap().event.as_deref(),
        Some(TRUNCATED_EVENT)
    );
    assert_eq!(record.assembled.unwrap().text, "hi ".repeat(10));
}

#[test]
fn an_exchange_without_a_response_has_no_first_byte() {
    let capture = ResponseCapture::no_response(EndpointKind::ChatCompletions, Instant::now(), 1024);
    let record = capture.into_record("ex-5".into(), None, vec![], Outcome::ClientAborted, None);
    assert_eq!(record.ttfb_ms, None);
    assert_eq!(record.outcome, Outcome::ClientAborted);
}
