//! `warden status --json` reports the daemon, its programs, what is selected and counters; it fails
//! when no daemon is running.

use warden_tests::bpf::prog_exists;
use warden_tests::{require_kernel, CgroupGuard, Daemon};

#[test]
fn status_reports_the_running_daemon() {
    let Some(e2e) = require_kernel() else { return };
    let agent = CgroupGuard::new("status");
    let daemon = Daemon::builder(&e2e).select(&agent).start();

    let status = daemon.status();

    assert_eq!(status.pid, daemon.pid());
    assert_eq!(status.listen_port, daemon.listen_port());
    let names: Vec<&str> = status.programs.iter().map(|p| p.name.as_str()).collect();
    for expected in ["warden_connect4", "warden_connect6"] {
        assert!(names.contains(&expected), "{expected} missing in {names:?}");
    }
    for program in &status.programs {
        assert!(
            prog_exists(program.id),
            "{} (id {}) is loaded",
            program.name,
            program.id
        );
    }
    let selected = status
        .selected(agent.path())
        .expect("the configured cgroup is listed");
    assert_eq!(selected.id, agent.id());
    assert_eq!(selected.source, "config");
    assert!(status.counters.is_object(), "{:?}", status.counters);
    assert_eq!(status.attachment.fail_mode, "closed");
    assert!(status.attachment.pinned);

    // The text form says how Warden fails, for the engineer reading it.
    let text = daemon.cli("status", &[]);
    text.assert_success();
    assert!(
        text.stdout
            .contains("fail mode       closed: programs pinned"),
        "{text}"
    );
}

#[test]
fn status_fails_when_no_daemon_runs() {
    let Some(e2e) = require_kernel() else { return };
    let mut daemon = Daemon::builder(&e2e).start();
    daemon.stop(libc::SIGTERM);

    let out = daemon.cli("status", &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(out.stdout.trim().is_empty(), "no status is printed: {out}");
    // The stable part of the message: the daemon cannot be reached, at which admin socket.
    let socket = daemon.state_dir().join("admin.sock");
    assert!(
        out.stderr.contains("cannot reach the Warden daemon")
            && out.stderr.contains(&socket.display().to_string()),
        "the error says the daemon at {} cannot be reached: {out}",
        socket.display()
    );
}
