//! Just-in-time approval, end to end: the official openai Python SDK in a selected cgroup calls a
//! chat completion that an approve rule holds; an approver (a real unprivileged user in the
//! rule's group, reaching the admin socket through `[admin] group`) decides with `warden
//! approvals` while the call waits. Approve forwards it, deny and expiry refuse it with 403, a
//! duration approval lets later calls pass under its grant, and a decision from anyone the rule
//! does not name is refused. Every step is a record in the hash chain, which `audit verify`
//! checks, and which fails when an approval record is deleted.

use std::collections::BTreeSet;

use serde_json::Value;
use warden_tests::approvals::{assert_refused, id, ApprovalAgent, RULE};
use warden_tests::audit;

/// The governance events of exchange `exchange_id`, by type, in chain order.
fn trail(agent: &ApprovalAgent, exchange_id: &str) -> Vec<Value> {
    let detail = audit::show(&agent.agent.fx.daemon, exchange_id);
    detail["governance"]
        .as_array()
        .unwrap_or_else(|| panic!("no governance trail: {detail:#}"))
        .iter()
        .map(|record| record["event"].clone())
        .collect()
}

fn types(trail: &[Value]) -> Vec<&str> {
    trail.iter().filter_map(|e| e["type"].as_str()).collect()
}

/// The exchange of approval `approval` once it has ended; its `sessions list` object.
fn finished_exchange(agent: &ApprovalAgent, approval: &Value) -> Value {
    let exchange_id = approval["exchange_id"].as_str().expect("an exchange id");
    let mut known = BTreeSet::new();
    for other in audit::list_ids(&agent.agent.fx.daemon, &["--limit", "1000"]) {
        if other != exchange_id {
            known.insert(other);
        }
    }
    let summary = audit::wait_for_new_exchange(&agent.agent.fx.daemon, &mut known);
    assert_eq!(summary["id"], exchange_id, "{summary:#}");
    summary
}

#[test]
fn approved_through_the_cli_the_held_call_goes_on() {
    let Some(agent) = ApprovalAgent::start("approval-approve", "60s", |d| d) else {
        return;
    };
    let mut known = BTreeSet::new();
    let running = agent.spawn_chat("Summarize the quarterly numbers", None);
    let pending = agent.wait_for_pending(&mut known);

    // Held, not refused: the pending approval says who asked and for what; nothing went upstream.
    assert_eq!(pending["state"], "pending", "{pending:#}");
    assert_eq!(pending["rule"], RULE, "{pending:#}");
    assert_eq!(pending["model"], "gpt-4o-mini", "{pending:#}");
    assert_eq!(pending["endpoint"], "chat.completions", "{pending:#}");
    assert_eq!(pending["requester"]["uid"], 0, "{pending:#}");
    assert!(
        pending["excerpt"]
            .as_str()
            .is_some_and(|e| e.contains("Summarize the quarterly numbers")),
        "{pending:#}"
    );
    assert!(pending["expires_at_us"].as_i64() > pending["created_at_us"].as_i64());
    agent.agent.assert_upstream_got_nothing();
    agent
        .agent
        .fx
        .daemon
        .wait_for_log("the WARN line", audit::RECORD_TIMEOUT, |l| {
            l.is("request held for approval") && l.str("level") == Some("WARN")
        });

    // The approver sees it, and approves it.
    let shown = agent.cli_as(&agent.people.alice, &["show", id(&pending)]);
    shown.assert_success();
    assert!(shown.stdout.contains(RULE), "{shown}");
    let approved = agent.cli_as(
        &agent.people.alice,
        &["approve", id(&pending), "--reason", "expected report run"],
    );
    approved.assert_success();

    let call = agent.finish(running);
    assert_eq!(call.assert_allowed(), agent.agent.fx.upstream.reply());
    assert_eq!(agent.agent.fx.upstream.requests().len(), 1);

    let summary = finished_exchange(&agent, &pending);
    assert_eq!(summary["outcome"], "ok", "{summary:#}");
    let events = trail(&agent, summary["id"].as_str().unwrap());
    assert_eq!(
        types(&events),
        ["approval_requested", "approval_decided"],
        "{events:#?}"
    );
    assert_eq!(events[1]["decision"], "approve");
    assert_eq!(events[1]["by"]["uid"], agent.people.alice.uid);
    assert_eq!(events[1]["by"]["user"], agent.people.alice.name.as_str());
    assert_eq!(events[1]["reason"], "expected report run");
    // `sessions show` displays the trail next to the exchange.
    let text = agent
        .agent
        .fx
        .daemon
        .cli("sessions", &["show", summary["id"].as_str().unwrap()]);
    assert!(
        text.stdout.contains(&format!(
            "approved {} by {}",
            id(&pending),
            agent.people.alice.name
        )),
        "{text}"
    );
    assert_eq!(agent.state_of(id(&pending))["state"], "approved");
    assert!(agent.pending().is_empty());
    audit::assert_verifies(&agent.agent.fx.daemon);
}

