//! `kill -9` in every window of a request record's way to the store: the daemon is held there by
//! the test-only fault hooks (cargo feature `fault-hooks`, built into the suite's WARDEN_BIN),
//! killed, and restarted. The windows: between the record's append to the request journal and
//! the forward; forwarded with the record only in the journal (the writer held before folding
//! it); folded and fsynced but its journal segment not yet deleted; and the start-up replay's
//! commit before it deletes the journal. Every request the upstream received has exactly one
//! record, and the chain verifies.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::{self, sqlite};
use warden_tests::curl::assert_ok;
use warden_tests::{require_kernel, wait, FakeUpstream};

const HELD_TIMEOUT: Duration = Duration::from_secs(30);

/// Holds whatever reaches `point` from now on (see agent/src/fault_hooks.rs).
fn arm(hooks: &Path, point: &str) {
    fs::write(hooks.join(format!("hold-{point}")), b"").expect("arming the hook");
}

fn disarm(hooks: &Path, point: &str) {
    fs::remove_file(hooks.join(format!("hold-{point}"))).expect("disarming the hook");
    let _ = fs::remove_file(hooks.join(format!("held-{point}")));
}

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

fn wait_until_held(hooks: &Path, point: &str) {
    wait::until(
        &format!(
            "the fault hook to hold at {point} (is WARDEN_BIN built with the `fault-hooks` \
             feature, as `cargo xtask test` builds it?)"
        ),
        HELD_TIMEOUT,
        || hooks.join(format!("held-{point}")).exists().then_some(()),
    );
}

/// Kills the daemon once it is held at `point`, and disarms the hook for the next start.
fn kill_when_held(fx: &mut warden_tests::AgentFixture, hooks: &Path, point: &str) {
    wait_until_held(hooks, point);
    fx.daemon.kill9();
    disarm(hooks, point);
}

/// After a kill and a restart: the store is intact and its chain verifies.
fn assert_intact(fx: &warden_tests::AgentFixture) {
    let db = audit::db_path(&fx.daemon);
    assert_eq!(sqlite::query(&db, "PRAGMA integrity_check"), "ok");
    audit::assert_verifies(&fx.daemon);
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

    arm(hooks.path(), "before-forward");
    let held = fx
        .client(audit::curl::chat("gpt-4o-mini", "held-at-the-crash"))
        .spawn();
    wait_until_held(hooks.path(), "before-forward");
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
    disarm(hooks.path(), "before-forward");

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

#[test]
fn kill_9_in_each_window_of_the_journal_keeps_one_record_of_each_forwarded_request() {
    let Some(e2e) = require_kernel() else { return };
    let hooks = tempfile::tempdir().expect("creating the hooks dir");
    let hooks = hooks.path();
    let mut fx = audit::fixture(
        &e2e,
        "faults-journal",
        FakeUpstream::start(),
        |daemon, _| daemon.env("WARDEN_FAULT_HOOKS_DIR", hooks),
    );

    // Forwarded and answered while its record is only in the journal: the writer is held.
    arm(hooks, "before-fold");
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "only-journaled"))
            .run(),
    );
    assert_eq!(fx.upstream.requests().len(), 1);
    kill_when_held(&mut fx, hooks, "before-fold");

    // The restart's replay has committed it, and is killed before it deletes the journal.
    arm(hooks, "replay-before-forget");
    fx.daemon.respawn();
    kill_when_held(&mut fx, hooks, "replay-before-forget");
    fx.daemon.restart();
    assert_intact(&fx);
    let exported = audit::export(&fx.daemon, &[]);
    assert_eq!(exported.len(), 1, "{exported:#?}");
    // The writer never folded its response: the answered exchange reads `incomplete`.
    let journaled = exchange_with(&exported, "only-journaled");
    assert_eq!(journaled["outcome"], audit::INCOMPLETE, "{journaled:#}");

    // Folded into the store and fsynced, killed before its journal segment is deleted.
    arm(hooks, "before-forget");
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "folded-not-forgotten"))
            .run(),
    );
    kill_when_held(&mut fx, hooks, "before-forget");
    fx.daemon.restart();
    assert_intact(&fx);
    let exported = audit::export(&fx.daemon, &[]);
    assert_eq!(exported.len(), 2, "{exported:#?}");
    exchange_with(&exported, "only-journaled");
    exchange_with(&exported, "folded-not-forgotten");
    assert_eq!(fx.upstream.requests().len(), 2);

    // The restarted daemon appends to the same chain.
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "after-the-restarts"))
            .run(),
    );
    let mut known = audit::ids(&exported).into_iter().collect();
    let after = audit::wait_for_new_exchange(&fx.daemon, &mut known);
    assert_eq!(after["outcome"], "ok", "{after:#}");
    assert_intact(&fx);
}
