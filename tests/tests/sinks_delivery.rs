//! Sinks end to end, with the real daemon, the official openai SDK and real receivers on loopback:
//! exchanges reach a signed webhook, a Splunk HEC fake and a JSONL file, masked, with bodies only
//! where a sink asks for them; a receiver that is down through a daemon restart gets every record
//! once it is back (none missing), and the backlog metric returns to 0; a filter keeps what it
//! does not name out.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::{self, sqlite};
use warden_tests::net::free_dual_stack_port;
use warden_tests::policy::{chat_request, mask_rule, PolicyAgent};
use warden_tests::prometheus::Exposition;
use warden_tests::sinks::{secret_file, sink_toml, HecFake, WebhookReceiver};
use warden_tests::wait;

const SECRET: &str = "whsec-test-0123456789";
const TOKEN: &str = "hec-token-abcdef";
const EMAIL: &str = "alice@example.com";
const CARD: &str = "4111 1111 1111 1111";
const ORIGINALS: [&str; 3] = [EMAIL, CARD, "4111111111111111"];
/// Delivery waits: the sinks poll every 50 ms and retry within a second, but the machine is busy.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn assert_no_originals(what: &str, bytes: &[u8]) {
    for original in ORIGINALS {
        assert!(
            !contains(bytes, original),
            "{what} received the unmasked {original:?}"
        );
    }
}

fn chat_ok(agent: &PolicyAgent, prompt: &str) {
    let call = agent.chat(&chat_request("gpt-4o-mini", prompt));
    assert!(
        call.printed["content"].is_string(),
        "the SDK call failed: {}",
        call.printed
    );
}

/// The seqs of the records a sink with the default filter ships (all but connections and prunes).
fn shippable_seqs(db: &Path) -> BTreeSet<u64> {
    sqlite::query(
        db,
        "SELECT seq FROM records WHERE kind IN ('request', 'response', 'governance') ORDER BY seq",
    )
    .lines()
    .map(|line| line.parse().expect("a seq"))
    .collect()
}

fn responses_in_store(db: &Path) -> usize {
    sqlite::query(db, "SELECT count(*) FROM records WHERE kind = 'response'")
        .parse()
        .expect("a count")
}

fn event_named<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {events:?}"))
}

#[test]
fn exchanges_reach_every_receiver_masked_with_bodies_only_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "webhook.key", SECRET);
    let token = secret_file(dir.path(), "hec.token", TOKEN);
    let jsonl = dir.path().join("out/audit.jsonl");
    let webhook = WebhookReceiver::start_on(0, SECRET);
    let hec = HecFake::start(TOKEN);
    let sinks = [
        sink_toml(
            "hook",
            "webhook",
            &format!(
                "events = [\"exchanges\"]\ninclude_bodies = true\nurl = {:?}\nsecret_file = {secret:?}",
                webhook.url()
            ),
        ),
        sink_toml(
            "splunk",
            "splunk_hec",
            &format!("url = {:?}\ntoken_file = {token:?}\nindex = \"sec\"", hec.url()),
        ),
        sink_toml(
            "jsonl",
            "file",
            &format!("include_bodies = true\npath = {jsonl:?}"),
        ),
    ]
    .concat();
    let Some(agent) = PolicyAgent::start("sinks-masked", |daemon, _| {
        daemon
            .policy_file(
                "mask.toml",
                &mask_rule("pii", "request", &["email", "credit_card"]),
            )
            .extra_config(&sinks)
    }) else {
        return;
    };
    chat_ok(
        &agent,
        &format!("Email {EMAIL} the receipt for card {CARD}."),
    );

    let has_response = |events: &[Value]| events.iter().any(|e| e["name"] == "response");
    wait::until("the webhook's response event", DELIVERY_TIMEOUT, || {
        has_response(&webhook.received.events()).then_some(())
    });
    wait::until("the HEC's response event", DELIVERY_TIMEOUT, || {
        has_response(&hec.received.events()).then_some(())
    });
    let file_events = wait::until("the file's response event", DELIVERY_TIMEOUT, || {
        let text = fs::read_to_string(&jsonl).ok()?;
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
            .collect();
        has_response(&events).then_some(events)
    });

    // Bodies, masked, where asked.
    let hooked = webhook.received.events();
    assert!(
        webhook.received.refused().is_empty(),
        "every signature verified: {:?}",
        webhook.received.refused()
    );
    let request = event_named(&hooked, "request");
    assert_eq!(request["class"], "exchanges");
    let text = request["record"]["body"]["text"]
        .as_str()
        .expect("include_bodies: the body text");
    assert!(
        text.contains("[EMAIL]") && text.contains("[CREDIT_CARD]"),
        "{text}"
    );
    let response = event_named(&hooked, "response");
    assert_eq!(response["exchange"]["id"], request["exchange_id"]);
    assert_eq!(response["exchange"]["model"], "gpt-4o-mini");
    assert_eq!(response["exchange"]["masked"], 2);
    let file_request = event_named(&file_events, "request");
    assert!(file_request["record"]["body"]["text"]
        .as_str()
        .unwrap()
        .contains("[EMAIL]"));
    let mode = fs::metadata(&jsonl).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // No bodies where not asked: the HEC gets sizes, not text.
    let heced = hec.received.events();
    let hec_request = event_named(&heced, "request");
    assert!(hec_request["record"]["body"]["size"]
        .as_u64()
        .is_some_and(|s| s > 0));
    assert!(
        hec_request["record"]["body"].get("text").is_none(),
        "{hec_request}"
    );
    assert!(
        !contains(&hec.received.raw(), "[EMAIL]"),
        "no prompt text at all"
    );
    assert!(
        hec.received.refused().is_empty(),
        "{:?}",
        hec.received.refused()
    );

    // And the originals nowhere.
    assert_no_originals("the webhook", &webhook.received.raw());
    assert_no_originals("the HEC", &hec.received.raw());
    assert_no_originals("the file", &fs::read(&jsonl).unwrap());
}

