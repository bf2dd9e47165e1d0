//! Deny rules (and a deny over an approve rule), end to end with the official openai Python SDK in a selected cgroup: a
//! refused call raises `PermissionDeniedError` with the rule's message and is not retried, the fake
//! upstream receives nothing, and the audit store records the exchange as denied by that rule.
//! Identity selectors (account, unit, uid) decide which callers a rule applies to.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use warden_tests::daemon::Account;
use warden_tests::policy::{
    approve_rule, assert_recorded_denial, chat_request, deny_rule, PolicyAgent,
};
use warden_tests::{audit, require_kernel, CgroupGuard};

const MODELS_RULE: &str = "approved-models-only";
const MODELS_MESSAGE: &str = "Only gpt-4o-mini may be used from this host";

/// The daemon walks the cgroup tree for a missing unit at most every 5 s.
const UNIT_FOUND_TIMEOUT: Duration = Duration::from_secs(15);

#[test]
fn a_disallowed_model_raises_permission_denied_and_never_reaches_the_upstream() {
    let Some(agent) = PolicyAgent::start("policy-model", |daemon, _| {
        daemon.policy_file(
            "models.toml",
            &deny_rule(
                MODELS_RULE,
                MODELS_MESSAGE,
                r#"endpoint = ["chat.completions"]
                   model_not_in = ["gpt-4o-mini"]"#,
            ),
        )
    }) else {
        return;
    };
    let mut known = BTreeSet::new();

    let denied = agent.chat(&chat_request("gpt-4.1", "Say hello"));
    denied.assert_denied_by(MODELS_RULE, MODELS_MESSAGE);
    agent.assert_upstream_got_nothing();
    let detail = assert_recorded_denial(&agent.fx, &mut known, denied.pid(), MODELS_RULE);
    assert_eq!(detail["request"]["model"], "gpt-4.1", "{detail:#}");
    assert_eq!(detail["response"]["status"], 403, "{detail:#}");

    // The same caller with an approved model gets through: the refusal was the rule's doing.
    let allowed = agent.chat(&chat_request("gpt-4o-mini", "Say hello"));
    assert_eq!(allowed.assert_allowed(), agent.fx.upstream.reply());
    let seen = agent.fx.upstream.requests();
    assert_eq!(seen.len(), 1, "only the allowed call reached the upstream");
    assert_eq!(seen[0].json()["model"], "gpt-4o-mini");
    let summary = audit::wait_for_new_exchange(&agent.fx.daemon, &mut known);
    assert_eq!(summary["outcome"], "ok", "{summary:#}");
}

#[test]
fn a_temperature_above_the_cap_is_denied() {
    const RULE: &str = "temperature-cap";
    const MESSAGE: &str = "temperature above 1.0 is not allowed by this host's policy";
    let Some(agent) = PolicyAgent::start("policy-temperature", |daemon, _| {
        daemon.policy_file(
            "caps.toml",
            &deny_rule(RULE, MESSAGE, "param_above = { temperature = 1.0 }"),
        )
    }) else {
        return;
    };
    let mut known = BTreeSet::new();
    let mut request = chat_request("gpt-4o-mini", "Say hello");

    request["temperature"] = json!(1.5);
    let denied = agent.chat(&request);
    denied.assert_denied_by(RULE, MESSAGE);
    agent.assert_upstream_got_nothing();
    assert_recorded_denial(&agent.fx, &mut known, denied.pid(), RULE);

    request["temperature"] = json!(0.5);
    agent.chat(&request).assert_allowed();
    let seen = agent.fx.upstream.requests();
    assert_eq!(seen.len(), 1, "the call under the cap reached the upstream");
    assert_eq!(seen[0].json()["temperature"], 0.5);
}

