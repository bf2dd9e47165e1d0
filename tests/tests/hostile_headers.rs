//! Hostile clients, headers: too many or too large request headers, over HTTP/1.1 and HTTP/2,
//! are answered 431 (or the stream refused) without reaching the upstream, and the connection is
//! on record. A well-behaved client is served throughout.

use warden_tests::audit::{connections, db_path};
use warden_tests::curl::{self, http_code};
use warden_tests::hostile_fixture::{assert_served, start, GENEROUS};
use warden_tests::{require_kernel, wait, AgentFixture, ClientOutput};

/// curl's chat call with `headers` added, over `protocol` (`--http1.1` or `--http2`).
fn chat_with_headers(fx: &AgentFixture, protocol: &str, headers: &[String]) -> ClientOutput {
    let mut command = curl::chat();
    command.insert(1, protocol.to_owned());
    for header in headers {
        command.push("-H".into());
        command.push(header.clone());
    }
    fx.client(command).run()
}

/// The connection of `out`'s curl is on record.
fn assert_connection_recorded(fx: &AgentFixture, out: &ClientOutput) -> serde_json::Value {
    let db = db_path(&fx.daemon);
    wait::within(GENEROUS, || connections::records_of(&db, out.pid()).pop())
        .unwrap_or_else(|| panic!("a connection record of {out}"))
}

#[test]
fn too_many_http1_headers_are_answered_431() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "many-headers", "[limits]\n");
    let headers: Vec<String> = (0..150).map(|i| format!("X-Flood-{i}: v")).collect();

    let out = chat_with_headers(&fx, "--http1.1", &headers);

    assert_eq!(http_code(&out), 431, "{out}");
    assert_connection_recorded(&fx, &out);
    assert!(fx.upstream.requests().is_empty());
    assert_served(&mut fx);
}

#[test]
fn an_oversized_http1_header_is_answered_431() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "big-header", "[limits]\n");
    // 1 MiB of headers, 16 times the bound (a head between one and two times the bound can pass,
    // depending on how the reads fall; the memory held stays within twice the bound).
    let headers: Vec<String> = (0..10)
        .map(|i| format!("X-Big-{i}: {}", "a".repeat(100 * 1024)))
        .collect();

    let out = chat_with_headers(&fx, "--http1.1", &headers);

    assert_eq!(http_code(&out), 431, "{out}");
    assert_connection_recorded(&fx, &out);
    assert!(fx.upstream.requests().is_empty());
    assert_served(&mut fx);
}

#[test]
fn an_oversized_http2_header_list_is_refused() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "big-h2-header", "[limits]\n");
    let headers: Vec<String> = (0..20)
        .map(|i| format!("X-Big-{i}: {}", "a".repeat(8 * 1024)))
        .collect();

    let out = chat_with_headers(&fx, "--http2", &headers);

    // 431, or the stream refused (curl then fails): never forwarded.
    let code = http_code(&out);
    assert!(code == 431 || !out.status.success(), "{out}");
    assert_connection_recorded(&fx, &out);
    assert!(fx.upstream.requests().is_empty());
    assert_served(&mut fx);
}
