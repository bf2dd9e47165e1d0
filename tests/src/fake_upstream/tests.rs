//! Self-tests: the fake upstream answers a hyper + rustls client over loopback, h2 and http/1.1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::*;

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    frames: Vec<Bytes>,
}

impl Reply {
    fn body(&self) -> Vec<u8> {
        self.frames.iter().flat_map(|b| b.to_vec()).collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body()).unwrap()
    }
}

fn upstream() -> FakeUpstreamBuilder {
    // Port 0: the self-tests must not need root.
    FakeUpstream::builder().port(0)
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Sends the request and reads the whole response.
async fn send(
    upstream: &FakeUpstream,
    server_name: &str,
    alpn: &[u8],
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Reply, Error> {
    let response = start(upstream, server_name, alpn, method, path, body).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let frames = read_frames(&mut response.into_body(), usize::MAX).await?;
    Ok(Reply {
        status,
        headers,
        frames,
    })
}

/// Reads up to `limit` data frames (all of them when the body ends first).
async fn read_frames(body: &mut hyper::body::Incoming, limit: usize) -> Result<Vec<Bytes>, Error> {
    let mut frames = Vec::new();
    while frames.len() < limit {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame?.into_data() {
            frames.push(data);
        }
    }
    Ok(frames)
}

/// Sends the request; returns the response with its body still to be read.
async fn start(
    upstream: &FakeUpstream,
    server_name: &str,
    alpn: &[u8],
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<http::Response<hyper::body::Incoming>, Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(upstream.ca().root_store())
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(upstream.addr()).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(server_name.to_owned())?, tcp)
        .await?;
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    assert_eq!(negotiated.as_deref(), Some(alpn), "ALPN negotiated");

    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(format!("https://{server_name}{path}"))
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let io = TokioIo::new(tls);
    let response = if alpn == b"h2" {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        let (mut parts, body) = request.into_parts();
        parts.headers.insert("host", server_name.parse()?);
        parts.uri = path.parse()?;
        sender
            .send_request(Request::from_parts(parts, body))
            .await?
    };
    Ok(response)
}

#[tokio::test]
async fn answers_a_chat_completion_over_h2_and_records_the_request() {
    let upstream = upstream().start();
    let reply = send(
        &upstream,
        "api.openai.com",
        b"h2",
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["choices"][0]["message"]["content"], DEFAULT_REPLY);
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let requests = upstream.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].authority.as_deref(), Some("api.openai.com"));
    assert_eq!(requests[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(requests[0].json()["model"], "gpt-4o");
    assert_eq!(requests[0].version, http::Version::HTTP_2);
}

#[tokio::test]
async fn streams_chat_chunks_over_http1_one_at_a_time() {
    let upstream = upstream().chunk_delay(Duration::from_millis(1)).start();
    let reply = send(
        &upstream,
        "api.openai.com",
        b"http/1.1",
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true}})),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let text = String::from_utf8(reply.body()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let content: String = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, DEFAULT_REPLY);
    assert!(text.contains("\"total_tokens\""), "usage chunk present");

    let events = openai::chat_completion_events("gpt-4o-mini", DEFAULT_REPLY, true).len();
    assert!(
        reply.frames.len() >= events / 2,
        "{} frames",
        reply.frames.len()
    );
}

#[tokio::test]
async fn holds_a_stream_at_the_gate_until_it_opens() {
    let upstream = upstream()
        .chunk_delay(Duration::from_millis(1))
        .gate_after(1)
        .start();
    let body = json!({"model": "gpt-4o-mini", "stream": true});
    let response = start(
        &upstream,
        "api.openai.com",
        b"http/1.1",
        "POST",
        "/v1/chat/completions",
        Some(body),
    )
    .await
    .unwrap();
    let mut body = response.into_body();
    let events = openai::chat_completion_events("gpt-4o-mini", DEFAULT_REPLY, false);

    // The first event arrives while the gate is closed, and the stream waits there.
    let first = read_frames(&mut body, 1).await.unwrap().concat();
    assert_eq!(first, events[0].as_bytes());
    let held = async {
        while upstream.held_at_gate() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the stream reaches the gate");

    upstream.open_gate();
    let rest = read_frames(&mut body, usize::MAX).await.unwrap().concat();
    assert_eq!(rest, events[1..].concat().as_bytes());
    assert_eq!(upstream.held_at_gate(), 1);
}

#[tokio::test]
async fn streams_the_responses_api() {
    let upstream = upstream().chunk_delay(Duration::from_millis(1)).start();
    let reply = send(
        &upstream,
        "api.openai.com",
        b"h2",
        "POST",
        "/v1/responses",
        Some(json!({"model": "o4-mini", "input": "hi", "stream": true})),
    )
    .await
    .unwrap();
    let text = String::from_utf8(reply.body()).unwrap();
    assert!(text.starts_with("event: response.created\n"), "{text}");
    assert!(text.contains("event: response.completed\n"));
    assert!(text.contains("\"model\":\"o4-mini\""));
}

#[tokio::test]
async fn answers_the_responses_api_and_models_without_streaming() {
    let upstream = upstream().name("other.test").start();
    let response = send(
        &upstream,
        "other.test",
        b"http/1.1",
        "POST",
        "/v1/responses",
        Some(json!({"model": "gpt-4o", "input": "hi"})),
    )
    .await
    .unwrap()
    .json();
    assert_eq!(response["object"], "response");
    assert_eq!(response["output"][0]["content"][0]["text"], DEFAULT_REPLY);

    let models = send(
        &upstream,
        "api.openai.com",
        b"h2",
        "GET",
        "/v1/models",
        None,
    )
    .await
    .unwrap()
    .json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, openai::MODELS);

    let missing = send(&upstream, "api.openai.com", b"h2", "GET", "/v1/nope", None)
        .await
        .unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn resets_after_the_handshake_when_told_to() {
    let upstream = upstream().behavior(Behavior::ResetAfterHandshake).start();
    let result = send(
        &upstream,
        "api.openai.com",
        b"http/1.1",
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "gpt-4o"})),
    )
    .await;
    assert!(result.is_err(), "the request must fail");
    assert_eq!(upstream.connections(), 1);
    assert!(upstream.requests().is_empty());
}