/// Holding for approval is tested in approvals.rs; here: a deny wins over an approve rule that
/// also matches, so the request is refused at once and never held.
#[test]
fn a_deny_wins_over_an_approve_rule() {
    const REVIEW_RULE: &str = "chat-needs-review";
    let Some(agent) = PolicyAgent::start("policy-approve", |daemon, _| {
        daemon
            .policy_file(
                "review.toml",
                &approve_rule(REVIEW_RULE, r#"endpoint = ["chat.completions"]"#),
            )
            .policy_file(
                "models.toml",
                &deny_rule(
                    MODELS_RULE,
                    MODELS_MESSAGE,
                    r#"model_not_in = ["gpt-4o-mini"]"#,
                ),
            )
    }) else {
        return;
    };
    let mut known = BTreeSet::new();

    // Both rules match this one; the deny decides.
    let denied = agent.chat(&chat_request("gpt-4.1", "Say hello"));
    denied.assert_denied_by(MODELS_RULE, MODELS_MESSAGE);
    agent.assert_upstream_got_nothing();
    assert_recorded_denial(&agent.fx, &mut known, denied.pid(), MODELS_RULE);
    assert!(
        !agent
            .fx
            .daemon
            .log_text()
            .contains("request held for approval"),
        "a denied request is never held"
    );
}

/// A deny rule for every caller that `selector` matches.
fn identity_rule(selector: &str) -> String {
    deny_rule(
        "identity-rule",
        "This workload may not call the API",
        &format!("identity = [{selector:?}]"),
    )
}

#[test]
fn an_account_selector_denies_only_that_accounts_callers() {
    if require_kernel().is_none() {
        return;
    }
    let other = CgroupGuard::new("policy-account-other");
    let Some(agent) = PolicyAgent::start("policy-account-billing", |daemon, billing| {
        daemon
            .select(&other)
            .account(Account::cgroup("billing-agent", billing.path()))
            .account(Account::cgroup("search-agent", other.path()))
            .policy_file("accounts.toml", &identity_rule("account:billing-*"))
    }) else {
        return;
    };
    let request = chat_request("gpt-4o-mini", "Say hello");

    agent
        .chat(&request)
        .assert_denied_by("identity-rule", "This workload may not call the API");
    agent.assert_upstream_got_nothing();
    agent.chat_in(&other, &request).assert_allowed();
    assert_eq!(agent.fx.upstream.requests().len(), 1);
}

#[test]
fn a_unit_selector_denies_only_that_units_callers() {
    if require_kernel().is_none() {
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let unit = format!("warden-policy-{}-{nanos}.service", std::process::id());
    // Not below /system.slice: the daemon finds the unit by walking the tree.
    let slice = CgroupGuard::new("policy-units");
    let service = slice.child(&unit);
    let Some(agent) = PolicyAgent::start("policy-unit-other", |daemon, _| {
        daemon
            .select_unit(&unit)
            .policy_file("units.toml", &identity_rule("unit:warden-policy-*.service"))
    }) else {
        return;
    };
    agent
        .fx
        .daemon
        .wait_for_status("the unit to be selected", UNIT_FOUND_TIMEOUT, |s| {
            s.selected(service.path()).is_some()
        });
    let request = chat_request("gpt-4o-mini", "Say hello");

    let denied = agent.chat_in(&service, &request);
    denied.assert_denied_by("identity-rule", "This workload may not call the API");
    agent.assert_upstream_got_nothing();
    // The agent cgroup is selected by path and belongs to no unit.
    agent.chat(&request).assert_allowed();
    assert_eq!(agent.fx.upstream.requests().len(), 1);
}

#[test]
fn a_uid_selector_denies_only_that_users_callers() {
    let Some(agent) = PolicyAgent::start("policy-uid", |daemon, _| {
        daemon.policy_file("uids.toml", &identity_rule("uid:65534"))
    }) else {
        return;
    };
    let request = chat_request("gpt-4o-mini", "Say hello");

    agent
        .chat_as_nobody(&request)
        .assert_denied_by("identity-rule", "This workload may not call the API");
    agent.assert_upstream_got_nothing();
    // Same cgroup, running as root.
    agent.chat(&request).assert_allowed();
    assert_eq!(agent.fx.upstream.requests().len(), 1);
}
