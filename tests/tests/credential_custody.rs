//! Credential custody with the official `openai` Python SDK in a selected cgroup: the agent holds
//! a placeholder, the upstream receives the real key, and the SDK gets normal answers; an identity
//! no credential serves gets `AuthenticationError` with nothing sent upstream; under
//! `presented = "require-placeholder"` a real-looking key is refused, logged at WARN and recorded
//! by fingerprint only. The real key is in no log, audit record, metric, status or error body.

use std::collections::BTreeSet;
use std::ffi::OsStr;

use warden_tests::audit::{self, request_header};
use warden_tests::custody::{
    assert_authentication_error, assert_secret_nowhere, credential_toml, presented_toml,
    sdk_chat_presenting, sha256_hex, SecretDir, ACCOUNT, CREDENTIAL, PLACEHOLDER,
};
use warden_tests::daemon::Account;
use warden_tests::policy::{PolicyAgent, RELOAD_TIMEOUT};
use warden_tests::prometheus::Exposition;
use warden_tests::sdk_scripts::CHAT_STREAM;
use warden_tests::{require_kernel, CgroupGuard};

/// The key Warden holds: never on the agent's side.
const REAL_KEY: &str = "sk-custodied-REAL-key-0f3c9a7d51e24b8c";
/// A provider key that leaked onto the agent's host.
const LEAKED_KEY: &str = "sk-proj-LEAKEDkey0123456789abcdefghijklmnopQRST";

/// `sha256:` and the first 16 hex digits of the SHA-256 of `key`: the fingerprint Warden shows.
fn fingerprint(key: &str) -> String {
    format!("sha256:{}", &sha256_hex(key)[..16])
}

/// A daemon holding [`REAL_KEY`] for [`ACCOUNT`] (the agent cgroup), metrics on, and `extra`
/// config; `also_select` is selected too but served by no credential.
fn custody_agent(
    name: &str,
    secrets: &SecretDir,
    also_select: Option<&CgroupGuard>,
    extra: &str,
) -> Option<PolicyAgent> {
    let key_file = secrets.write(CREDENTIAL, REAL_KEY, 0o600);
    let identity = format!("account:{ACCOUNT}");
    PolicyAgent::start(name, |daemon, agent| {
        let daemon = daemon
            .account(Account::cgroup(ACCOUNT, agent.path()))
            .metrics()
            .extra_config(&credential_toml(CREDENTIAL, &key_file, &[&identity]))
            .extra_config(extra);
        match also_select {
            Some(other) => daemon.select(other),
            None => daemon,
        }
    })
}

