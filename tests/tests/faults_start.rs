//! The audit store is locked by another process, or corrupt, when the daemon starts: it exits
//! non-zero with an error that names the store and what to do, and never starts a fresh store
//! over the old one nor moves it aside.

use std::fs;
use std::path::Path;

use warden_tests::audit::{self, sqlite::LockHolder};
use warden_tests::curl::assert_ok;
use warden_tests::{require_kernel, AgentFixture, FakeUpstream};

/// A daemon that recorded one exchange, then stopped cleanly.
fn stopped_with_a_record(e2e: &warden_tests::E2e, name: &str) -> AgentFixture {
    let mut fx = audit::fixture(e2e, name, FakeUpstream::start(), |daemon, _| daemon);
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "before-the-stop"))
            .run(),
    );
    audit::wait_for_finished(&fx.daemon, 1);
    fx.daemon.stop(libc::SIGTERM);
    fx
}

/// The names in the store's directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Restarts the daemon, which must refuse; returns its log.
fn refused_start(fx: &mut AgentFixture) -> String {
    let status = fx.daemon.restart_expecting_exit();
    assert!(!status.success(), "warden run exited {status:?}");
    assert!(
        status.code().is_some(),
        "warden run died of a signal: {status:?}"
    );
    fx.daemon.log_text()
}

#[test]
fn a_store_locked_at_start_stops_the_daemon_with_what_to_do() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = stopped_with_a_record(&e2e, "faults-start-locked");
    let db = audit::db_path(&fx.daemon);

    let lock = LockHolder::take(&db);
    let log = refused_start(&mut fx);
    let expected = format!(
        "audit store {} is locked by another process (a second warden, or a tool holding a write \
         transaction); Warden does not run without recording. Find it with `fuser -v {}*`, stop \
         it, then start Warden again",
        db.display(),
        db.display()
    );
    assert!(log.contains(&expected), "{log}");
    drop(lock);

    // Released: the same store is taken up again, its record and chain intact.
    fx.daemon.restart();
    audit::assert_verifies(&fx.daemon);
    assert_eq!(audit::export(&fx.daemon, &[]).len(), 1);
}

#[test]
fn a_corrupt_or_truncated_store_stops_the_daemon_and_is_left_as_it_is() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = stopped_with_a_record(&e2e, "faults-start-corrupt");
    let db = audit::db_path(&fx.daemon);
    let state_dir = fx.daemon.state_dir().to_owned();
    let whole = fs::read(&db).expect("reading the store");

    let garbage: Vec<u8> = (0..whole.len() as u32)
        .map(|i| (i.wrapping_mul(7919) % 251) as u8)
        .collect();
    let half = whole[..whole.len() / 2].to_vec();
    for (what, bytes, problem) in [
        (
            "garbage",
            garbage,
            "is not a readable audit database (file is not a database)",
        ),
        ("truncated", half, "is truncated: its header counts"),
    ] {
        fs::write(&db, &bytes).expect("damaging the store");
        let before = names_in(&state_dir);
        let log = refused_start(&mut fx);
        let expected = format!("audit store {} {problem}", db.display());
        assert!(log.contains(&expected), "{what}: {log}");
        assert!(
            log.contains("Warden does not start a fresh store over it nor move it aside"),
            "{what}: {log}"
        );
        assert_eq!(
            fs::read(&db).unwrap(),
            bytes,
            "{what}: the store was rewritten"
        );
        let after: Vec<String> = names_in(&state_dir)
            .into_iter()
            .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
            .collect();
        let before: Vec<String> = before
            .into_iter()
            .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
            .collect();
        assert_eq!(after, before, "{what}: a store was made or moved aside");
    }
}
