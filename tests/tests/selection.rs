//! What is selected: descendants of a selected cgroup, a selected cgroup that is removed and
//! re-created (as systemd does on a unit restart), a path that appears after start — and never
//! Warden's own connections, even when Warden itself runs inside a selected cgroup.

use std::time::Duration;

use warden_tests::curl::intercepted_chat;
use warden_tests::probe::{self, TcpReport, Then};
use warden_tests::{
    require_kernel, AgentFixture, CgroupGuard, Client, Daemon, EchoOrigin, FakeUpstream, HostsFile,
};

const RESELECT_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn a_process_in_a_descendant_of_a_selected_cgroup_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start(&e2e, "parent");
    let child = fx.agent.child("child");
    let grandchild = child.child("grandchild");

    intercepted_chat(&fx.daemon, &child, &fx.hosts);
    intercepted_chat(&fx.daemon, &grandchild, &fx.hosts);
}

#[test]
fn a_selected_cgroup_that_is_removed_and_recreated_is_intercepted_again() {
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start(&e2e, "restart");

    let before = fx.daemon.status();
    let entry = before
        .selected(fx.agent.path())
        .expect("the configured cgroup is selected");
    assert_eq!(entry.id, fx.agent.id(), "status reports the cgroup id");
    assert_eq!(entry.source, "config");
    intercepted_chat(&fx.daemon, &fx.agent, &fx.hosts);

    let new_id = fx.agent.recreate();
    fx.daemon.wait_for_status(
        "the re-created cgroup's new id",
        RESELECT_TIMEOUT,
        |status| status.selected(fx.agent.path()).map(|s| s.id) == Some(new_id),
    );
    intercepted_chat(&fx.daemon, &fx.agent, &fx.hosts);
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
    intercepted_chat(&daemon, &agent, &hosts);
}

#[test]
fn wardens_own_connections_are_never_redirected() {
    let Some(e2e) = require_kernel() else { return };
    // Upstream and tunnel origin both listen on the intercepted port 443.
    let origin = EchoOrigin::start_fresh(443);
    let to_origin = HostsFile::new().with("tunnel.test", origin.ip());
    // Warden itself runs inside the selected cgroup.
    let fx = AgentFixture::start_with(&e2e, "self", |daemon, agent| daemon.run_inside(agent));

    // Its upstream connection to 127.x.y.z:443 reached the upstream instead of looping back.
    intercepted_chat(&fx.daemon, &fx.agent, &fx.hosts);
    assert_eq!(
        fx.upstream
            .wait_for_requests(1, Duration::from_secs(5))
            .len(),
        1
    );

    // Its tunnel connection to the original destination, too.
    let payload = warden_tests::tls_hello::client_hello("tunnel.test");
    let report: TcpReport = probe::report(
        &Client::new(probe::tcp(
            "tunnel.test:443",
            &payload,
            Then::ReadEcho,
            10_000,
        ))
        .in_cgroup(&fx.agent)
        .hosts(&to_origin)
        .run(),
    );
    assert_eq!(report.received(), payload, "{report:?}");
    assert_eq!(
        origin.wait_for_finished(1, Duration::from_secs(10))[0].bytes,
        payload
    );
}
