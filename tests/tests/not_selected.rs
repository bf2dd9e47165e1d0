//! A process outside the selected cgroups is left alone: it reaches its destination directly and
//! sees the destination's own certificate; Warden logs nothing for it.

use std::time::Duration;

use warden_tests::curl::{self, http_code};
use warden_tests::{require_kernel, CgroupGuard, Client, Daemon, FakeUpstream, HostsFile};

#[test]
fn a_process_outside_the_selected_cgroups_is_not_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    // The upstream listens on api.openai.com's (loopback) address itself, port 443, with the test CA.
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let agent = CgroupGuard::new("selected");
    let bystander = CgroupGuard::new("bystander");
    let daemon = Daemon::builder(&e2e)
        .select(&agent)
        .upstream(&upstream)
        .start();

    // Trusting only the upstream's test CA works: the certificate is the upstream's own.
    let direct = Client::new(curl::chat())
        .in_cgroup(&bystander)
        .hosts(&hosts)
        .trust(upstream.ca_pem_path())
        .run();
    direct.assert_success();
    assert_eq!(http_code(&direct), 200, "{direct}");
    assert_eq!(
        direct.json()["choices"][0]["message"]["content"],
        upstream.reply()
    );

    // Trusting system CAs plus Warden's CA fails: Warden is not in the path.
    let via_warden_trust = Client::new(curl::chat())
        .in_cgroup(&bystander)
        .hosts(&hosts)
        .trust(&daemon.trust_bundle())
        .run();
    assert_eq!(via_warden_trust.code(), Some(60), "{via_warden_trust}");

    // The test process itself (in neither cgroup) is not intercepted either.
    let from_here = Client::new(curl::chat())
        .hosts(&hosts)
        .trust(upstream.ca_pem_path())
        .run();
    from_here.assert_success();

    // A selected process, for comparison, is; once its line is there, the others would be too.
    let selected = Client::new(curl::chat())
        .in_cgroup(&agent)
        .hosts(&hosts)
        .trust(&daemon.trust_bundle())
        .run();
    selected.assert_success();
    daemon.wait_for_exchange(selected.pid());

    let logs = daemon.logs();
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
