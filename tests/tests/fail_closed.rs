//! Fail closed: while the daemon is down (killed, OOM-killed, stopped, draining) a selected
//! process's connects are refused and nothing reaches the API; a restarted daemon re-adopts its
//! pinned programs, with one set attached; with `fail_mode = "open"` the programs go with the
//! daemon, but only after its drain.

use std::time::Duration;

use std::os::unix::process::ExitStatusExt;
use warden_tests::bpf::{attached_program_ids, prog_exists};
use warden_tests::cgroup::cgroup2_mount;

use warden_tests::curl::{self, assert_ok, intercepted_chat};
use warden_tests::memcg::MemoryCgroup;
use warden_tests::policy::deny_rule;
use warden_tests::{require_kernel, wait, AgentFixture, Client, ClientOutput, E2e, FakeUpstream};

const LINKS: [&str; 7] = [
    "warden_connect4",
    "warden_connect6",
    "warden_sendmsg4",
    "warden_sendmsg6",
    "warden_sock_create",
    "warden_sock_ops",
    "warden_sock_release",
];

/// How long the daemon gets to reach each step of a test.
const READY: Duration = Duration::from_secs(20);

/// What the OOM-tested daemon may allocate beyond what it uses when it is moved in.
const HEADROOM: u64 = 1 << 20;

/// curl's exit code for "Failed to connect to host".
const CURL_COULDNT_CONNECT: i32 = 7;

fn assert_refused(out: &ClientOutput) {
    assert_eq!(out.code(), Some(CURL_COULDNT_CONNECT), "{out}");
    assert!(out.stderr.contains("Failed to connect"), "{out}");
}

/// The agent's chat call trusting only the upstream's own CA: it succeeds only if nothing
/// redirects it to Warden any more.
fn direct_chat(fx: &AgentFixture) -> ClientOutput {
    Client::new(curl::chat())
        .in_cgroup(&fx.agent)
        .hosts(&fx.hosts)
        .trust(fx.upstream.ca_pem_path())
        .run()
}

#[test]
fn a_killed_daemon_leaves_agents_refused_and_a_restart_readopts_one_set_of_programs() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = AgentFixture::start(&e2e, "fail-closed-kill");
    intercepted_chat(&fx.daemon, &fx.agent, &fx.hosts);
    let before = fx.daemon.status();
    assert_eq!(before.attachment.fail_mode, "closed");
    assert!(before.attachment.pinned && !before.attachment.adopted);
    assert_eq!(fx.daemon.pins("links"), LINKS);
    let old_ids = before.program_ids();

    fx.daemon.kill9();

    // The pinned programs are still attached: the agent's connect goes to the closed listener.
    for id in &old_ids {
        assert!(prog_exists(*id), "program {id} was freed with the daemon");
    }
    let down = fx.client(curl::chat()).run();
    assert_refused(&down);
    assert_eq!(
        fx.upstream.requests().len(),
        1,
        "a call made while Warden was down reached the upstream"
    );

    fx.daemon.restart();
    let after = fx.daemon.status();
    assert!(after.attachment.adopted, "{after:?}");
    assert!(after.attachment.pinned);
    let new_ids = after.program_ids();
    // The pinned links now run the new programs; the old ones are freed, none is attached twice.
    wait::until(
        "the previous run's programs to be freed",
        Duration::from_secs(10),
        || old_ids.iter().all(|id| !prog_exists(*id)).then_some(()),
    );
    let attached = attached_program_ids(&cgroup2_mount().expect("cgroup2 mount"));
    for id in &new_ids {
        assert_eq!(
            attached.iter().filter(|a| *a == id).count(),
            1,
            "program {id} in {attached:?}"
        );
    }
    assert!(old_ids.iter().all(|id| !attached.contains(id)));
    assert_eq!(fx.daemon.pins("links"), LINKS);

    // The connection the agent could not open while Warden was down is opened now, and
    // inspected: there is no direct connection left over to escape it.
    intercepted_chat(&fx.daemon, &fx.agent, &fx.hosts);
    assert_eq!(fx.upstream.requests().len(), 2);
}

/// A stream held at the fake upstream's gate keeps the daemon draining after SIGTERM; a call
/// made meanwhile, by a client that trusts the upstream's own CA (it would succeed if it went
/// direct), must be refused. Returns the fixture, its daemon stopped and the stream finished, and
/// the daemon's program ids.
fn call_during_the_drain(e2e: &E2e, name: &str, fail_open: bool) -> (AgentFixture, Vec<u32>) {
    let upstream = FakeUpstream::builder().gate_after(1).start();
    let mut fx = AgentFixture::with_upstream_and(e2e, name, upstream, |daemon, _| {
        if fail_open {
            daemon.fail_open()
        } else {
            daemon
        }
    });
    let ids = fx.daemon.status().program_ids();
    let streaming = fx.client(curl::stream_chat()).spawn();
    wait::until("the stream to be held at the gate", READY, || {
        (fx.upstream.held_at_gate() == 1).then_some(())
    });

    fx.daemon.signal(libc::SIGTERM);
    fx.daemon.wait_for_log("the shutdown to begin", READY, |l| {
        l.is("shutting down: draining connections")
    });
    let during = direct_chat(&fx);
    // The gate is still closed, so the held exchange keeps the drain going: this was a call
    // made during it.
    assert_eq!(fx.upstream.held_at_gate(), 1);
    assert!(fx.daemon.is_running(), "the daemon left its drain early");
    assert_refused(&during);
    assert_eq!(
        fx.upstream.requests().len(),
        1,
        "a call made during the drain reached the upstream"
    );

    fx.upstream.open_gate();
    streaming.wait().assert_success();
    let exit = fx.daemon.stop(libc::SIGTERM);
    assert_eq!(exit.code(), Some(0), "{}", fx.daemon.log_text());
    (fx, ids)
}

