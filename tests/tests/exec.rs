//! `warden exec -- CMD`: CMD runs in a fresh cgroup that the daemon selects, so it is intercepted;
//! its exit code is forwarded; the cgroup is removed afterwards.

use std::time::Duration;

use warden_tests::attribution::assert_attributed;
use warden_tests::cgroup::cgroup2_mount;
use warden_tests::curl::{self, assert_chat_reply, which};
use warden_tests::{require_kernel, Client, Daemon, FakeUpstream, HostsFile, Status};

#[test]
fn a_command_run_by_warden_exec_is_intercepted_in_a_fresh_cgroup_that_is_removed_afterwards() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    // Nothing is selected in the config: only exec selects.
    let daemon = Daemon::builder(&e2e).upstream(&upstream).start();

    let out = Client::new(curl::chat())
        .launched_by(daemon.exec_launcher())
        .hosts(&hosts)
        .trust(&daemon.trust_bundle())
        .run();

    assert_chat_reply(&out, upstream.reply());

    let exec_cgroup = out.cgroup().to_owned();
    assert_ne!(exec_cgroup, "/", "the command ran in a cgroup of its own");
    let line = daemon.wait_for_exchange(out.pid());
    assert_attributed(&line, out.pid(), &which("curl"), &exec_cgroup);

    let mount = cgroup2_mount().expect("cgroup2 mount");
    let dir = mount.join(exec_cgroup.trim_start_matches('/'));
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn the_exec_cgroup_is_selected_with_source_exec_while_the_command_runs() {
    let Some(e2e) = require_kernel() else { return };
    let daemon = Daemon::builder(&e2e).start();

    // The command asks the daemon for its status from inside the exec cgroup.
    let warden_bin = e2e.warden_bin.display().to_string();
    let config = daemon.config_path().display().to_string();
    let out = Client::new([warden_bin.as_str(), "status", "--config", &config, "--json"])
        .launched_by(daemon.exec_launcher())
        .run();

    out.assert_success();
    let status: Status = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("status JSON ({e})\n{out}"));
    let entry = status
        .selected(out.cgroup())
        .unwrap_or_else(|| panic!("{} is not selected: {status:?}", out.cgroup()));
    assert_eq!(entry.source, "exec");

    // Once the command is gone, so is the selection.
    daemon.wait_for_status(
        "the exec cgroup to leave the selection",
        Duration::from_secs(5),
        |status| status.selected(out.cgroup()).is_none(),
    );
}

#[test]
fn warden_exec_forwards_the_exit_code() {
    let Some(e2e) = require_kernel() else { return };
    let daemon = Daemon::builder(&e2e).start();

    for code in [0, 1, 7, 42] {
        let out = Client::new(["sh", "-c", &format!("exit {code}")])
            .launched_by(daemon.exec_launcher())
            .run();
        assert_eq!(out.code(), Some(code), "{out}");
    }
}
