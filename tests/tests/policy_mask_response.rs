//! Response-side masking, end to end with the official openai Python SDK: an email address and a
//! credit card number in the model's reply reach the SDK as `[EMAIL]` and `[CREDIT_CARD]`, in a
//! JSON body and in chat and Responses streams where a value is split across deltas, without any
//! event revealing a fragment of it; the audit store keeps only the masked form plus a count per
//! rule and recognizer, and neither its files nor the log hold the originals. A mask rule for
//! requests only leaves responses alone (and masks the prompt).

use serde_json::{json, Value};
use warden_tests::audit::{self, sqlite};
use warden_tests::policy::{chat_request, mask_rule, PolicyAgent};
use warden_tests::FakeUpstream;

const RULE: &str = "mask-pii";
const EMAIL: &str = "alice@example.com";
const CARD: &str = "4111 1111 1111 1111";

/// The reply, split where it hurts: inside the email and inside the card number.
const DELTAS: [&str; 3] = [
    "Contact alice@exa",
    "mple.com now, card 4111 1111 ",
    "1111 1111 is on file.",
];
const MASKED: &str = "Contact [EMAIL] now, card [CREDIT_CARD] is on file.";

/// What no byte the agent receives (nor the store, nor the log) may hold: the originals, the card
/// without spaces, and every piece of them a split delta would carry.
const FRAGMENTS: [&str; 8] = [
    EMAIL,
    CARD,
    "4111111111111111",
    "alice",
    "@exa",
    "mple.com",
    "4111",
    "1111 1111",
];

/// A streamed chat completion: every chunk as the SDK parsed it, the content pieces and the finish
/// reasons. The loop ending without an exception is the SDK having handled `[DONE]`.
const SDK_CHAT_STREAM: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI()
stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello"}],
    stream=True,
    stream_options={"include_usage": True},
)
chunks, pieces, finish = [], [], []
for chunk in stream:
    chunks.append(chunk.model_dump_json())
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish.append(choice.finish_reason)
print(json.dumps({"pid": os.getpid(), "chunks": chunks, "pieces": pieces, "finish": finish}))
"#;

/// A streamed Responses API call: every event as the SDK parsed it, the text deltas, the done
/// text and the completed response's `output_text`.
const SDK_RESPONSES_STREAM: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI()
stream = client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True)
events, types, deltas, done, completed = [], [], [], None, None
for event in stream:
    events.append(event.model_dump_json())
    types.append(event.type)
    if event.type == "response.output_text.delta":
        deltas.append(event.delta)
    elif event.type == "response.output_text.done":
        done = event.text
    elif event.type == "response.completed":
        completed = event.response.output_text
print(json.dumps({"pid": os.getpid(), "events": events, "types": types, "deltas": deltas,
                  "done": done, "completed": completed}))
"#;

fn mask_policy(direction: &str) -> String {
    mask_rule(RULE, direction, &["email", "credit_card"])
}

/// An agent under a `direction` mask rule whose upstream replies with [`DELTAS`].
fn start(name: &str, direction: &str) -> Option<PolicyAgent> {
    let upstream = FakeUpstream::builder()
        .stream_deltas(DELTAS)
        .chunk_delay(std::time::Duration::from_millis(50))
        .start();
    PolicyAgent::with_upstream(name, upstream, |daemon, _| {
        daemon.policy_file("mask.toml", &mask_policy(direction))
    })
}