#[test]
fn a_call_during_the_drain_and_after_a_stop_is_refused_until_the_pins_are_removed() {
    let Some(e2e) = require_kernel() else { return };
    let (fx, ids) = call_during_the_drain(&e2e, "fail-closed-drain", false);

    let after = fx.client(curl::chat()).run();
    assert_refused(&after);
    assert_eq!(
        fx.upstream.requests().len(),
        1,
        "nothing new reached the upstream"
    );

    // Removing the pins (what `warden uninstall` does) detaches the programs: the agent then
    // reaches the upstream directly and meets its own certificate.
    fx.daemon.remove_pins();
    wait::until(
        "the programs to be freed once unpinned",
        Duration::from_secs(10),
        || ids.iter().all(|id| !prog_exists(*id)).then_some(()),
    );
    assert_ok(&direct_chat(&fx));
}

#[test]
fn fail_open_still_refuses_a_call_during_the_drain_and_detaches_only_after_it() {
    let Some(e2e) = require_kernel() else { return };
    let (fx, ids) = call_during_the_drain(&e2e, "fail-open-drain", true);
    // The daemon is gone and took its programs with it: fail open lets the agent go direct.
    wait::until("the programs to be freed", Duration::from_secs(10), || {
        ids.iter().all(|id| !prog_exists(*id)).then_some(())
    });
    assert_ok(&direct_chat(&fx));
    assert_eq!(fx.upstream.requests().len(), 2);
}

#[test]
fn fail_open_programs_go_with_a_killed_daemon_and_leave_no_pins() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = AgentFixture::start_with(&e2e, "fail-open-kill", |daemon, _| daemon.fail_open());
    intercepted_chat(&fx.daemon, &fx.agent, &fx.hosts);
    let status = fx.daemon.status();
    assert_eq!(status.attachment.fail_mode, "open");
    assert!(!status.attachment.pinned);
    assert!(fx.daemon.pins("links").is_empty() && fx.daemon.pins("maps").is_empty());
    let ids = status.program_ids();

    fx.daemon.kill9();
    wait::until(
        "the programs to be freed with the daemon",
        Duration::from_secs(10),
        || ids.iter().all(|id| !prog_exists(*id)).then_some(()),
    );
    assert_ok(&direct_chat(&fx));
}

#[test]
fn a_fail_open_daemon_releases_the_pins_a_fail_closed_run_left() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = AgentFixture::start(&e2e, "fail-closed-then-open");
    let closed_ids = fx.daemon.status().program_ids();
    fx.daemon.kill9();
    fx.daemon.set_fail_open();
    fx.daemon.restart();
    let status = fx.daemon.status();
    assert!(
        status.attachment.adopted && !status.attachment.pinned,
        "{status:?}"
    );
    assert!(
        fx.daemon.pins("links").is_empty(),
        "{:?}",
        fx.daemon.pins("links")
    );
    intercepted_chat(&fx.daemon, &fx.agent, &fx.hosts);

    let ids = status.program_ids();
    fx.daemon.stop(libc::SIGTERM);
    wait::until("every program to be freed", Duration::from_secs(10), || {
        ids.iter()
            .chain(&closed_ids)
            .all(|id| !prog_exists(*id))
            .then_some(())
    });
}

/// A chat request whose prompt is `bytes` long: a body-reading rule makes Warden buffer it whole.
fn big_chat_file(dir: &std::path::Path, bytes: usize) -> std::path::PathBuf {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "a".repeat(bytes)}],
    });
    let path = dir.join("big-chat.json");
    std::fs::write(&path, body.to_string()).expect("writing the big chat body");
    path
}

#[test]
fn an_oom_killed_daemon_leaves_agents_refused() {
    let Some(e2e) = require_kernel() else { return };
    // A body-reading rule: the request below is buffered whole, which needs far more memory than
    // the daemon is allowed.
    let rule = deny_rule(
        "no-card-talk",
        "No card talk",
        r#"text_matches = ["credit card"]"#,
    );
    let mut fx = AgentFixture::start_with(&e2e, "fail-closed-oom", |daemon, _| {
        daemon.policy_file("oom.toml", &rule)
    });
    intercepted_chat(&fx.daemon, &fx.agent, &fx.hosts);
    let memcg = MemoryCgroup::new("oom-daemon");
    memcg.add(fx.daemon.warden_pid());
    memcg.limit(memcg.usage() + HEADROOM);

    let dir = tempfile::tempdir().expect("tempdir");
    let body = big_chat_file(dir.path(), 12 << 20);
    let mut big = curl::chat();
    let data = big
        .iter()
        .position(|a| a == "-d")
        .expect("curl::chat has -d")
        + 1;
    big[data] = format!("@{}", body.display());
    let cut = fx.client(big).run();
    assert!(!cut.status.success(), "{cut}");

    wait::until("the OOM killer to kill the daemon", READY, || {
        (!fx.daemon.is_running()).then_some(())
    });
    let exit = fx.daemon.stop(libc::SIGTERM);
    assert_eq!(exit.signal(), Some(libc::SIGKILL), "{exit:?}");
    assert_eq!(
        memcg.oom_kills(),
        1,
        "the kernel's OOM killer did not kill it"
    );

    let down = direct_chat(&fx);
    assert_refused(&down);
    assert_eq!(
        fx.upstream.requests().len(),
        1,
        "a call reached the upstream after the daemon was OOM-killed"
    );
}