#[test]
fn denied_through_the_cli_the_sdk_gets_approval_denied_and_a_deleted_decision_breaks_verify() {
    let Some(agent) = ApprovalAgent::start("approval-deny", "60s", |d| d) else {
        return;
    };
    let mut known = BTreeSet::new();
    let running = agent.spawn_chat("Export every customer record", None);
    let pending = agent.wait_for_pending(&mut known);
    assert_refused(
        &agent.cli_as(&agent.people.alice, &["deny", id(&pending)]),
        "--reason",
    );
    agent
        .cli_as(
            &agent.people.alice,
            &["deny", id(&pending), "--reason", "no bulk exports today"],
        )
        .assert_success();

    let call = agent.finish(running);
    let body = call.assert_permission_denied();
    assert_eq!(body["code"], "approval_denied", "{body:#}");
    assert_eq!(body["type"], "policy_violation", "{body:#}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("no bulk exports today")),
        "the approver's reason reaches the agent: {body:#}"
    );
    agent.agent.assert_upstream_got_nothing();

    let summary = finished_exchange(&agent, &pending);
    assert_eq!(summary["outcome"], "approval_denied", "{summary:#}");
    let listed = audit::list_ids(&agent.agent.fx.daemon, &["--outcome", "approval_denied"]);
    assert!(
        listed.contains(summary["id"].as_str().unwrap()),
        "{listed:?}"
    );
    let events = trail(&agent, summary["id"].as_str().unwrap());
    assert_eq!(types(&events), ["approval_requested", "approval_decided"]);
    assert_eq!(events[1]["decision"], "deny");
    audit::assert_verifies(&agent.agent.fx.daemon);

    // Deleting the decision from the store is detected, and named.
    let db = audit::db_path(&agent.agent.fx.daemon);
    let decided = "kind = 'governance' AND body LIKE '%\"approval_decided\"%'";
    let seq = audit::sqlite::query(&db, &format!("SELECT seq FROM records WHERE {decided}"));
    let seq = seq.trim();
    assert!(seq.parse::<u64>().is_ok(), "one decision record: {seq:?}");
    audit::sqlite::tamper(&db, &format!("DELETE FROM records WHERE {decided}"));
    let verify = audit::verify(&agent.agent.fx.daemon);
    assert!(
        !verify.status.success() && verify.stderr.contains(&format!("record {seq} is missing")),
        "verify fails, naming the deleted record {seq}\n{verify}"
    );
}

#[test]
fn nobody_decides_and_the_call_ends_with_approval_timeout() {
    let Some(agent) = ApprovalAgent::start("approval-timeout", "2s", |d| d) else {
        return;
    };
    let mut known = BTreeSet::new();
    let running = agent.spawn_chat("Say hello", None);
    let pending = agent.wait_for_pending(&mut known);

    let call = agent.finish(running);
    let body = call.assert_permission_denied();
    assert_eq!(body["code"], "approval_timeout", "{body:#}");
    agent.agent.assert_upstream_got_nothing();

    let summary = finished_exchange(&agent, &pending);
    assert_eq!(summary["outcome"], "approval_timeout", "{summary:#}");
    let listed = audit::list_ids(&agent.agent.fx.daemon, &["--outcome", "approval_timeout"]);
    assert!(
        listed.contains(summary["id"].as_str().unwrap()),
        "{listed:?}"
    );
    let events = trail(&agent, summary["id"].as_str().unwrap());
    assert_eq!(types(&events), ["approval_requested", "approval_expired"]);
    // Too late to decide now.
    assert_refused(
        &agent.cli_as(&agent.people.alice, &["approve", id(&pending)]),
        "not pending",
    );
    assert_eq!(agent.state_of(id(&pending))["state"], "expired");
    audit::assert_verifies(&agent.agent.fx.daemon);
}

