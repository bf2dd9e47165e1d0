//! A process outside the selected cgroups is left alone: it reaches its destination directly and
//! sees the destination's own certificate; Warden logs nothing for it.

use std::time::Duration;

use warden_tests::curl::{self, assert_chat_reply, intercepted_chat};
use warden_tests::{require_kernel, AgentFixture, CgroupGuard, Client};

#[test]
fn a_process_outside_the_selected_cgroups_is_not_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    // The upstream listens on api.openai.com's (loopback) address itself, port 443, with the test CA.
    let bystander = CgroupGuard::new("bystander");
    let fx = AgentFixture::start(&e2e, "selected");
    let upstream = &fx.upstream;

    // Trusting only the upstream's test CA works: the certificate is the upstream's own.
    let direct = Client::new(curl::chat())
        .in_cgroup(&bystander)
        .hosts(&fx.hosts)
        .trust(upstream.ca_pem_path())
        .run();
    assert_chat_reply(&direct, upstream.reply());

    // Trusting system CAs plus Warden's CA fails: Warden is not in the path.
    let via_warden_trust = Client::new(curl::chat())
        .in_cgroup(&bystander)
        .hosts(&fx.hosts)
        .trust(&fx.daemon.trust_bundle())
        .run();
    assert_eq!(via_warden_trust.code(), Some(60), "{via_warden_trust}");

    // The test process itself (in neither cgroup) is not intercepted either.
    let from_here = Client::new(curl::chat())
        .hosts(&fx.hosts)
        .trust(upstream.ca_pem_path())
        .run();
    from_here.assert_success();

    // A selected process, for comparison, is; once its line is there, the others would be too.
    intercepted_chat(&fx.daemon, &fx.agent, &fx.hosts);

    let logs = fx.daemon.logs();
    for pid in [direct.pid(), via_warden_trust.pid(), from_here.pid()] {
        assert!(
            logs.find(|l| l.pid() == Some(pid)).is_none(),
            "Warden logged something for unselected pid {pid}:\n{logs}"
        );
    }
    assert_eq!(logs.exchanges().len(), 1, "{logs}");
    assert_eq!(
        upstream.wait_for_requests(3, Duration::from_secs(5)).len(),
        3
    );
}
