//! `kill -9` exactly between a request's record and its forward: the daemon is held there by the
//! test-only fault hook (cargo feature `fault-hooks`, built into the suite's WARDEN_BIN), killed,
//! and restarted. Every request the upstream received has its record, the killed one is on record
//! (never forwarded, its outcome `incomplete`), and the chain verifies.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::{self, sqlite};
use warden_tests::curl::assert_ok;
use warden_tests::{require_kernel, wait, FakeUpstream};

/// The hook holds requests while this file exists in the hooks directory.
const HOLD: &str = "hold-before-forward";
/// The hook creates this file once a request is held.
const HELD: &str = "held-before-forward";
const HELD_TIMEOUT: Duration = Duration::from_secs(30);

fn exchange_with<'a>(exported: &'a [Value], marker: &str) -> &'a Value {
    let found: Vec<&Value> = exported
        .iter()
        .filter(|d| {
            d["request"]["body"]["text"]
                .as_str()
                .is_some_and(|t| t.contains(marker))
        })
        .collect();
    assert_eq!(found.len(), 1, "one record for {marker}: {exported:#?}");
    found[0]
}

fn wait_until_held(hooks: &Path) {
    wait::until(
        "the fault hook to hold the request before forward (is WARDEN_BIN built with the \
         `fault-hooks` feature, as `cargo xtask test` builds it?)",
        HELD_TIMEOUT,
        || hooks.join(HELD).exists().then_some(()),
    );
}

#[test]
fn kill_9_between_record_and_forward_keeps_the_record_and_the_chain() {
    let Some(e2e) = require_kernel() else { return };
    let hooks = tempfile::tempdir().expect("creating the hooks dir");
    let mut fx = audit::fixture(&e2e, "faults-crash", FakeUpstream::start(), |daemon, _| {
        daemon.env("WARDEN_FAULT_HOOKS_DIR", hooks.path())
    });

    // Before the fault: forwarded and recorded as usual.
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "before-the-crash"))
            .run(),
    );
    fx.upstream.wait_for_requests(1, Duration::from_secs(10));

    fs::write(hooks.path().join(HOLD), b"").expect("arming the hook");
    let held = fx
        .client(audit::curl::chat("gpt-4o-mini", "held-at-the-crash"))
        .spawn();
    wait_until_held(hooks.path());
    assert_eq!(
        fx.upstream.requests().len(),
        1,
        "the held request reached the upstream"
    );
    let status = fx.daemon.kill9();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let out = held.wait();
    assert!(
        !out.stderr.contains("http_code=200"),
        "the held request was answered 200 by a killed daemon\n{out}"
    );
    fs::remove_file(hooks.path().join(HOLD)).expect("disarming the hook");

    fx.daemon.restart();
    let db = audit::db_path(&fx.daemon);
    assert_eq!(sqlite::query(&db, "PRAGMA integrity_check"), "ok");
    audit::assert_verifies(&fx.daemon);
    let exported = audit::export(&fx.daemon, &[]);
    assert_eq!(exported.len(), 2, "{exported:#?}");
    let before = exchange_with(&exported, "before-the-crash");
    assert_eq!(before["outcome"], "ok", "{before:#}");
    // The killed exchange: its request is on record; it has no response record, so it reads
    // `incomplete` — and the upstream never saw it.
    let killed = exchange_with(&exported, "held-at-the-crash");
    assert_eq!(killed["outcome"], audit::INCOMPLETE, "{killed:#}");
    assert!(killed["response"].is_null(), "{killed:#}");
    let forwarded = fx.upstream.requests();
    assert_eq!(forwarded.len(), 1, "the upstream got {forwarded:?}");
    assert!(
        String::from_utf8_lossy(&forwarded[0].body).contains("before-the-crash"),
        "{forwarded:?}"
    );

    // The restarted daemon appends to the same chain.
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "after-the-restart"))
            .run(),
    );
    let mut known = audit::ids(&exported).into_iter().collect();
    let after = audit::wait_for_new_exchange(&fx.daemon, &mut known);
    assert_eq!(after["outcome"], "ok", "{after:#}");
    audit::assert_verifies(&fx.daemon);
    assert_eq!(fx.upstream.requests().len(), 2);
}
