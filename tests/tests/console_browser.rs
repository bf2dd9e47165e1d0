//! The web console in a real browser (Debian's headless Chromium driven through chromedriver):
//! an approver signs in through the fake OpenID provider (authorization code + PKCE), sees the
//! official SDK's held call appear in the queue without a reload, approves it, the call
//! completes, and the session page shows the prompt and the approver. An auditor sees no approve
//! button, and the POST forged from their session is refused 403. Screenshots of each page are
//! saved under target/test-artifacts/console/.

use std::{net::Ipv4Addr, time::Duration};

use serde_json::{json, Value};
use warden_tests::{
    browser::{Browser, BrowserOptions},
    console::{assert_done_by, people, ConsoleAgent},
    env::require_browser,
    wait,
};

const PAGE: Duration = Duration::from_secs(30);

/// A browser that trusts the daemon's CA (its API leaf is signed by it) and resolves localhost
/// to 127.0.0.1 only.
fn browser(console: &ConsoleAgent, name: &str) -> Browser {
    let ca = std::fs::read_to_string(console.ca_pem()).expect("read the daemon's CA");
    Browser::start_with(
        name,
        BrowserOptions {
            trusted_cert_pems: vec![ca],
            map_to_loopback: vec![("localhost".into(), Ipv4Addr::LOCALHOST.into())],
        },
    )
}

/// Opens the console: redirected to the provider, signed in as whoever it signs in, and back.
fn sign_in(console: &ConsoleAgent, browser: &Browser, email: &str) {
    browser.goto(&format!("{}/", console.origin()));
    browser.wait_for("#whoami", PAGE);
    wait::until("the console names the signed-in user", PAGE, || {
        browser.text("#whoami").contains(email).then_some(())
    });
}

/// Runs `fetch` in the page and returns the status.
fn fetch_status(browser: &Browser, script: &str) -> u64 {
    let done = browser
        .block_on(browser.client().execute_async(script, Vec::new()))
        .expect("the page ran the fetch");
    done.as_u64()
        .unwrap_or_else(|| panic!("no status from the page: {done}"))
}

fn exchange_of(console: &ConsoleAgent, token: &str, approval_id: &str) -> String {
    let all = console
        .call("GET", "/api/v1/approvals?all=true", Some(token), None)
        .json();
    all["approvals"]
        .as_array()
        .and_then(|list| list.iter().find(|a| a["id"] == approval_id))
        .and_then(|a| a["exchange_id"].as_str())
        .unwrap_or_else(|| panic!("approval {approval_id} has no exchange: {all:#}"))
        .to_string()
}

