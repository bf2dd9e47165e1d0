//! Approvals over the HTTPS API, end to end: the official Python SDK's chat completion is held
//! by a rule whose approvers are `oidc-group:llm-approvers`; an approver of the identity provider
//! lists it and approves it with a bearer token, and the call completes; the decision is a chain
//! record naming the person. A person whose user name is the requester's own is refused (no
//! self-approval), and so is one outside the group.

use serde_json::json;
use warden_tests::console::{assert_done_by, people, ConsoleAgent, RULE};

#[test]
fn an_oidc_approver_approves_a_held_sdk_call_and_it_completes() {
    let Some(console) = ConsoleAgent::start("api-approve") else {
        return;
    };
    let running = console.spawn_chat("Summarize the quarterly numbers");
    let ann = console.token_for(people::ANN_APPROVER);
    let pending = console.wait_for_pending(&ann);
    assert_eq!(pending["rule"], RULE, "{pending:#}");
    assert_eq!(
        pending["approvers"],
        json!(["oidc-group:llm-approvers"]),
        "{pending:#}"
    );
    let id = pending["id"].as_str().expect("an approval id").to_string();
    console.agent.assert_upstream_got_nothing();

    // The requester runs as root: a provider user named root is the requester, and may not.
    let root = console.token_for(people::ROOT_APPROVER);
    console
        .call(
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            Some(&root),
            Some(&json!({})),
        )
        .assert_problem(403, "nobody approves their own request");
    // An admin outside the rule's group may not either: the rule's approvers decide.
    let ada = console.token_for(people::ADA_ADMIN);
    console
        .call(
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            Some(&ada),
            Some(&json!({})),
        )
        .assert_problem(403, "is not one of them");

    let approved = console.call(
        "POST",
        &format!("/api/v1/approvals/{id}/approve"),
        Some(&ann),
        Some(&json!({"reason": "looked fine"})),
    );
    assert_eq!(approved.status, 200, "{approved:?}");
    assert_eq!(approved.json()["state"], "approved");
    let call = console.finish(running);
    assert!(call.printed["content"].is_string(), "{:#}", call.printed);

    let decided = console.governance_event("approval_decided");
    assert_eq!(decided["decision"], "approve", "{decided:#}");
    assert_done_by(&decided, people::ANN_APPROVER);
    assert_eq!(decided["reason"], "looked fine");
    warden_tests::audit::assert_verifies(&console.agent.fx.daemon);

    // The exchange, through the sessions endpoints (the CLI's queries, with its filters).
    let audrey = console.token_for(people::AUDREY_AUDITOR);
    let exchange_id = pending["exchange_id"].as_str().expect("an exchange id");
    let get = |path: &str| console.call("GET", path, Some(&audrey), None);
    let listed =
        get("/api/v1/sessions?outcome=ok&endpoint=chat.completions&identity=uid:0&since=1h").json();
    assert_eq!(listed[0]["id"], exchange_id, "{listed:#}");
    assert_eq!(get("/api/v1/sessions?outcome=denied").json(), json!([]));
    get("/api/v1/sessions?endpoint=nonsense").assert_problem(400, "one of");
    let detail = get(&format!("/api/v1/sessions/{exchange_id}")).json();
    assert_eq!(detail["id"], exchange_id, "{detail:#}");
    let trail = detail["governance"].to_string();
    assert!(trail.contains("ann@example.test"), "{detail:#}");
    let replay = get(&format!("/api/v1/sessions/{exchange_id}/replay")).json();
    let first = replay["lines"][0]["text"].as_str().unwrap_or_default();
    assert!(
        first.starts_with("request POST /v1/chat/completions"),
        "{replay:#}"
    );
    let export = get("/api/v1/sessions/export");
    assert_eq!(export.content_type, "application/x-ndjson");
    let lines: Vec<serde_json::Value> = export
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(
        lines.iter().any(|l| l["id"] == exchange_id),
        "{}",
        export.body
    );
    get("/api/v1/sessions/ex-nope").assert_problem(404, "no exchange ex-nope");
}
