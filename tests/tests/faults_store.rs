//! The audit store cannot take records: its disk is full, or another process holds its write lock
//! while Warden runs. Requests are refused 503 (OpenAI-shaped, fail closed) and never reach the
//! upstream unrecorded; a log line and `warden_audit_write_failures_total{cause}` say why; the
//! daemon serves again, recording, once the store can take records, and the chain verifies.
//!
//! A request is on record once it is in the request journal. So a request that arrives before the
//! writer has found the store locked is journaled and forwarded; the writer then holds its record
//! until the store takes it, and refuses every request meanwhile.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use warden_tests::audit::{self, sqlite::LockHolder, FAKE_KEY};
use warden_tests::client::ClientOutput;
use warden_tests::curl::{assert_ok, http_code};
use warden_tests::prometheus::Exposition;
use warden_tests::{require_kernel, wait, AgentFixture, FakeUpstream};

/// The 503 every request gets while its record cannot be committed.
fn assert_refused_unrecorded(out: &ClientOutput) {
    assert_eq!(http_code(out), 503, "{out}");
    let body: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("the 503 body is not JSON ({e})\n{out}"));
    assert_eq!(
        body,
        json!({"error": {
            "message": "Warden could not record this request in its audit store, so it was not sent",
            "type": "server_error",
            "param": null,
            "code": "audit_unavailable",
        }}),
        "{out}"
    );
}

fn write_failures(fx: &AgentFixture, cause: &str) -> f64 {
    Exposition::scrape(&fx.daemon.metrics_url())
        .value("warden_audit_write_failures_total", &[("cause", cause)])
        .unwrap_or(0.0)
}

/// The exchanges on record once there are `count` of them: a forwarded request's record is
/// durable in the request journal before it is forwarded, and in the store a moment later.
fn exported_once_folded(fx: &AgentFixture, count: usize) -> Vec<Value> {
    wait::until(
        &format!("{count} exchanges in the audit store"),
        Duration::from_secs(15),
        || {
            let exported = audit::export(&fx.daemon, &[]);
            (exported.len() >= count).then_some(exported)
        },
    )
}

/// Each exchange's recorded request body.
fn request_texts(exported: &[Value]) -> Vec<&str> {
    exported
        .iter()
        .map(|d| d["request"]["body"]["text"].as_str().unwrap_or_default())
        .collect()
}

fn store_refusing(fx: &AgentFixture) -> f64 {
    Exposition::scrape(&fx.daemon.metrics_url())
        .value("warden_audit_store_refusing", &[])
        .expect("warden_audit_store_refusing is exposed")
}

/// A chat request whose prompt is `bytes` long, its body sent from a file (too long for argv).
fn big_chat(dir: &Path, marker: &str, bytes: usize) -> Vec<String> {
    let mut content = marker.to_owned();
    content.push_str(&" padding".repeat(bytes / 8));
    let path = dir.join(format!("{marker}.json"));
    std::fs::write(
        &path,
        audit::curl::chat_body("gpt-4o-mini", &content, false),
    )
    .expect("writing the request body");
    [
        "curl",
        "-sS",
        "--max-time",
        "30",
        "-w",
        "%{stderr}http_code=%{http_code}\\n",
        "https://api.openai.com/v1/chat/completions",
        "-H",
        &format!("Authorization: Bearer {FAKE_KEY}"),
        "-H",
        "content-type: application/json",
        "--data-binary",
        &format!("@{}", path.display()),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn markers_at_upstream(upstream: &FakeUpstream) -> Vec<String> {
    upstream
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).chars().take(200).collect())
        .collect()
}

/// Only the `forwarded` requests reached the upstream, and the daemon logged why the others were
/// refused, with the store's or the journal's error.
fn assert_nothing_more_went_upstream_and_the_log_says(
    fx: &AgentFixture,
    forwarded: usize,
    store_error: &str,
) {
    assert_eq!(
        fx.upstream.requests().len(),
        forwarded,
        "a request went upstream unrecorded: {:?}",
        markers_at_upstream(&fx.upstream)
    );
    let refused = fx
        .daemon
        .wait_for_log("the refusal's reason", Duration::from_secs(10), |l| {
            l.is("audit store: request record not committed; refusing the request")
        });
    assert!(
        refused
            .str("error")
            .is_some_and(|e| e.contains(store_error)),
        "{refused}"
    );
}

