//! A selected process in another network namespace cannot reach Warden's loopback listener: its
//! connects to intercepted ports are refused (fail closed), counted and logged, never redirected.

use std::process::Command;
use std::time::Duration;

use warden_tests::probe::{self, TcpReport};
use warden_tests::{require_kernel, CgroupGuard, Client, Daemon};

/// A network namespace of the test's own (`ip netns add`), deleted on drop.
struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    fn new(tag: &str) -> Self {
        let name = format!("warden-test-{tag}-{}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "ip netns add {name} failed"
        );
        NetnsGuard { name }
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

#[test]
fn a_selected_process_in_another_network_namespace_is_refused_not_redirected() {
    let Some(e2e) = require_kernel() else { return };
    let agent = CgroupGuard::new("netns");
    let daemon = Daemon::builder(&e2e)
        .select(&agent)
        .log_filter("info,warden_ebpf=warn")
        .start();
    let netns = NetnsGuard::new("refused");

    // From the host namespace the same cgroup is redirected to Warden (which then closes the
    // connection: nothing listens at the original destination).
    let at_home: TcpReport = probe::report(
        &Client::new(probe::connect("127.0.0.1:443"))
            .in_cgroup(&agent)
            .run(),
    );
    assert!(at_home.connected, "{at_home:?}");

    let mut in_netns = vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        netns.name.clone().into(),
    ];
    in_netns.extend(probe::connect("127.0.0.1:443"));
    let refused: TcpReport = probe::report(&Client::new(in_netns).in_cgroup(&agent).run());
    assert!(!refused.connected, "{refused:?}");
    assert_eq!(refused.connect_errno, Some(libc::EPERM), "{refused:?}");

    let expected = format!(
        "refused connect of tgid {} to port 443: selected, but in another network namespace",
        refused.pid
    );
    let line = daemon.wait_for_log("the kernel's netns refusal", Duration::from_secs(10), |l| {
        l.message() == expected
    });
    assert_eq!(line.level(), "WARN", "{line:?}");
    let counters = daemon.status().counters;
    assert_eq!(counters["netns_refused"], 1, "{counters}");
}