#[test]
fn a_receiver_down_through_a_restart_receives_every_record_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "webhook.key", SECRET);
    // Nothing listens here until the receiver starts (connections are refused meanwhile).
    let port = free_dual_stack_port();
    let sink = sink_toml(
        "siem",
        "webhook",
        &format!(
            "batch_max = 2\nurl = {:?}\nsecret_file = {secret:?}",
            WebhookReceiver::url_for(port)
        ),
    );
    let Some(mut agent) = PolicyAgent::start("sinks-restart", |daemon, _| {
        daemon.metrics().extra_config(&sink)
    }) else {
        return;
    };
    let db = audit::db_path(&agent.fx.daemon);
    for i in 0..3 {
        chat_ok(&agent, &format!("before the restart {i}"));
    }
    wait::until("3 responses on record", DELIVERY_TIMEOUT, || {
        (responses_in_store(&db) == 3).then_some(())
    });
    agent.fx.daemon.stop(libc::SIGTERM);
    agent.fx.daemon.restart();
    for i in 0..2 {
        chat_ok(&agent, &format!("after the restart {i}"));
    }
    wait::until("5 responses on record", DELIVERY_TIMEOUT, || {
        (responses_in_store(&db) == 5).then_some(())
    });
    let logs = agent.fx.daemon.log_text();
    assert!(
        logs.contains("sink delivery failing"),
        "the failure is logged:\n{logs}"
    );

    let expected = shippable_seqs(&db);
    assert!(
        expected.len() >= 10,
        "5 requests and 5 responses: {expected:?}"
    );
    // While the receiver is away, the backlog counts every record waiting, and status says why.
    let url = agent.fx.daemon.metrics_url();
    let last = *expected.last().unwrap() as f64;
    wait::until("the backlog to count what waits", DELIVERY_TIMEOUT, || {
        let scraped = Exposition::scrape(&url);
        let backlog = scraped.value("warden_sink_backlog_records", &[("sink", "siem")])?;
        (backlog >= last).then_some(())
    });
    let status = agent.fx.daemon.cli("status", &["--json"]);
    let status: Value = serde_json::from_str(&status.stdout).expect("status --json");
    let error = status["sinks"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("onnect"),
        "status names the failure: {status}"
    );

    let receiver = WebhookReceiver::start_on(port, SECRET);
    wait::until("every record at the receiver", DELIVERY_TIMEOUT, || {
        let got: BTreeSet<u64> = receiver.received.by_seq().keys().copied().collect();
        got.is_superset(&expected).then_some(())
    });
    let got: BTreeSet<u64> = receiver.received.by_seq().keys().copied().collect();
    assert_eq!(got, shippable_seqs(&db), "none missing, none invented");
    assert!(
        receiver.received.refused().is_empty(),
        "{:?}",
        receiver.received.refused()
    );
    wait::until("the backlog back to 0", DELIVERY_TIMEOUT, || {
        let scraped = Exposition::scrape(&url);
        (scraped.value("warden_sink_backlog_records", &[("sink", "siem")]) == Some(0.0))
            .then_some(())
    });
    let status = agent.fx.daemon.cli("status", &["--json"]);
    let status: Value = serde_json::from_str(&status.stdout).expect("status --json");
    let siem = &status["sinks"][0];
    assert_eq!(siem["name"], "siem");
    assert_eq!(siem["backlog"], 0);
    assert!(siem["last_error"].is_null(), "{siem}");
}

#[test]
fn a_filter_keeps_out_the_classes_it_does_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "webhook.key", SECRET);
    let alerts = WebhookReceiver::start_on(0, SECRET);
    let admin = WebhookReceiver::start_on(0, SECRET);
    let sink = |name: &str, class: &str, url: String| {
        sink_toml(
            name,
            "webhook",
            &format!("events = [{class:?}]\nurl = {url:?}\nsecret_file = {secret:?}"),
        )
    };
    let sinks = sink("alerts", "alerts", alerts.url()) + &sink("admin", "admin", admin.url());
    let Some(agent) = PolicyAgent::start("sinks-filter", |daemon, _| daemon.extra_config(&sinks))
    else {
        return;
    };
    chat_ok(&agent, "hello");
    let revoked = agent.fx.daemon.cli(
        "revoke",
        &["account:nobody-here", "--reason", "filter test"],
    );
    assert!(revoked.status.success(), "{revoked}");

    let event = wait::until("the revocation at the admin sink", DELIVERY_TIMEOUT, || {
        admin
            .received
            .events()
            .into_iter()
            .find(|e| e["name"] == "revoked")
    });
    assert_eq!(event["class"], "admin");
    let revoked_seq = event["seq"].as_u64().unwrap();
    assert!(
        admin
            .received
            .events()
            .iter()
            .all(|e| e["class"] == "admin"),
        "{:?}",
        admin.received.events()
    );
    // The alerts sink has read past the revocation (its cursor says so) and shipped nothing.
    let cursor = agent.fx.daemon.state_dir().join("sinks/alerts.cursor");
    wait::until(
        "the alerts sink's cursor past the revocation",
        DELIVERY_TIMEOUT,
        || {
            let cursor: Value = serde_json::from_str(&fs::read_to_string(&cursor).ok()?).ok()?;
            (cursor["seq"].as_u64()? >= revoked_seq).then_some(())
        },
    );
    assert!(
        alerts.received.events().is_empty(),
        "{:?}",
        alerts.received.events()
    );
    assert!(
        alerts.received.raw().is_empty(),
        "not even an empty batch was posted"
    );
}