#[test]
fn the_upstream_gets_the_real_key_never_the_placeholder_and_the_sdk_normal_answers() {
    let secrets = SecretDir::new();
    let Some(agent) = custody_agent("custody", &secrets, None, "") else {
        return;
    };
    let fx = &agent.fx;
    let printed = sdk_chat_presenting(&agent, &fx.agent, PLACEHOLDER);
    assert!(printed["error"].is_null(), "{printed:#}");
    assert_eq!(printed["content"], fx.upstream.reply(), "{printed:#}");
    assert_eq!(printed["attempts"], 1, "{printed:#}");
    // A streamed call, whose script presents the SDK tests' usual `sk-test`.
    let stream = fx
        .client([
            agent.python.as_os_str(),
            OsStr::new("-c"),
            OsStr::new(CHAT_STREAM),
        ])
        .run();
    stream.assert_success();
    let pieces: Vec<String> = serde_json::from_value(stream.last_line_json()["pieces"].clone())
        .expect("the stream script prints its pieces");
    assert_eq!(pieces.concat(), fx.upstream.reply(), "{stream}");

    let expected = Some(format!("Bearer {REAL_KEY}"));
    assert_eq!(
        fx.upstream.authorizations(),
        vec![expected.clone(), expected]
    );
    for request in fx.upstream.requests() {
        for (name, value) in &request.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(
                !value.contains(PLACEHOLDER) && !value.contains("sk-test"),
                "the upstream got the agent's key in {name}: {value}"
            );
        }
    }

    // What is on record for authorization is the agent's placeholder, fingerprinted.
    let placeholders = [fingerprint(PLACEHOLDER), fingerprint("sk-test")];
    for exchange in audit::wait_for_finished(&fx.daemon, 2) {
        assert_eq!(exchange["outcome"], "ok", "{exchange:#}");
        let detail = audit::show(&fx.daemon, exchange["id"].as_str().unwrap_or_default());
        let recorded = request_header(&detail, "authorization").unwrap_or_default();
        assert!(
            placeholders.iter().any(|p| recorded == format!("Bearer {p}")),
            "recorded authorization {recorded:?} is not a placeholder's fingerprint {placeholders:?}"
        );
    }

    let status = fx.daemon.cli("status", &["--json"]);
    status.assert_success();
    let status = status.json();
    let credential = &status["credentials"]["credentials"][0];
    assert_eq!(credential["name"], CREDENTIAL, "{status:#}");
    assert_eq!(credential["host"], "api.openai.com", "{status:#}");
    assert_eq!(
        credential["fingerprint"],
        fingerprint(REAL_KEY),
        "{status:#}"
    );
    assert_eq!(status["credentials"]["presented"], "replace", "{status:#}");
    let metrics = Exposition::scrape(&fx.daemon.metrics_url());
    assert_eq!(
        metrics.expect(
            "warden_credential_injections_total",
            &[("credential", CREDENTIAL)]
        ),
        2.0
    );
    assert_secret_nowhere(
        &fx.daemon,
        REAL_KEY,
        &[&printed.to_string(), &stream.stdout],
    );
}

#[test]
fn an_identity_no_credential_serves_gets_authentication_error_and_nothing_goes_upstream() {
    let secrets = SecretDir::new();
    let Some(_e2e) = require_kernel() else {
        return;
    };
    let unserved = CgroupGuard::new("custody-unserved");
    let Some(agent) = custody_agent("custody-served", &secrets, Some(&unserved), "") else {
        return;
    };
    let fx = &agent.fx;
    let printed = sdk_chat_presenting(&agent, &unserved, PLACEHOLDER);
    let raw = assert_authentication_error(&printed);
    assert!(
        raw.contains("Warden holds no API key for this workload"),
        "{raw}"
    );
    agent.assert_upstream_got_nothing();

    // On record: the request, and Warden's 401 as its response, with the reason.
    let mut known = BTreeSet::new();
    let exchange = audit::wait_for_new_exchange(&fx.daemon, &mut known);
    assert_eq!(exchange["outcome"], "denied", "{exchange:#}");
    let detail = audit::show(&fx.daemon, exchange["id"].as_str().unwrap_or_default());
    assert_eq!(detail["response"]["status"], 401, "{detail:#}");
    let reason = detail["response"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("no credential serves this identity"),
        "{detail:#}"
    );

    // The served cgroup still goes through, with the real key.
    let served = sdk_chat_presenting(&agent, &fx.agent, PLACEHOLDER);
    assert_eq!(served["content"], fx.upstream.reply(), "{served:#}");
    assert_eq!(
        fx.upstream.authorizations(),
        vec![Some(format!("Bearer {REAL_KEY}"))]
    );
    let metrics = Exposition::scrape(&fx.daemon.metrics_url());
    assert_eq!(
        metrics.expect(
            "warden_credential_refusals_total",
            &[("credential", ""), ("reason", "unserved")]
        ),
        1.0
    );
    assert_secret_nowhere(&fx.daemon, REAL_KEY, &[&raw]);
}

/// An approve rule over every chat; its timeout is short so that a call wrongly held fails the
/// test in seconds rather than after the default two minutes.
const EVERY_CHAT_REVIEWED: &str = "[[rule]]\nname = \"every-chat-reviewed\"\naction = \"approve\"\n\
    approvers = [\"user:root\"]\ntimeout = \"15s\"\n[rule.match]\nendpoint = [\"chat.completions\"]\n";

