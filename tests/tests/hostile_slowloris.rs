//! Hostile clients, slowloris: connections that send nothing, headers or a body a byte a second,
//! and HTTP/2 connections that never send a request are closed by the `[limits]` timeouts (set
//! short here; the outcome is judged, not the time), each on record. A well-behaved client is
//! served throughout.

use warden_tests::audit::{connections, db_path};
use warden_tests::hostile::{self, Idle};
use warden_tests::hostile_fixture::{
    api_address, assert_served, metric, start, wait_for_metric, GENEROUS,
};
use warden_tests::{require_kernel, wait, AgentFixture};

const SHORT_TIMEOUTS: &str = "[limits]
handshake_timeout_secs = 2
header_read_timeout_secs = 2
body_read_timeout_secs = 3
body_idle_timeout_secs = 2
http2_idle_timeout_secs = 2
";

/// Waits for `count` connection records of `pid` and returns them.
fn records_of(fx: &AgentFixture, pid: u32, count: usize) -> Vec<serde_json::Value> {
    let db = db_path(&fx.daemon);
    wait::within(GENEROUS, || {
        let records = connections::records_of(&db, pid);
        (records.len() >= count).then_some(records)
    })
    .unwrap_or_else(|| {
        panic!(
            "{count} connection records of pid {pid}, found {}:\n{}",
            connections::records_of(&db, pid).len(),
            fx.daemon.log_text()
        )
    })
}

#[test]
fn connections_that_never_send_a_byte_are_closed_after_the_handshake_timeout() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "slow-hello", SHORT_TIMEOUTS);
    const IDLE: usize = 1_000;

    let attacker = fx
        .client(hostile::idle(
            api_address(&fx),
            IDLE,
            Idle::UntilClosed,
            150,
        ))
        .timeout(GENEROUS)
        .spawn();
    assert_served(&mut fx);
    let report = hostile::report(&attacker.wait());

    assert_eq!(report.sent, IDLE, "{report:?}");
    assert_eq!(
        report.closed_by_peer, IDLE,
        "Warden closed each: {report:?}"
    );
    for record in records_of(&fx, report.pid, IDLE) {
        assert_eq!(record["disposition"], "rejected", "{record:#}");
        assert_eq!(
            record["reason"],
            "client sent no complete ClientHello within 2s ([limits] handshake_timeout_secs)",
            "{record:#}"
        );
    }
    assert_served(&mut fx);
}

const REQUEST_LINE: &str = "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n";

#[test]
fn a_client_trickling_its_headers_is_closed_after_the_header_timeout() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "slow-headers", SHORT_TIMEOUTS);
    let trickle = format!("X-Slow: {}\r\n\r\n", "a".repeat(200));

    let attacker = fx
        .client(hostile::slow(
            api_address(&fx),
            "api.openai.com",
            &fx.daemon.ca_pem(),
            REQUEST_LINE.as_bytes(),
            trickle.as_bytes(),
            150,
        ))
        .timeout(GENEROUS)
        .spawn();
    assert_served(&mut fx);
    let report = hostile::report(&attacker.wait());

    assert!(
        ["eof", "reset"].contains(&report.end.as_str()),
        "{report:?}"
    );
    assert!(
        report.sent < trickle.len(),
        "closed mid-headers: {report:?}"
    );
    let record = &records_of(&fx, report.pid, 1)[0];
    assert_eq!(record["disposition"], "intercepted", "{record:#}");
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("timeout"), "{record:#}");
    assert!(
        fx.upstream.requests().len() <= 2,
        "only the good calls went up"
    );
    assert_served(&mut fx);
}

#[test]
fn a_body_trickled_a_byte_a_second_is_answered_408() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "slow-body", SHORT_TIMEOUTS);
    let body_start = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":""#;
    let head = format!(
        "{REQUEST_LINE}Content-Type: application/json\r\nAuthorization: Bearer sk-test\r\nContent-Length: 1000\r\n\r\n{body_start}"
    );
    let trickle = "a".repeat(1000 - body_start.len());

    let attacker = fx
        .client(hostile::slow(
            api_address(&fx),
            "api.openai.com",
            &fx.daemon.ca_pem(),
            head.as_bytes(),
            trickle.as_bytes(),
            150,
        ))
        .timeout(GENEROUS)
        .spawn();
    assert_served(&mut fx);
    let report = hostile::report(&attacker.wait());

    assert!(report.received.starts_with("HTTP/1.1 408"), "{report:?}");
    assert!(
        report.received.contains(r#""code":"request_timeout""#),
        "{report:?}"
    );
    assert!(
        report.received.contains("body_read_timeout_secs"),
        "{report:?}"
    );
    assert!(report.sent < trickle.len(), "{report:?}");
    let exchange = fx.daemon.wait_for_exchange(report.pid);
    assert_eq!(exchange.u64("status"), Some(408), "{exchange}");
    assert_eq!(
        fx.upstream.requests().len(),
        1,
        "the slow body never went up"
    );
    assert_served(&mut fx);
}

#[test]
fn an_http2_connection_without_requests_is_closed_after_the_idle_timeout() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "h2-idle", SHORT_TIMEOUTS);

    let out = fx
        .client(hostile::h2_rapid_reset(
            api_address(&fx),
            "api.openai.com",
            &fx.daemon.ca_pem(),
            0,
            150,
        ))
        .timeout(GENEROUS)
        .run();
    let report = hostile::report(&out);

    assert_ne!(report.end, "timeout", "Warden closed it: {report:?}");
    wait_for_metric(
        &fx,
        "warden_http2_connections_closed_total",
        &[("reason", "idle")],
        1.0,
    );
    let record = &records_of(&fx, report.pid, 1)[0];
    assert_eq!(
        record["reason"], "closed by Warden: no request for 2s ([limits] http2_idle_timeout_secs)",
        "{record:#}"
    );
    assert_eq!(
        metric(
            &fx,
            "warden_http2_connections_closed_total",
            &[("reason", "client_resets")]
        ),
        0.0
    );
    assert_served(&mut fx);
}
