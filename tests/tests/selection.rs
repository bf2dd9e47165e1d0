//! What is selected: descendants of a selected cgroup, a selected cgroup that is removed and
//! re-created (as systemd does on a unit restart), a path that appears after start — and never
//! Warden's own connections, even when Warden itself runs inside a selected cgroup.

use std::time::Duration;

use warden_tests::curl::{self, http_code};
use warden_tests::probe::{self, TcpReport, Then};
use warden_tests::{
    require_kernel, CgroupGuard, Client, Daemon, EchoOrigin, FakeUpstream, HostsFile, LogLine,
};

const RESELECT_TIMEOUT: Duration = Duration::from_secs(10);

/// curl from `cgroup`; returns Warden's exchange line for it.
fn intercepted_curl(daemon: &Daemon, cgroup: &CgroupGuard, hosts: &HostsFile) -> LogLine {
    let out = Client::new(curl::chat())
        .in_cgroup(cgroup)
        .hosts(hosts)
        .trust(&daemon.trust_bundle())
        .run();
    out.assert_success();
    assert_eq!(http_code(&out), 200, "{out}");
    let line = daemon.wait_for_exchange(out.pid());
    assert_eq!(line.str("cgroup"), Some(cgroup.path()), "{line}");
    line
}

#[test]
fn a_process_in_a_descendant_of_a_selected_cgroup_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let agent = CgroupGuard::new("parent");
    let child = agent.child("child");
    let grandchild = child.child("grandchild");
    let daemon = Daemon::builder(&e2e)
        .select(&agent)
        .upstream(&upstream)
        .start();

    intercepted_curl(&daemon, &child, &hosts);
    intercepted_curl(&daemon, &grandchild, &hosts);
}

#[test]
fn a_selected_cgroup_that_is_removed_and_recreated_is_intercepted_again() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let agent = CgroupGuard::new("restart");
    let daemon = Daemon::builder(&e2e)
        .select(&agent)
        .upstream(&upstream)
        .start();

    let before = daemon.status();
    let entry = before
        .selected(agent.path())
        .expect("the configured cgroup is selected");
    assert_eq!(entry.id, agent.id(), "status reports the cgroup id");
    assert_eq!(entry.source, "config");
    intercepted_curl(&daemon, &agent, &hosts);

    let new_id = agent.recreate();
    daemon.wait_for_status(
        "the re-created cgroup's new id",
        RESELECT_TIMEOUT,
        |status| status.selected(agent.path()).map(|s| s.id) == Some(new_id),
    );
    intercepted_curl(&daemon, &agent, &hosts);
}

#[test]
fn a_selected_path_created_after_start_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let later = format!("/warden-test-later-{}", std::process::id());
    let daemon = Daemon::builder(&e2e)
        .select_path(&later)
        .upstream(&upstream)
        .start();

    let agent = CgroupGuard::at(&later);
    let id = agent.id();
    daemon.wait_for_status(
        "the new cgroup to be selected",
        RESELECT_TIMEOUT,
        |status| status.selected(&later).map(|s| s.id) == Some(id),
    );
    intercepted_curl(&daemon, &agent, &hosts);
}

#[test]
fn wardens_own_connections_are_never_redirected() {
    let Some(e2e) = require_kernel() else { return };
    // Upstream and tunnel origin both listen on the intercepted port 443.
    let upstream = FakeUpstream::start();
    let origin = EchoOrigin::start_fresh(443);
    let hosts = HostsFile::new()
        .with("api.openai.com", upstream.ip())
        .with("tunnel.test", origin.ip());
    let agent = CgroupGuard::new("self");
    // Warden itself runs inside the selected cgroup.
    let daemon = Daemon::builder(&e2e)
        .select(&agent)
        .upstream(&upstream)
        .run_inside(&agent)
        .start();

    // Its upstream connection to 127.x.y.z:443 reached the upstream instead of looping back.
    intercepted_curl(&daemon, &agent, &hosts);
    assert_eq!(
        upstream.wait_for_requests(1, Duration::from_secs(5)).len(),
        1
    );

    // Its tunnel connection to the original destination, too.
    let payload = warden_tests::tls_hello::client_hello("tunnel.test");
    let out = Client::new(probe::tcp(
        "tunnel.test:443",
        &payload,
        Then::ReadEcho,
        10_000,
    ))
    .in_cgroup(&agent)
    .hosts(&hosts)
    .run();
    out.assert_success();
    let report: TcpReport = serde_json::from_value(out.json()).expect("probe report");
    assert_eq!(report.received(), payload, "{report:?}");
    assert_eq!(
        origin.wait_for_finished(1, Duration::from_secs(10))[0].bytes,
        payload
    );
}
