//! Prometheus metrics, end to end: a daemon serving `/metrics` on a loopback port sees curl make an
//! allowed call, the official Python SDK make a call a deny rule refuses and one whose prompt a mask
//! rule masks (and the upstream's reply carries an email that the same rule masks in both allowed
//! responses); one scrape then holds exactly those exchanges, tokens, decisions and masked values,
//! labelled by account (never by pid or prompt), and `promtool check metrics` accepts all of it.
//! A metrics address that is taken stops the daemon at start, naming the address and the key.

use std::time::Duration;

use warden_tests::daemon::Account;
use warden_tests::policy::{chat_request, deny_rule, mask_rule, PolicyAgent};
use warden_tests::prometheus::Exposition;
use warden_tests::{net, require_kernel, require_promtool, wait, Client, FakeUpstream};

const ACCOUNT: &str = "metrics-agent";
const ALLOWED_MODEL: &str = "gpt-4o-mini";
const DENIED_MODEL: &str = "gpt-4.1";
const DENY_RULE: &str = "no-gpt-4-1";
const DENY_MESSAGE: &str = "gpt-4.1 may not be used from this host";
const MASK_RULE: &str = "mask-email";
const EMAIL: &str = "alice@example.com";
const REPLY: &str = "Done, I wrote to carol@example.org for you.";
const MASKED_REPLY: &str = "Done, I wrote to [EMAIL] for you.";
/// How long the counters may take to show what the clients saw end.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

const ENDPOINT: (&str, &str) = ("endpoint", "chat.completions");

#[test]
fn a_metrics_scrape_shows_the_exchanges_tokens_decisions_and_masks_and_promtool_accepts_it() {
    let Some(promtool) = require_promtool() else {
        return;
    };
    let upstream = FakeUpstream::builder().reply(REPLY).start();
    let Some(agent) = PolicyAgent::with_upstream("metrics", upstream, |daemon, agent| {
        daemon
            .metrics()
            .account(Account::cgroup(ACCOUNT, agent.path()))
            .policy_file(
                "deny.toml",
                &deny_rule(
                    DENY_RULE,
                    DENY_MESSAGE,
                    &format!("model_in = [{DENIED_MODEL:?}]"),
                ),
            )
            .policy_file("mask.toml", &mask_rule(MASK_RULE, "both", &["email"]))
    }) else {
        return;
    };
    let url = agent.fx.daemon.metrics_url();

    // Allowed, by curl: its body carries the usage the fake upstream reported.
    let (status, out) = agent.curl_chat(ALLOWED_MODEL);
    assert_eq!(status, 200, "{out}");
    let body = out.json();
    assert_eq!(
        body["choices"][0]["message"]["content"], MASKED_REPLY,
        "{body}"
    );
    let usage = body["usage"].clone();
    let prompt_tokens = usage["prompt_tokens"]
        .as_f64()
        .expect("usage.prompt_tokens");
    let completion_tokens = usage["completion_tokens"]
        .as_f64()
        .expect("usage.completion_tokens");
    assert!(prompt_tokens > 0.0 && completion_tokens > 0.0, "{usage}");

    // Denied, by the SDK.
    let denied = agent.chat(&chat_request(DENIED_MODEL, "Say hello"));
    denied.assert_denied_by(DENY_RULE, DENY_MESSAGE);

    // Allowed with its email masked, by the SDK: the same reply, so the same usage.
    let masked = agent.chat(&chat_request(
        ALLOWED_MODEL,
        &format!("Write to {EMAIL} today"),
    ));
    assert_eq!(masked.assert_allowed(), MASKED_REPLY);
    assert_eq!(agent.fx.upstream.requests().len(), 2);

    let account = ("account", ACCOUNT);
    let ok = [
        account,
        ("model", ALLOWED_MODEL),
        ENDPOINT,
        ("outcome", "ok"),
    ];
    let refused = [
        account,
        ("model", DENIED_MODEL),
        ENDPOINT,
        ("outcome", "denied"),
    ];
    let scrape = wait::within(SETTLE_TIMEOUT, || {
        let scrape = Exposition::scrape(&url);
        let settled = scrape.value("warden_exchanges_total", &ok) == Some(2.0)
            && scrape.value("warden_exchanges_total", &refused) == Some(1.0)
            && scrape.value("warden_audit_queue_depth", &[]) == Some(0.0);
        settled.then_some(scrape)
    })
    .unwrap_or_else(|| {
        panic!(
            "the exchanges did not show as 2 ok and 1 denied:\n{}",
            Exposition::scrape(&url).text()
        )
    });

    assert_eq!(
        scrape.series("warden_exchanges_total").len(),
        2,
        "no other exchange series:\n{}",
        scrape.text()
    );
    // Connections: one per client process, each intercepted.
    for (kind, count) in [("intercepted", 3.0), ("tunneled", 0.0), ("rejected", 0.0)] {
        assert_eq!(
            scrape.expect("warden_connections_total", &[("kind", kind)]),
            count,
            "{kind}"
        );
    }
    // Tokens: the two allowed calls' usage; the denied one never reached the upstream.
    let tokens = |kind| [account, ("model", ALLOWED_MODEL), ("kind", kind)];
    assert_eq!(
        scrape.expect("warden_tokens_total", &tokens("input")),
        2.0 * prompt_tokens
    );
    assert_eq!(
        scrape.expect("warden_tokens_total", &tokens("output")),
        2.0 * completion_tokens
    );
    assert_eq!(scrape.series("warden_tokens_total").len(), 2);
    // Both histograms saw all three exchanges (a refusal's first byte is Warden's own answer).
    for histogram in [
        "warden_request_duration_seconds",
        "warden_time_to_first_byte_seconds",
    ] {
        assert_eq!(
            scrape.expect(&format!("{histogram}_count"), &[ENDPOINT]),
            3.0,
            "{histogram}"
        );
        assert_eq!(
            scrape.expect(&format!("{histogram}_bucket"), &[ENDPOINT, ("le", "+Inf")]),
            3.0,
            "{histogram}"
        );
    }
    // Policy: the verdicts, and the mask rule that applied to every request.
    let decision = |rule, action| [("rule", rule), ("action", action)];
    assert_eq!(
        scrape.expect(
            "warden_policy_decisions_total",
            &decision(DENY_RULE, "deny")
        ),
        1.0
    );
    assert_eq!(
        scrape.expect("warden_policy_decisions_total", &decision("", "allow")),
        2.0
    );
    assert_eq!(
        scrape.expect(
            "warden_policy_decisions_total",
            &decision(MASK_RULE, "mask")
        ),
        3.0
    );
    assert_eq!(scrape.series("warden_policy_decisions_total").len(), 3);
    // Masking: the one email in a prompt, and the one in each allowed reply.
    let masked_in = |direction| [("recognizer", "EMAIL"), ("direction", direction)];
    assert_eq!(
        scrape.expect("warden_masked_values_total", &masked_in("request")),
        1.0
    );
    assert_eq!(
        scrape.expect("warden_masked_values_total", &masked_in("response")),
        2.0
    );
    assert_eq!(scrape.series("warden_masked_values_total").len(), 2);
    // The audit store committed the connection, request and response records.
    assert!(scrape.expect("warden_audit_commit_seconds_count", &[]) >= 1.0);
    // The kernel side, read at scrape time.
    assert_eq!(scrape.expect("warden_selected_cgroups", &[]), 1.0);
    assert!(
        scrape.expect("warden_ebpf_redirects_total", &[]) >= 3.0,
        "each client's connect was redirected:\n{}",
        scrape.text()
    );
    let version = warden_version();
    assert_eq!(
        scrape.expect("warden_build_info", &[("version", &version)]),
        1.0
    );

    // Nothing that identifies a process or carries what it sent is a label.
    let pids = [denied.pid().to_string(), masked.pid().to_string()];
    for sample in scrape.samples() {
        for value in sample.labels.values() {
            assert!(
                !pids.contains(value) && !value.contains(EMAIL) && !value.contains("sk-test"),
                "label value {value:?} in {sample:?}"
            );
        }
    }
    assert!(!scrape.text().contains(EMAIL) && !scrape.text().contains("carol@"));

    scrape.assert_valid(&promtool);

    // Only /metrics is served.
    let other = Client::new([
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
        &url.replace("/metrics", "/"),
    ])
    .run();
    other.assert_success();
    assert_eq!(other.stdout.trim(), "404", "{other}");
}