/// Runs an SDK script as the agent; returns what it printed last.
fn run(agent: &PolicyAgent, script: &str) -> Value {
    let out = audit::sdk_client(&agent.fx, &agent.python, script).run();
    out.assert_success();
    out.last_line_json()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn assert_no_fragments(what: &str, bytes: &[u8]) {
    for fragment in FRAGMENTS {
        assert!(
            !contains(bytes, fragment),
            "{what} holds {fragment:?}: {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Waits for the only exchange; asserts it ended well with the expected response mask counts and
/// that nothing `sessions show`, the store's files or the log hold reveals the originals. Returns
/// its `sessions show` object.
fn assert_recorded_masked(agent: &PolicyAgent) -> Value {
    let summary = audit::wait_for_finished(&agent.fx.daemon, 1).remove(0);
    assert_eq!(summary["outcome"], "ok", "{summary:#}");
    let id = summary["id"].as_str().expect("an id");
    let raw = audit::show_raw(&agent.fx.daemon, id);
    assert_no_fragments("`sessions show --json`", raw.stdout.as_bytes());
    let detail: Value = serde_json::from_str(raw.stdout.trim()).expect("sessions show JSON");
    assert_eq!(
        detail["response"]["masked"],
        json!({ RULE: { "EMAIL": 1, "CREDIT_CARD": 1 } }),
        "response.masked: per rule, per recognizer, each value once\n{detail:#}"
    );
    for path in sqlite::store_files(&audit::db_path(&agent.fx.daemon)) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for fragment in FRAGMENTS {
            assert!(
                !contains(&bytes, fragment),
                "{} holds {fragment:?}",
                path.display()
            );
        }
    }
    let log = agent.fx.daemon.log_text();
    for fragment in FRAGMENTS {
        assert!(!log.contains(fragment), "the daemon log holds {fragment:?}");
    }
    detail
}

#[test]
fn pii_in_a_chat_completion_reaches_the_sdk_masked_and_is_stored_masked() {
    let Some(agent) = start("policy-mask-resp-chat", "response") else {
        return;
    };
    assert!(agent.fx.upstream.reply().contains(EMAIL) && agent.fx.upstream.reply().contains(CARD));

    let call = agent.chat(&chat_request("gpt-4o-mini", "Say hello"));
    assert_eq!(call.assert_allowed(), MASKED, "{:#}", call.printed);
    assert_no_fragments("what the SDK printed", call.out.stdout.as_bytes());

    let detail = assert_recorded_masked(&agent);
    let response = &detail["response"];
    assert_eq!(response["streamed"], false, "{detail:#}");
    let body = response["body"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no response body text: {detail:#}"));
    let body: Value = serde_json::from_str(body).expect("the recorded response body is JSON");
    assert_eq!(
        body["choices"][0]["message"]["content"], MASKED,
        "{detail:#}"
    );
    assert_eq!(response["assembled"]["text"], MASKED, "{detail:#}");
}

#[test]
fn a_match_split_across_chat_stream_deltas_is_masked_without_revealing_a_fragment() {
    let Some(agent) = start("policy-mask-resp-stream", "both") else {
        return;
    };
    let printed = run(&agent, SDK_CHAT_STREAM);

    let pieces = strings(&printed["pieces"]);
    assert_eq!(pieces.concat(), MASKED, "{printed:#}");
    assert_eq!(
        pieces.first(),
        Some(&"Contact "),
        "text that cannot start a match is released at once, not held with the email: {printed:#}"
    );
    for chunk in strings(&printed["chunks"]) {
        assert_no_fragments("a chunk the SDK received", chunk.as_bytes());
    }
    assert_eq!(printed["finish"], json!(["stop"]), "{printed:#}");
    let last: Value = serde_json::from_str(strings(&printed["chunks"]).last().copied().unwrap())
        .expect("chunk JSON");
    assert!(
        last["usage"]["total_tokens"]
            .as_u64()
            .is_some_and(|t| t > 0),
        "the usage chunk still ends the stream: {printed:#}"
    );

    let detail = assert_recorded_masked(&agent);
    assert_eq!(detail["response"]["streamed"], true, "{detail:#}");
    assert_eq!(
        detail["response"]["assembled"]["text"], MASKED,
        "{detail:#}"
    );
}

#[test]
fn a_match_split_across_responses_output_text_deltas_is_masked() {
    let Some(agent) = start("policy-mask-resp-responses", "response") else {
        return;
    };
    let printed = run(&agent, SDK_RESPONSES_STREAM);

    let types = strings(&printed["types"]);
    assert_eq!(types.first(), Some(&"response.created"), "{printed:#}");
    assert_eq!(types.last(), Some(&"response.completed"), "{printed:#}");
    assert_eq!(strings(&printed["deltas"]).concat(), MASKED, "{printed:#}");
    assert_eq!(printed["done"], MASKED, "output_text.done: {printed:#}");
    assert_eq!(
        printed["completed"], MASKED,
        "response.output_text of the completed event: {printed:#}"
    );
    for event in strings(&printed["events"]) {
        assert_no_fragments("an event the SDK received", event.as_bytes());
    }

    let detail = assert_recorded_masked(&agent);
    assert_eq!(detail["response"]["streamed"], true, "{detail:#}");
}

#[test]
fn a_mask_rule_for_requests_only_leaves_responses_alone() {
    let Some(agent) = start("policy-mask-req-only", "request") else {
        return;
    };
    let reply = DELTAS.concat();

    let call = agent.chat(&chat_request("gpt-4o-mini", "Say hello"));
    assert_eq!(call.assert_allowed(), reply, "{:#}", call.printed);
    let printed = run(&agent, SDK_CHAT_STREAM);
    assert_eq!(
        strings(&printed["pieces"]),
        DELTAS,
        "the stream went unchanged, delta by delta: {printed:#}"
    );

    for summary in audit::wait_for_finished(&agent.fx.daemon, 2) {
        let detail = audit::show(&agent.fx.daemon, summary["id"].as_str().expect("an id"));
        let masked = &detail["response"]["masked"];
        assert!(
            masked.is_null() || masked == &json!({}),
            "nothing was masked in the response: {detail:#}"
        );
        assert_eq!(detail["response"]["assembled"]["text"], reply, "{detail:#}");
    }

    // The rule is in force: a prompt with an email address reaches the upstream masked.
    agent
        .chat(&chat_request("gpt-4o-mini", &format!("Write to {EMAIL}")))
        .assert_allowed();
    let requests = agent.fx.upstream.requests();
    let last = requests.last().expect("the upstream got the prompt");
    assert_eq!(
        last.json()["messages"][0]["content"],
        "Write to [EMAIL]",
        "the request was masked"
    );
}
