//! Tests of request forwarding helpers: upgrades, targets, headers.
use http::HeaderValue;

use super::*;

fn request_parts(request: http::request::Builder) -> http::request::Parts {
    request.body(()).unwrap().into_parts().0
}

#[test]
fn websocket_and_connect_requests_are_upgrades() {
    let websocket = Request::get("/v1/realtime?model=gpt-realtime")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket");
    assert_eq!(
        requested_upgrade(&request_parts(websocket)).as_deref(),
        Some("websocket")
    );
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri("api.openai.com:443");
    assert_eq!(
        requested_upgrade(&request_parts(connect)).as_deref(),
        Some("CONNECT")
    );
    let mut extended = request_parts(
        Request::builder()
            .method(Method::CONNECT)
            .uri("/v1/realtime"),
    );
    extended
        .extensions
        .insert(hyper::ext::Protocol::from_static("websocket"));
    assert_eq!(requested_upgrade(&extended).as_deref(), Some("websocket"));
}

#[test]
fn plain_requests_and_h2c_are_not_upgrades() {
    let plain = Request::post("/v1/responses").header("connection", "keep-alive");
    assert_eq!(requested_upgrade(&request_parts(plain)), None);
    let h2c = Request::get("/v1/models")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c");
    assert_eq!(requested_upgrade(&request_parts(h2c)), None);
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
fn hop_by_hop_headers_are_removed_without_a_connection_header() {
    let mut headers = HeaderMap::new();
    headers.insert("te", HeaderValue::from_static("trailers"));
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    strip_hop_by_hop(&mut headers);
    assert_eq!(headers.len(), 1);
    assert!(headers.contains_key("content-type"));
}

#[test]
fn upstream_uri_keeps_path_and_query() {
    let uri: http::Uri = "/v1/models?limit=2".parse().unwrap();
    assert_eq!(
        upstream_uri("api.openai.com", 443, &uri)
            .unwrap()
            .to_string(),
        "https://api.openai.com/v1/models?limit=2"
    );
}

#[test]
fn upstream_uri_names_a_port_other_than_443() {
    let uri: http::Uri = "/v1/models".parse().unwrap();
    let upstream = upstream_uri("api.openai.com", 8443, &uri).unwrap();
    assert_eq!(
        upstream.to_string(),
        "https://api.openai.com:8443/v1/models"
    );
    assert_eq!(upstream.host(), Some("api.openai.com"));
    assert_eq!(upstream.port_u16(), Some(8443));
}

#[test]
fn content_types_ignore_parameters_and_case() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("Text/Event-Stream; charset=utf-8"),
    );
    assert!(is_event_stream(&headers));
}

#[test]
fn paths_an_upstream_could_read_differently_are_ambiguous() {
    assert!(ambiguous_path("/v1/./chat/completions"));
    assert!(ambiguous_path("/v1/x/../chat/completions"));
    assert!(ambiguous_path("/v1/%63hat/completions"));
    assert!(ambiguous_path("/v1\\chat/completions"));
    assert!(!ambiguous_path("/v1/chat/completions"));
    assert!(!ambiguous_path("/v1/files/file-abc123/content"));
}

#[test]
fn bodies_a_policy_could_misjudge_cannot_be_normalized() {
    // Duplicated keys: the policy and the upstream could each see a different copy.
    let duplicated = br#"{"model":"gpt-4o","temperature":0.1,"temperature":1.9}"#;
    assert!(normalized_body(duplicated).is_err());
    // A mistyped field would otherwise be judged as absent.
    assert!(normalized_body(br#"{"model":"gpt-4o","max_tokens":"lots"}"#).is_err());
    // Compressed or otherwise unparseable bytes.
    assert!(normalized_body(b"\x1f\x8b\x08\x00").is_err());
    // A clean body is re-serialized to the same JSON value.
    let clean = br#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#;
    let normalized = normalized_body(clean).unwrap();
    assert_eq!(normalized.fields.model.as_deref(), Some("gpt-4o"));
    let a: serde_json::Value = serde_json::from_slice(clean).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&normalized.bytes).unwrap();
    assert_eq!(a, b);
    assert_eq!(normalized.value, Some(a), "the value the policy judges");
    assert!(normalized_body(b"").unwrap().bytes.is_empty());
}