#[test]
fn approved_for_a_duration_later_calls_pass_under_the_grant() {
    let Some(agent) = ApprovalAgent::start("approval-grant", "60s", |d| d) else {
        return;
    };
    let mut known = BTreeSet::new();
    let running = agent.spawn_chat("First call", None);
    let pending = agent.wait_for_pending(&mut known);
    let approved = agent.cli_as(
        &agent.people.alice,
        &["approve", id(&pending), "--for", "1h"],
    );
    approved.assert_success();
    agent.finish(running).assert_allowed();
    let first = finished_exchange(&agent, &pending);
    let events = trail(&agent, first["id"].as_str().unwrap());
    let grant_id = events[1]["grant"]["grant_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the decision opens a grant: {events:#?}"))
        .to_owned();
    assert!(events[1]["grant"]["expires_at_us"].as_i64().is_some());
    assert!(approved.stdout.contains(&grant_id), "{approved}");

    // The same identity under the same rule: no hold, recorded with the grant's id.
    let mut exchanges = audit::list_ids(&agent.agent.fx.daemon, &["--limit", "1000"]);
    agent
        .finish(agent.spawn_chat("Second call", None))
        .assert_allowed();
    let summary = audit::wait_for_new_exchange(&agent.agent.fx.daemon, &mut exchanges);
    let detail = audit::show(&agent.agent.fx.daemon, summary["id"].as_str().unwrap());
    assert_eq!(
        detail["request"]["policy"]["verdict"], "approve",
        "{detail:#}"
    );
    assert_eq!(
        detail["request"]["policy"]["grant"],
        grant_id.as_str(),
        "{detail:#}"
    );
    assert!(
        detail["governance"].as_array().is_none_or(Vec::is_empty),
        "{detail:#}"
    );
    assert_eq!(agent.agent.fx.upstream.requests().len(), 2);
    let held = agent
        .agent
        .fx
        .daemon
        .logs()
        .with_message("request held for approval")
        .len();
    assert_eq!(held, 1, "only the first call was held");
    audit::assert_verifies(&agent.agent.fx.daemon);
}

#[test]
fn a_decision_by_anyone_the_rule_does_not_name_is_refused() {
    let Some(agent) = ApprovalAgent::start("approval-authority", "60s", |d| d) else {
        return;
    };
    let mut known = BTreeSet::new();
    let running = agent.spawn_chat("Say hello", None);
    let pending = agent.wait_for_pending(&mut known);
    let mallory = &agent.people.mallory;

    // In the admin group, so the socket admits mallory; not in the rule's group.
    assert_refused(
        &agent.cli_as(mallory, &["approve", id(&pending)]),
        "is not one of them",
    );
    assert_refused(
        &agent.cli_as(mallory, &["deny", id(&pending), "--reason", "x"]),
        "is not one of them",
    );
    // Root is not named either: being root decides nothing.
    assert_refused(&agent.cli(&["approve", id(&pending)]), "is not one of them");
    // Everything but approvals stays root's.
    assert_refused(&agent.warden_as(mallory, "status", &[]), "only root");
    // Still pending, and nothing went upstream.
    assert_eq!(agent.pending().len(), 1);
    agent.agent.assert_upstream_got_nothing();

    agent
        .cli_as(&agent.people.alice, &["approve", id(&pending)])
        .assert_success();
    agent.finish(running).assert_allowed();
    let summary = finished_exchange(&agent, &pending);
    let events = trail(&agent, summary["id"].as_str().unwrap());
    assert_eq!(types(&events), ["approval_requested", "approval_decided"]);
    assert_eq!(events[1]["by"]["uid"], agent.people.alice.uid);
}

#[test]
fn nobody_approves_their_own_request() {
    let Some(agent) = ApprovalAgent::start("approval-own", "5s", |d| d) else {
        return;
    };
    let alice = &agent.people.alice;
    let mut known = BTreeSet::new();
    let (_bundle, running) = agent.spawn_chat_as(alice, "Say hello");
    let pending = agent.wait_for_pending(&mut known);
    assert_eq!(pending["requester"]["uid"], alice.uid, "{pending:#}");

    // Alice is an approver of the rule, but this request was made under her uid.
    assert_refused(
        &agent.cli_as(alice, &["approve", id(&pending)]),
        "nobody approves their own request",
    );
    let body = agent.finish(running).assert_permission_denied().clone();
    assert_eq!(body["code"], "approval_timeout", "{body:#}");
    agent.agent.assert_upstream_got_nothing();
}
