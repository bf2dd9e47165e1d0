//! Warden in a pid namespace of its own (a container without host PID): it never redirects its own
//! connections, identifies the agents that share its namespace by their pid there, and still
//! intercepts (fail closed) selected processes it cannot see.

use std::time::Duration;

use warden_tests::curl::{self, assert_ok, which};
use warden_tests::{require_kernel, AgentFixture, Client};

#[test]
fn warden_in_its_own_pid_namespace_attributes_agents_by_their_pid_there() {
    let Some(e2e) = require_kernel() else { return };
    // Warden runs inside the selected cgroup, and the upstream listens on the intercepted port
    // 443: only the pid check keeps its own upstream connection from looping back to itself.
    let fx = AgentFixture::start_with(&e2e, "pidns", |daemon, agent| {
        daemon.in_own_pid_namespace().run_inside(agent)
    });
    assert_eq!(
        fx.daemon.status().pid,
        1,
        "warden is PID 1 of its namespace"
    );
    fx.daemon
        .wait_for_log("the pid namespace notice", Duration::from_secs(5), |l| {
            l.message()
                .starts_with("running in a pid namespace of its own")
        });

    // An agent inside Warden's namespace: attributed by the pid it has there.
    let warden_pid = fx.daemon.warden_pid().to_string();
    let inside = fx
        .client(curl::chat())
        .launched_by(["nsenter", "--target", &warden_pid, "--pid", "--"])
        .run();
    assert_ok(&inside);
    assert_eq!(
        fx.upstream
            .wait_for_requests(1, Duration::from_secs(5))
            .len(),
        1
    );
    let line = fx.daemon.wait_for_exchange(inside.pid());
    assert_eq!(
        line.str("exe"),
        Some(which("curl").to_str().unwrap()),
        "{line}"
    );
    assert_eq!(line.bool("process_exited"), Some(false), "{line}");

    // An agent outside it (in the host's namespace) is still intercepted and recorded, by what
    // the kernel captured (uid, cgroup, command name): its pid means nothing to Warden.
    let outside = fx.client(curl::chat()).run();
    assert_ok(&outside);
    assert_eq!(
        fx.upstream
            .wait_for_requests(2, Duration::from_secs(5))
            .len(),
        2
    );
    let line = fx.daemon.wait_for_log(
        "the outside agent's exchange",
        Duration::from_secs(10),
        |l| l.is("exchange") && l.pid() == Some(0),
    );
    assert_eq!(line.str("comm"), Some("curl"), "{line}");
    assert_eq!(line.str("cgroup"), Some(fx.agent.path()), "{line}");
}

#[test]
fn the_pid_namespace_client_reports_its_namespace_pid() {
    // Guards the test above: nsenter --pid really puts the client in the target's namespace
    // (its announced pid is small and differs from the host pid).
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start_with(&e2e, "pidns-probe", |daemon, _| {
        daemon.in_own_pid_namespace()
    });
    let warden_pid = fx.daemon.warden_pid().to_string();
    let out = Client::new(["sh", "-c", "readlink /proc/self/ns/pid"])
        .launched_by(["nsenter", "--target", &warden_pid, "--pid", "--"])
        .run();
    out.assert_success();
    let theirs = std::fs::read_link(format!("/proc/{warden_pid}/ns/pid")).unwrap();
    assert_eq!(out.stdout.trim(), theirs.to_string_lossy(), "{out}");
}
