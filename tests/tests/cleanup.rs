//! Shutting down: SIGTERM and SIGINT exit 0; with `fail_mode = "open"` after detaching the eBPF
//! programs (their ids are gone and selected processes are no longer redirected; fail-closed stops
//! are in fail_closed.rs), in-flight streams are drained, and no process or cgroup is left behind.

use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use warden_tests::bpf::prog_exists;
use warden_tests::cgroup::cgroup2_mount;
use warden_tests::curl::{self, assert_ok, intercepted_chat};
use warden_tests::fake_upstream::openai::chat_completion_events;
use warden_tests::{require_kernel, wait, AgentFixture, Client};

fn stop_leaves_nothing_behind(signal: libc::c_int) {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = AgentFixture::start_with(&e2e, "cleanup", |daemon, _| daemon.fail_open());
    let daemon = &mut fx.daemon;

    // Use it: an intercepted request and a `warden exec`.
    intercepted_chat(daemon, &fx.agent, &fx.hosts);
    let exec = Client::new(["true"])
        .launched_by(daemon.exec_launcher())
        .run();
    exec.assert_success();
    let exec_cgroup = exec.cgroup().to_owned();

    let status = daemon.status();
    assert_eq!(status.pid, daemon.pid());
    let programs = status.program_ids();
    assert!(
        !programs.is_empty(),
        "status lists the attached programs: {status:?}"
    );
    for id in &programs {
        assert!(prog_exists(*id), "program {id} is loaded while running");
    }

    let exit = daemon.stop(signal);
    assert_eq!(
        exit.code(),
        Some(0),
        "graceful shutdown exits 0\n{}",
        daemon.log_text()
    );

    // The programs are gone (the kernel frees them once the last link and fd are closed).
    wait::until(
        "the daemon's BPF programs to be freed",
        Duration::from_secs(10),
        || programs.iter().all(|id| !prog_exists(*id)).then_some(()),
    );
    // No process is left in the daemon's cgroup, no exec cgroup in cgroupfs, no listener.
    assert!(
        daemon.cgroup().pids().is_empty(),
        "{:?}",
        daemon.cgroup().pids()
    );
    let mount = cgroup2_mount().expect("cgroup2 mount");
    assert!(
        !mount.join(exec_cgroup.trim_start_matches('/')).exists(),
        "{exec_cgroup} left behind"
    );
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, daemon.listen_port())).is_err());

    // And the selected cgroup is no longer redirected: curl now meets the upstream's own cert.
    let after = Client::new(curl::chat())
        .in_cgroup(&fx.agent)
        .hosts(&fx.hosts)
        .trust(fx.upstream.ca_pem_path())
        .run();
    assert_ok(&after);
}

#[test]
fn sigterm_detaches_everything_and_leaves_nothing_behind() {
    stop_leaves_nothing_behind(libc::SIGTERM);
}

#[test]
fn sigint_detaches_everything_and_leaves_nothing_behind() {
    stop_leaves_nothing_behind(libc::SIGINT);
}

#[test]
fn shutdown_drains_a_stream_in_flight() {
    let Some(e2e) = require_kernel() else { return };
    // About 2.5 s of stream: long enough to stop the daemon in the middle of it.
    let mut fx = AgentFixture::with_chunk_delay(&e2e, "drain", Duration::from_millis(200));

    let streaming = fx.client(curl::stream_chat()).spawn();
    fx.upstream.wait_for_requests(1, Duration::from_secs(10));

    let exit = fx.daemon.stop(libc::SIGTERM);
    let out = streaming.wait();

    assert_eq!(exit.code(), Some(0), "{}", fx.daemon.log_text());
    out.assert_success();
    let expected = chat_completion_events("gpt-4o-mini", fx.upstream.reply(), false).concat();
    assert_eq!(out.stdout, expected, "the stream was cut short");
    let line = fx.daemon.wait_for_exchange(out.pid());
    assert_eq!(line.bool("streamed"), Some(true), "{line}");
}
