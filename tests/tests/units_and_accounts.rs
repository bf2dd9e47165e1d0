//! Who a connection belongs to: a unit selected by name (also across a restart), `[[account]]`
//! names matched by cgroup and by uid, and a selected process that does not run as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;
use warden_tests::attribution::exchange_from;
use warden_tests::curl::{self, assert_ok, intercepted_chat, which};
use warden_tests::daemon::Account;
use warden_tests::{
    require_kernel, AgentFixture, CgroupGuard, Client, Daemon, FakeUpstream, HostsFile, LogLine,
};

/// The daemon walks the cgroup tree for a missing unit at most every 5 s; a restarted unit found
/// where it was last seen is picked up within the 1 s resync.
const UNIT_FOUND_TIMEOUT: Duration = Duration::from_secs(15);

const NOBODY_UID: u64 = 65534;
const NOGROUP_GID: u64 = 65534;

/// A unit name no other test (or run) uses.
fn unique_unit_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("warden-test-{}-{nanos}.service", std::process::id())
}

/// Asserts the identity fields a unit gives an exchange.
fn assert_unit_and_account(line: &LogLine, unit: &str) {
    assert_eq!(line.str("unit"), Some(unit), "{line}");
    assert_eq!(
        line.str("account"),
        Some(unit),
        "without an [[account]], the account is the unit name\n{line}"
    );
}

#[test]
fn a_unit_selected_by_name_is_intercepted_and_selected_again_after_a_restart() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let unit = unique_unit_name();
    // Not below /system.slice: the daemon has to find the unit by walking the tree.
    let slice = CgroupGuard::new("units");
    let service = slice.child(&unit);
    let daemon = Daemon::builder(&e2e)
        .select_unit(&unit)
        .upstream(&upstream)
        .start();

    let old_id = service.id();
    let status = daemon.wait_for_status("the unit to be selected", UNIT_FOUND_TIMEOUT, |s| {
        s.selected(service.path()).is_some_and(|e| e.id == old_id)
    });
    let entry = status.selected(service.path()).expect("just found");
    assert_eq!(entry.source, "unit", "{status:?}");
    let line = intercepted_chat(&daemon, &service, &hosts);
    assert_unit_and_account(&line, &unit);

    // systemd removes a unit's cgroup when it stops and creates a new one when it starts.
    let new_id = service.recreate();
    assert_ne!(new_id, old_id, "a re-created cgroup has a new id");
    let status = daemon.wait_for_status(
        "the restarted unit's new cgroup id",
        UNIT_FOUND_TIMEOUT,
        |s| s.selected(service.path()).map(|e| e.id) == Some(new_id),
    );
    assert!(
        status.selected.iter().all(|e| e.id != old_id),
        "the old id is no longer selected: {status:?}"
    );
    assert_eq!(
        status.selected(service.path()).map(|e| e.source.as_str()),
        Some("unit")
    );
    let line = intercepted_chat(&daemon, &service, &hosts);
    assert_unit_and_account(&line, &unit);
}

#[test]
fn an_account_matched_by_cgroup_names_the_exchange() {
    let Some(e2e) = require_kernel() else { return };
    let other = CgroupGuard::new("account-other");
    let fx = AgentFixture::start_with(&e2e, "account-billing", |daemon, billing| {
        daemon
            .select(&other)
            .account(Account::cgroup("billing-agent", billing.path()))
    });
    let billing = &fx.agent;
    let billing_worker = billing.child("worker");

    let line = intercepted_chat(&fx.daemon, billing, &fx.hosts);
    assert_eq!(line.str("account"), Some("billing-agent"), "{line}");
    let line = intercepted_chat(&fx.daemon, &billing_worker, &fx.hosts);
    assert_eq!(
        line.str("account"),
        Some("billing-agent"),
        "a descendant of the account's cgroup belongs to it\n{line}"
    );
    // A selected cgroup outside the account's, and no unit to fall back on: no account.
    let line = intercepted_chat(&fx.daemon, &other, &fx.hosts);
    assert_eq!(line.str("account"), None, "{line}");
}

#[test]
fn an_account_matched_by_uid_names_the_exchange() {
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start_with(&e2e, "account-uid", |daemon, _| {
        daemon.account(Account::uid("root-jobs", 0))
    });

    let line = intercepted_chat(&fx.daemon, &fx.agent, &fx.hosts);
    assert_eq!(line.u64("uid"), Some(0), "{line}");
    assert_eq!(line.str("account"), Some("root-jobs"), "{line}");
}

/// A copy of the daemon's trust bundle that any user can read (the daemon's tempdir is 0700).
fn world_readable_copy(bundle: &Path) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("creating a tempdir for the trust bundle");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .expect("making the tempdir traversable");
    let copy = dir.path().join("trust-bundle.pem");
    fs::copy(bundle, &copy).expect("copying the trust bundle");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o644))
        .expect("making the trust bundle readable");
    (dir, copy)
}

#[test]
fn a_selected_process_running_as_nobody_is_attributed_to_nobody() {
    let Some(e2e) = require_kernel() else { return };
    // The root account comes first: a uid wrongly reported as 0 would be named by it.
    let fx = AgentFixture::start_with(&e2e, "nobody", |daemon, _| {
        daemon
            .account(Account::uid("root-jobs", 0))
            .account(Account::uid("nobody-jobs", 65534))
    });
    let (_bundle_dir, bundle) = world_readable_copy(&fx.daemon.trust_bundle());

    // setpriv execs curl, so the pid the wrapper reported is curl's.
    let as_nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]
    .map(str::to_owned);
    let out = Client::new(as_nobody.into_iter().chain(curl::chat()))
        .in_cgroup(&fx.agent)
        .hosts(&fx.hosts)
        .trust(&bundle)
        .run();
    assert_ok(&out);
    let line = exchange_from(&fx.daemon, &out, fx.agent.path());
    assert_eq!(line.str("exe"), which("curl").to_str(), "{line}");
    assert_eq!(line.u64("uid"), Some(NOBODY_UID), "{line}");
    assert_eq!(line.u64("gid"), Some(NOGROUP_GID), "{line}");
    assert_eq!(line.str("user"), Some("nobody"), "{line}");
    assert_eq!(line.str("account"), Some("nobody-jobs"), "{line}");
}