/// The version `warden --version` reports (`warden 0.1.0`).
fn warden_version() -> String {
    let bin = std::env::var("WARDEN_BIN").expect("WARDEN_BIN is set for end-to-end tests");
    let out = Client::new([bin.as_str(), "--version"]).run();
    out.assert_success();
    out.stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected --version output\n{out}"))
        .to_owned()
}

#[test]
fn a_taken_metrics_address_stops_the_daemon_at_start_naming_it_and_the_key() {
    let Some(e2e) = require_kernel() else {
        return;
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let address = taken.local_addr().expect("local_addr of a bound listener");
    let dir = tempfile::tempdir().expect("a tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("creating the policy directory");
    let config = dir.path().join("warden.toml");
    let text = format!(
        "state_dir = {state:?}\n[proxy]\nresolve_intercepted_hosts = false\nlisten_port = {port}\n# Never pins into the host's /sys/fs/bpf, whatever the start-up order.\nfail_mode = \"open\"\n[policy]\ndir = {policies:?}\n[metrics]\nlisten = \"{address}\"\n",
        state = dir.path().join("state"),
        port = net::free_dual_stack_port(),
    );
    std::fs::write(&config, text).expect("writing the config");

    let out = Client::new([
        e2e.warden_bin.as_os_str(),
        "run".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ])
    .timeout(Duration::from_secs(60))
    .run();
    assert!(
        !out.status.success(),
        "warden run must refuse to start\n{out}"
    );
    assert!(
        out.stderr.contains(&address.to_string()) && out.stderr.contains("[metrics] listen"),
        "the error names the address and the key\n{out}"
    );
    assert!(
        !out.stderr.contains("warden ready"),
        "it never became ready\n{out}"
    );
}