#[test]
fn an_identity_no_credential_serves_is_refused_before_an_approve_rule_holds_it() {
    let secrets = SecretDir::new();
    let Some(_e2e) = require_kernel() else {
        return;
    };
    let unserved = CgroupGuard::new("custody-unheld");
    let key_file = secrets.write(CREDENTIAL, REAL_KEY, 0o600);
    let identity = format!("account:{ACCOUNT}");
    let Some(agent) = PolicyAgent::start("custody-before-approval", |daemon, agent| {
        daemon
            .account(Account::cgroup(ACCOUNT, agent.path()))
            .extra_config(&credential_toml(CREDENTIAL, &key_file, &[&identity]))
            .policy_file("review.toml", EVERY_CHAT_REVIEWED)
            .select(&unserved)
    }) else {
        return;
    };
    let fx = &agent.fx;
    let printed = sdk_chat_presenting(&agent, &unserved, PLACEHOLDER);
    let raw = assert_authentication_error(&printed);
    assert!(
        raw.contains("Warden holds no API key for this workload"),
        "refused by custody at once, not held and timed out: {raw}"
    );
    agent.assert_upstream_got_nothing();
    let mut known = BTreeSet::new();
    let exchange = audit::wait_for_new_exchange(&fx.daemon, &mut known);
    let detail = audit::show(&fx.daemon, exchange["id"].as_str().unwrap_or_default());
    assert_eq!(detail["response"]["status"], 401, "{detail:#}");
    assert!(
        detail.get("governance").is_none(),
        "no approval was requested for it: {detail:#}"
    );
    assert!(
        !fx.daemon.log_text().contains("request held for approval"),
        "nobody was asked to approve it"
    );
}

#[test]
fn require_placeholder_refuses_a_real_looking_key_logged_at_warn_and_recorded_by_fingerprint() {
    let secrets = SecretDir::new();
    let Some(agent) = custody_agent(
        "custody-placeholder",
        &secrets,
        None,
        &presented_toml("require-placeholder"),
    ) else {
        return;
    };
    let fx = &agent.fx;
    let printed = sdk_chat_presenting(&agent, &fx.agent, LEAKED_KEY);
    let raw = assert_authentication_error(&printed);
    assert!(raw.contains("looks like a real API key"), "{raw}");
    agent.assert_upstream_got_nothing();

    let leaked = fingerprint(LEAKED_KEY);
    let warning = fx
        .daemon
        .wait_for_log("the leaked key's WARN line", RELOAD_TIMEOUT, |l| {
            l.level() == "WARN" && l.str("presented").is_some_and(|p| p.contains(&leaked))
        });
    assert!(
        warning.message().contains("real-looking provider key"),
        "{warning:?}"
    );

    let mut known = BTreeSet::new();
    let exchange = audit::wait_for_new_exchange(&fx.daemon, &mut known);
    assert_eq!(exchange["outcome"], "denied", "{exchange:#}");
    let detail = audit::show(&fx.daemon, exchange["id"].as_str().unwrap_or_default());
    assert_eq!(detail["response"]["status"], 401, "{detail:#}");
    let reason = detail["response"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("require-placeholder") && reason.contains(&leaked),
        "{detail:#}"
    );
    let recorded = request_header(&detail, "authorization").unwrap_or_default();
    assert!(recorded.contains(&leaked), "{recorded:?}");

    // A placeholder still goes through under require-placeholder.
    let served = sdk_chat_presenting(&agent, &fx.agent, PLACEHOLDER);
    assert_eq!(served["content"], fx.upstream.reply(), "{served:#}");
    assert_eq!(
        fx.upstream.authorizations(),
        vec![Some(format!("Bearer {REAL_KEY}"))]
    );
    let metrics = Exposition::scrape(&fx.daemon.metrics_url());
    assert_eq!(
        metrics.expect(
            "warden_credential_refusals_total",
            &[("credential", CREDENTIAL), ("reason", "presented_key")]
        ),
        1.0
    );
    assert_secret_nowhere(&fx.daemon, LEAKED_KEY, &[&raw]);
    assert_secret_nowhere(&fx.daemon, REAL_KEY, &[&raw]);
}
