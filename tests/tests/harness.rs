//! The test harness itself, without Warden: real clients reach the fake upstream through the private
//! hosts file, trusting only the test CA; guards clean up. If these fail, the e2e results mean nothing.

use std::time::Duration;

use serde_json::json;
use warden_tests::probe::{self, TcpReport, Then, UdpReport};
use warden_tests::{
    cgroup, require_python, require_root, sdk_scripts, CgroupGuard, Client, EchoOrigin,
    FakeUpstream, HostsFile,
};

const CHAT_BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;

#[test]
fn curl_reaches_the_fake_upstream_through_the_private_hosts_file() {
    if !require_root() {
        return;
    }
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let cgroup = CgroupGuard::new("harness-curl");

    let out = Client::new([
        "curl",
        "-sS",
        "https://api.openai.com/v1/chat/completions",
        "-H",
        "Authorization: Bearer sk-test",
        "-H",
        "content-type: application/json",
        "-d",
        CHAT_BODY,
    ])
    .in_cgroup(&cgroup)
    .hosts(&hosts)
    .trust(upstream.ca_pem_path())
    .run();

    out.assert_success();
    assert_eq!(
        out.json()["choices"][0]["message"]["content"],
        upstream.reply()
    );
    assert_eq!(
        out.cgroup(),
        cgroup.path(),
        "the client ran in the test cgroup"
    );
    let seen = upstream.wait_for_requests(1, Duration::from_secs(5));
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(seen[0].json()["model"], "gpt-4o-mini");
}

#[test]
fn curl_does_not_trust_the_test_ca_unless_told_to() {
    if !require_root() {
        return;
    }
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let out = Client::new(["curl", "-sS", "https://api.openai.com/v1/models"])
        .hosts(&hosts)
        .trust("/etc/ssl/certs/ca-certificates.crt".as_ref())
        .run();
    assert_eq!(
        out.code(),
        Some(60),
        "curl must fail certificate verification\n{out}"
    );
}

#[test]
fn the_hosts_file_only_exists_inside_the_client_namespace() {
    if !require_root() {
        return;
    }
    let hosts = HostsFile::new().with("only-inside.test", std::net::Ipv4Addr::new(127, 42, 0, 7));
    let inside = Client::new(["getent", "hosts", "only-inside.test"])
        .hosts(&hosts)
        .run();
    inside.assert_success();
    assert!(inside.stdout.starts_with("127.42.0.7"), "{inside}");
    let outside = Client::new(["getent", "hosts", "only-inside.test"]).run();
    assert_eq!(
        outside.code(),
        Some(2),
        "the machine's /etc/hosts is untouched\n{outside}"
    );
}

#[test]
fn the_python_sdk_scripts_work_against_the_fake_upstream() {
    if !require_root() {
        return;
    }
    let Some(python) = require_python() else {
        return;
    };
    let upstream = FakeUpstream::builder().gate_after(1).start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let client = |script: &str| {
        Client::new([python.as_os_str(), "-c".as_ref(), script.as_ref()])
            .hosts(&hosts)
            .trust(upstream.ca_pem_path())
    };
    let run = |script: &str| {
        let out = client(script).run();
        out.assert_success();
        out.json()
    };

    let chat = run(sdk_scripts::CHAT);
    assert_eq!(chat["content"], upstream.reply());
    assert_eq!(chat["model"], "gpt-4o-mini");

    // The script reports the first event while the upstream holds the rest: the e2e streaming
    // check can tell a forwarded stream from a buffered one.
    let stream = upstream
        .assert_first_line_before_gate(client(sdk_scripts::CHAT_STREAM).spawn(), |l| {
            l == sdk_scripts::FIRST_EVENT_LINE
        });
    stream.assert_success();
    let stream = stream.last_line_json();
    assert_eq!(stream["pieces"].as_array().unwrap().len(), 10);
    assert_eq!(stream["models"], json!(["gpt-4o"]));
    assert!(stream["total_tokens"].as_u64().unwrap() > 0);

    // The gate stays open now.
    let responses = client(sdk_scripts::RESPONSES_STREAM).run();
    responses.assert_success();
    let responses = responses.last_line_json();
    assert_eq!(responses["completed"]["output_text"], upstream.reply());
    assert_eq!(responses["types"][0], "response.created");

    let models = run(sdk_scripts::MODELS);
    assert_eq!(models["ids"][0], "gpt-4o-mini");
}

#[test]
fn the_probe_echoes_through_a_plain_origin_and_udp_works_unselected() {
    if !require_root() {
        return;
    }
    let origin = EchoOrigin::start_fresh(443);
    let payload = b"hello\nworld".to_vec();
    let out = Client::new(probe::tcp(
        &origin.addr().to_string(),
        &payload,
        Then::ReadEcho,
        5000,
    ))
    .run();
    out.assert_success();
    let report: TcpReport = serde_json::from_value(out.json()).unwrap();
    assert_eq!(report.received(), payload);
    assert_eq!(report.end, "echo-complete");
    assert_eq!(report.pid, out.pid());
    assert_eq!(
        origin.wait_for_finished(1, Duration::from_secs(5))[0].bytes,
        payload
    );

    let udp = Client::new(probe::udp("127.0.0.1:443")).run();
    let report: UdpReport = serde_json::from_value(udp.json()).unwrap();
    assert_eq!(
        (report.sendto_errno, report.connect_errno, report.send_errno),
        (0, 0, 0)
    );
}

#[test]
fn a_cgroup_guard_kills_what_runs_inside_and_removes_itself() {
    if !require_root() {
        return;
    }
    let cgroup = CgroupGuard::new("harness-guard");
    let child = cgroup.child("inner");
    let sleeper = Client::new(["sleep", "1000"]).in_cgroup(&child).spawn();
    let pid = sleeper.wait_for_pid();
    assert_eq!(cgroup::cgroup_of(pid).as_deref(), Some(child.path()));
    let dir = cgroup.dir().to_path_buf();
    drop(child);
    drop(cgroup);
    assert!(!dir.exists(), "the cgroup directory is gone");
    assert_eq!(
        sleeper.wait().status.code(),
        None,
        "the process was killed by a signal"
    );
}

#[test]
fn recreating_a_cgroup_gives_it_a_new_id() {
    if !require_root() {
        return;
    }
    let cgroup = CgroupGuard::new("harness-recreate");
    let old = cgroup.id();
    let new = cgroup.recreate();
    assert_ne!(old, new);
    assert!(cgroup.exists());
}
