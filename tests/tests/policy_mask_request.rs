//! Request-side masking, end to end with the official openai Python SDK: an email address and a
//! credit card number in a prompt reach the fake upstream as `[EMAIL]` and `[CREDIT_CARD]`, in a
//! body that is still the same JSON with a matching Content-Length; the audit store keeps only the
//! masked form plus a count per recognizer, and neither the store's files nor the log hold the
//! originals. A mask rule for responses only leaves requests alone (and masks the reply).

use serde_json::{json, Value};
use warden_tests::audit::{self, sqlite};
use warden_tests::policy::{mask_rule, PolicyAgent};
use warden_tests::{FakeUpstream, RecordedRequest};

const EMAIL: &str = "alice@example.com";
const CARD: &str = "4111 1111 1111 1111";
/// What must not appear anywhere once masked: the originals, and the card without its spaces.
const ORIGINALS: [&str; 3] = [EMAIL, CARD, "4111111111111111"];

const SYSTEM: &str = "You are terse.";
fn prompt() -> String {
    format!("Please email {EMAIL} the receipt for card {CARD}, thanks.")
}
const MASKED_PROMPT: &str = "Please email [EMAIL] the receipt for card [CREDIT_CARD], thanks.";

/// The SDK's keyword arguments: a system message without PII, then the prompt.
fn request(prompt: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "messages": [
            { "role": "system", "content": SYSTEM },
            { "role": "user", "content": prompt },
        ],
    })
}

/// The upstream's only request.
fn only_upstream_request(agent: &PolicyAgent) -> RecordedRequest {
    let mut seen = agent.fx.upstream.requests();
    assert_eq!(seen.len(), 1, "one request reached the upstream");
    seen.remove(0)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn assert_no_originals(what: &str, bytes: &[u8]) {
    for original in ORIGINALS {
        assert!(
            !contains(bytes, original),
            "{what} holds the original {original:?}"
        );
    }
}

#[test]
fn an_email_and_a_card_number_reach_the_upstream_masked_and_are_stored_masked() {
    let Some(agent) = PolicyAgent::start("policy-mask-request", |daemon, _| {
        daemon.policy_file(
            "mask.toml",
            &mask_rule("mask-pii", "request", &["email", "credit_card"]),
        )
    }) else {
        return;
    };

    let call = agent.chat(&request(&prompt()));
    assert_eq!(call.assert_allowed(), agent.fx.upstream.reply());

    // What left the host.
    let seen = only_upstream_request(&agent);
    let text = String::from_utf8_lossy(&seen.body);
    assert_no_originals("the body the upstream received", &seen.body);
    assert!(
        text.contains("[EMAIL]") && text.contains("[CREDIT_CARD]"),
        "{text}"
    );
    let body: Value = serde_json::from_slice(&seen.body)
        .unwrap_or_else(|e| panic!("the masked body is not JSON ({e}): {text}"));
    assert_eq!(
        body,
        request(MASKED_PROMPT),
        "the same JSON, only the PII replaced"
    );
    match seen.header("content-length") {
        Some(length) => assert_eq!(length.parse::<usize>().ok(), Some(seen.body.len())),
        None => assert_eq!(
            seen.header("transfer-encoding"),
            Some("chunked"),
            "a body without Content-Length must be chunked: {:?}",
            seen.headers
        ),
    }

    // What the audit store keeps.
    let summary = audit::wait_for_finished(&agent.fx.daemon, 1).remove(0);
    assert_eq!(summary["outcome"], "ok", "{summary:#}");
    let id = summary["id"].as_str().expect("an id");
    let raw = audit::show_raw(&agent.fx.daemon, id);
    assert_no_originals("`sessions show --json`", raw.stdout.as_bytes());
    let detail: Value = serde_json::from_str(raw.stdout.trim()).expect("sessions show JSON");
    let recorded = detail["request"]["body"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no request body text: {detail:#}"));
    let recorded: Value = serde_json::from_str(recorded).expect("the recorded body is JSON");
    assert_eq!(recorded["messages"][1]["content"], MASKED_PROMPT);
    assert_eq!(
        detail["request"]["policy"]["masked"],
        json!({ "mask-pii": { "EMAIL": 1, "CREDIT_CARD": 1 } }),
        "request.policy.masked: per rule, per recognizer\n{detail:#}"
    );
    for path in sqlite::store_files(&audit::db_path(&agent.fx.daemon)) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_no_originals(&path.display().to_string(), &bytes);
    }
    assert_no_originals("the daemon log", agent.fx.daemon.log_text().as_bytes());
}

#[test]
fn a_mask_rule_for_responses_only_leaves_requests_alone() {
    // The reply carries the same PII, so the rule has something to do in its own direction.
    let upstream = FakeUpstream::builder().reply(&prompt()).start();
    let Some(agent) =
        PolicyAgent::with_upstream("policy-mask-response-only", upstream, |daemon, _| {
            daemon.policy_file(
                "mask.toml",
                &mask_rule("mask-replies", "response", &["email", "credit_card"]),
            )
        })
    else {
        return;
    };

    let call = agent.chat(&request(&prompt()));
    let seen = only_upstream_request(&agent);
    assert_eq!(
        seen.json(),
        request(&prompt()),
        "the request went unchanged"
    );
    // The rule is in force: the reply the SDK got was masked.
    assert_eq!(call.assert_allowed(), MASKED_PROMPT, "{:#}", call.printed);
}