#[test]
fn an_approver_signs_in_approves_a_held_call_live_and_the_call_completes() {
    let Some(console) = ConsoleAgent::start("console-approve") else {
        return;
    };
    if !require_browser() {
        return;
    }
    console.idp.sign_in_as(people::ANN_APPROVER);
    let browser = browser(&console, "console-approve");
    sign_in(&console, &browser, "ann@example.test");
    // Signed in through the code flow with PKCE: the provider saw an S256 challenge.
    let authorize = console.idp.authorize_requests();
    let asked = authorize
        .last()
        .expect("the console sent the browser to /authorize");
    assert!(
        asked
            .iter()
            .any(|(k, v)| k == "code_challenge_method" && v == "S256"),
        "{asked:?}"
    );
    browser.wait_for("ul#approval-queue", PAGE);
    browser.screenshot("01-approvals-empty");

    // A marker in the page: if it survives, the queue updated without a reload.
    browser.execute("window.__wardenNoReload = true;");
    let prompt = "Summarize the ACME quarterly numbers";
    let running = console.spawn_chat(prompt);
    browser.wait_for("li.approval button.approve", PAGE);
    assert_eq!(
        browser.execute("return window.__wardenNoReload === true;"),
        json!(true)
    );
    let approval_id = browser
        .execute("return document.querySelector('li.approval').dataset.id;")
        .as_str()
        .expect("the queue item names its approval")
        .to_string();
    browser.screenshot("02-approval-held");

    // The approver's own cookie is not enough for a POST: without the session's CSRF token (what a
    // page on another site could send), refused, and the approval stays pending.
    let no_csrf = format!(
        "const done = arguments[arguments.length - 1];
         fetch('/api/v1/approvals/{approval_id}/approve', {{method: 'POST',
           headers: {{'Content-Type': 'application/json'}}, body: '{{}}'}})
         .then(r => done(r.status), e => done(String(e)));"
    );
    assert_eq!(fetch_status(&browser, &no_csrf), 403);
    let ann = console.token_for(people::ANN_APPROVER);
    assert_eq!(console.wait_for_pending(&ann)["id"], approval_id.as_str());

    browser.fill("li.approval input.reason", "checked in the console");
    browser.click("li.approval button.approve");
    let call = console.finish(running);
    assert!(call.printed["content"].is_string(), "{:#}", call.printed);
    wait::until("the queue shows the approval closed", PAGE, || {
        let state: Value = browser.execute(
            "const s = document.querySelector('li.approval .state, #approval-history tr.decision'); return s ? s.textContent : '';",
        );
        state.as_str().filter(|s| s.contains("approved")).map(drop)
    });
    browser.screenshot("03-approved");

    let exchange = exchange_of(&console, &ann, &approval_id);
    browser.goto(&format!("{}/#/session/{exchange}", console.origin()));
    wait::until(
        "the session page shows the prompt and the approver",
        PAGE,
        || {
            let prompt_shown = browser.execute("const e = document.querySelector('#session-prompt'); return e ? e.textContent : '';");
            let trail = browser.execute("const e = document.querySelector('#session-approvals'); return e ? e.textContent : '';");
            (prompt_shown.as_str().is_some_and(|p| p.contains(prompt))
                && trail
                    .as_str()
                    .is_some_and(|t| t.contains("ann@example.test")))
            .then_some(())
        },
    );
    browser.screenshot("04-session");

    browser.goto(&format!("{}/#/replay/{exchange}", console.origin()));
    browser.wait_for("button#replay-play", PAGE);
    browser.click("button#replay-play");
    browser.wait_for("ol#replay-lines li", PAGE);
    browser.screenshot("05-replay");

    browser.goto(&format!("{}/#/sessions", console.origin()));
    browser.wait_for("tr.session", PAGE);
    browser.screenshot("06-sessions");
    browser.goto(&format!("{}/#/identities", console.origin()));
    browser.wait_for("tr.identity", PAGE);
    browser.screenshot("07-identities");
    browser.goto(&format!("{}/#/audit", console.origin()));
    wait::until("the chain verifies in the console", PAGE, || {
        browser
            .text("#verify-status")
            .contains("verified")
            .then_some(())
    });
    browser.screenshot("08-audit");

    assert_done_by(&console.governance_event("signed_in"), people::ANN_APPROVER);
    let decided = console.governance_event("approval_decided");
    assert_done_by(&decided, people::ANN_APPROVER);
    assert_eq!(decided["reason"], "checked in the console", "{decided:#}");
}

#[test]
fn an_auditor_sees_no_approve_button_and_a_forged_post_is_refused() {
    let Some(console) = ConsoleAgent::start("console-auditor") else {
        return;
    };
    if !require_browser() {
        return;
    }
    console.idp.sign_in_as(people::AUDREY_AUDITOR);
    let browser = browser(&console, "console-auditor");
    sign_in(&console, &browser, "audrey@example.test");
    let running = console.spawn_chat("Draft the press release");
    browser.wait_for("li.approval", PAGE);
    browser.screenshot("09-auditor-queue");
    let buttons = browser.execute("return document.querySelectorAll('li.approval button.approve, li.approval button.deny').length;");
    assert_eq!(buttons, json!(0), "an auditor must see no decision buttons");
    let id = browser
        .execute("return document.querySelector('li.approval').dataset.id;")
        .as_str()
        .expect("the queue item names its approval")
        .to_string();

    // The forged POST, with the session's own CSRF token: the role decides, 403.
    let forged = format!(
        "const done = arguments[arguments.length - 1];
         fetch('/api/v1/me').then(r => r.json()).then(me =>
           fetch('/api/v1/approvals/{id}/approve', {{method: 'POST',
             headers: {{'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token}}, body: '{{}}'}}))
         .then(r => done(r.status), e => done(String(e)));"
    );
    assert_eq!(fetch_status(&browser, &forged), 403);
    // Without the CSRF token the cookie alone is refused before any role is looked at.
    let no_csrf = format!(
        "const done = arguments[arguments.length - 1];
         fetch('/api/v1/approvals/{id}/approve', {{method: 'POST',
           headers: {{'Content-Type': 'application/json'}}, body: '{{}}'}})
         .then(r => done(r.status), e => done(String(e)));"
    );
    assert_eq!(fetch_status(&browser, &no_csrf), 403);

    // Still pending: deny it as the approver, so the held call ends.
    let ann = console.token_for(people::ANN_APPROVER);
    let pending = console.wait_for_pending(&ann);
    assert_eq!(pending["id"], id.as_str());
    let denied = console.call(
        "POST",
        &format!("/api/v1/approvals/{id}/deny"),
        Some(&ann),
        Some(&json!({"reason": "not today"})),
    );
    assert_eq!(denied.status, 200, "{denied:?}");
    let out = running.wait();
    assert!(
        out.stdout.contains("PermissionDeniedError")
            || out.stderr.contains("PermissionDeniedError")
            || !out.status.success(),
        "{out}"
    );
}