#[test]
fn a_full_disk_refuses_requests_until_space_returns() {
    let Some(e2e) = require_kernel() else { return };
    let bodies = tempfile::tempdir().expect("a dir for request bodies");
    let fx = audit::fixture(&e2e, "faults-disk", FakeUpstream::start(), |daemon, _| {
        daemon.state_dir_on_tmpfs(24 << 20).metrics()
    });
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "before-the-disk-fills"))
            .run(),
    );
    assert_eq!(fx.upstream.requests().len(), 1);

    let filled = fx.daemon.state_tmpfs().fill("filler");
    assert!(filled > 0, "the tmpfs had no room to fill");
    // A record bigger than any free page the store's files already hold: it must grow them.
    for attempt in ["while-the-disk-is-full-1", "while-the-disk-is-full-2"] {
        let out = fx.client(big_chat(bodies.path(), attempt, 2 << 20)).run();
        assert_refused_unrecorded(&out);
    }
    // The record cannot even be journaled.
    assert_nothing_more_went_upstream_and_the_log_says(&fx, 1, "No space left on device");
    let failed =
        fx.daemon
            .wait_for_log("the failed append's cause", Duration::from_secs(10), |l| {
                l.str("cause") == Some("disk_full")
            });
    assert_eq!(failed.level(), "WARN", "{failed}");
    assert!(write_failures(&fx, "disk_full") >= 1.0);

    std::fs::remove_file(fx.daemon.state_dir().join("filler")).expect("freeing the space");
    let after = fx
        .client(big_chat(bodies.path(), "after-space-returns", 2 << 20))
        .run();
    assert_ok(&after);
    assert_eq!(fx.upstream.requests().len(), 2);
    let exported = exported_once_folded(&fx, 2);
    audit::assert_verifies(&fx.daemon);
    let texts = request_texts(&exported);
    assert_eq!(exported.len(), 2, "{texts:?}");
    assert!(texts[0].contains("before-the-disk-fills"), "{texts:?}");
    assert!(texts[1].contains("after-space-returns"), "{texts:?}");
}

#[test]
fn a_store_locked_while_running_holds_the_journaled_record_and_refuses_requests_until_released() {
    let Some(e2e) = require_kernel() else { return };
    let fx = audit::fixture(&e2e, "faults-locked", FakeUpstream::start(), |daemon, _| {
        daemon.metrics()
    });
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "before-the-lock"))
            .run(),
    );

    let lock = LockHolder::take(&audit::db_path(&fx.daemon));
    // Journaled and forwarded: nothing has told Warden yet that the store is locked.
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "journaled-while-locked"))
            .run(),
    );
    fx.daemon
        .wait_for_log("the writer to stall", Duration::from_secs(30), |l| {
            l.is("the audit store refuses records: holding the writer and refusing new requests until it takes them (the held request is safe in the request journal)")
        });
    let out = fx
        .client(audit::curl::chat("gpt-4o-mini", "refused-while-locked"))
        .run();
    assert_refused_unrecorded(&out);
    assert_nothing_more_went_upstream_and_the_log_says(&fx, 2, "database is locked");
    assert!(write_failures(&fx, "locked") >= 1.0);
    assert_eq!(store_refusing(&fx), 1.0);
    drop(lock);

    fx.daemon
        .wait_for_log("the writer to resume", Duration::from_secs(30), |l| {
            l.is("the audit store takes records again")
        });
    assert_eq!(store_refusing(&fx), 0.0);
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "after-the-lock"))
            .run(),
    );
    assert_eq!(fx.upstream.requests().len(), 3);
    let exported = exported_once_folded(&fx, 3);
    audit::assert_verifies(&fx.daemon);
    let texts = request_texts(&exported);
    assert_eq!(exported.len(), 3, "{texts:?}");
    assert!(texts[1].contains("journaled-while-locked"), "{texts:?}");
    assert_eq!(exported[1]["outcome"], "ok", "{:#}", exported[1]);
}
