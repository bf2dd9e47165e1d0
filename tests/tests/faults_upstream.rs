//! The upstream misbehaves: it resets mid-stream, sends malformed SSE, sends a huge header, or
//! stalls before its headers or mid-stream. Each client (the official Python SDK for streams,
//! curl where Warden answers) gets a clean error, each exchange is recorded with its outcome and
//! reason, and the daemon keeps serving.

use std::path::Path;

use serde_json::Value;
use warden_tests::audit::{self, FAKE_KEY};
use warden_tests::curl::{assert_chat_reply, http_code};
use warden_tests::fake_upstream::faults::EVENTS_BEFORE_FAULT;
use warden_tests::sdk_scripts::FIRST_EVENT_LINE;
use warden_tests::{
    require_kernel, require_python, AgentFixture, ClientOutput, FakeUpstream, Fault,
};

/// Short enough that a stall ends the test quickly; the stalls themselves never end.
const UPSTREAM_TIMEOUTS: &str = "[upstream]\nresponse_timeout_secs = 2\nidle_timeout_secs = 2\n";

/// A streamed chat with the prompt `$PROMPT`, no retries; prints what the SDK gave or raised.
const SDK_STREAM: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI(max_retries=0)
pieces = []
try:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": os.environ["PROMPT"]}],
        stream=True,
    )
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                if not pieces:
                    print("warden-test-first-event", flush=True)
                pieces.append(choice.delta.content)
    print(json.dumps({"ok": True, "pieces": pieces}))
except Exception as e:
    print(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e), "pieces": pieces}))
"#;

fn sdk_stream(fx: &AgentFixture, python: &Path, prompt: &str) -> Value {
    let out = audit::sdk_client(fx, python, SDK_STREAM)
        .env("PROMPT", prompt)
        .run();
    out.assert_success();
    out.last_line_json()
}

/// The one exchange whose prompt holds `marker`.
fn recorded(fx: &AgentFixture, marker: &str) -> Value {
    let exported = audit::export(&fx.daemon, &[]);
    let found: Vec<Value> = exported
        .into_iter()
        .filter(|d| {
            d["request"]["body"]["text"]
                .as_str()
                .is_some_and(|t| t.contains(marker))
        })
        .collect();
    assert_eq!(found.len(), 1, "one exchange for {marker}: {found:#?}");
    found.into_iter().next().unwrap()
}

/// Waits for the exchange with `marker` to be closed; asserts its outcome and reason.
fn assert_recorded(fx: &AgentFixture, marker: &str, outcome: &str, reason: &str) -> Value {
    let detail = warden_tests::wait::until(
        &format!("the record of {marker} to be closed"),
        audit::RECORD_TIMEOUT,
        || {
            let detail = recorded(fx, marker);
            (detail["outcome"] != audit::INCOMPLETE).then_some(detail)
        },
    );
    assert_eq!(detail["outcome"], outcome, "{detail:#}");
    assert_eq!(detail["response"]["reason"], reason, "{detail:#}");
    detail
}

/// Warden's own JSON error, as curl got it.
fn warden_error(out: &ClientOutput, status: u16) -> Value {
    assert_eq!(http_code(out), status, "{out}");
    let body: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("Warden's answer is not JSON ({e})\n{out}"));
    let error = &body["error"];
    for key in ["message", "type", "param", "code"] {
        assert!(error.get(key).is_some(), "no error.{key}: {body}");
    }
    body
}

/// A good request still passes: the daemon kept serving.
fn still_serving(fx: &AgentFixture) {
    let out = fx
        .client(audit::curl::chat("gpt-4o-mini", "still serving"))
        .run();
    assert_chat_reply(&out, fx.upstream.reply());
}

fn fixture(e2e: &warden_tests::E2e, name: &str) -> AgentFixture {
    let upstream = FakeUpstream::builder()
        .gate_after(EVENTS_BEFORE_FAULT)
        .start();
    audit::fixture(e2e, name, upstream, |daemon, _| {
        daemon.extra_config(UPSTREAM_TIMEOUTS)
    })
}

#[test]
fn streams_that_break_mid_way_end_the_clients_stream_and_are_recorded() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let fx = fixture(&e2e, "faults-streams");
    let first_piece =
        warden_tests::fake_upstream::openai::reply_pieces(fx.upstream.reply())[0].clone();

    // Reset, once the SDK has the first piece (the upstream waits at its gate for that): the
    // stream it had begun ends with an error, not an end.
    let marker = Fault::ResetMidStream.marker();
    let client = audit::sdk_client(&fx, &python, SDK_STREAM)
        .env("PROMPT", marker)
        .spawn();
    let out = fx
        .upstream
        .assert_first_line_before_gate(client, |l| l == FIRST_EVENT_LINE);
    out.assert_success();
    let got = out.last_line_json();
    assert_eq!(got["ok"], false, "{got}");
    assert_eq!(got["error"], "APIConnectionError", "{got}");
    assert_eq!(got["pieces"], serde_json::json!([first_piece]), "{got}");
    assert_recorded(
        &fx,
        marker,
        "upstream_error",
        "upstream response failed: error reading a body from connection",
    );
    still_serving(&fx);

    // Malformed SSE: passed through as it came (the SDK cannot read it either), recorded as an
    // upstream error although the stream ended with [DONE].
    let marker = Fault::MalformedSse.marker();
    let got = sdk_stream(&fx, &python, marker);
    assert_eq!(got["ok"], false, "{got}");
    assert_eq!(got["error"], "JSONDecodeError", "{got}");
    assert_eq!(got["pieces"], serde_json::json!([first_piece]), "{got}");
    assert_recorded(
        &fx,
        marker,
        "upstream_error",
        "the stream sent 1 event(s) whose data is not JSON of the API's shape; the client then \
         went away",
    );
    still_serving(&fx);

    // Stall mid-stream: cut after idle_timeout_secs of silence; the SDK sees the stream end.
    let marker = Fault::StallMidStream.marker();
    let got = sdk_stream(&fx, &python, marker);
    eprintln!("stall: {got}");
    assert_eq!(got["ok"], false, "{got}");
    assert_recorded(
        &fx,
        marker,
        "timeout",
        "the upstream sent nothing for 2s mid-response ([upstream] idle_timeout_secs)",
    );
    still_serving(&fx);
    audit::assert_verifies(&fx.daemon);
}

#[test]
fn upstreams_that_fail_before_their_body_get_warden_errors_and_are_recorded() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "faults-heads");

    // A huge header: more than the upstream client reads as a response head.
    let marker = Fault::HugeHeader.marker();
    let out = fx.client(audit::curl::chat("gpt-4o-mini", marker)).run();
    let body = warden_error(&out, 502);
    assert_eq!(body["error"]["code"], "upstream_unreachable", "{body}");
    let reason = "message head is too large";
    assert_eq!(
        body["error"]["message"],
        format!("Warden could not reach the upstream api.openai.com: {reason}"),
    );
    assert_recorded(&fx, marker, "upstream_error", reason);
    still_serving(&fx);

    // A stall before the headers: 504 after response_timeout_secs.
    let marker = Fault::StallBeforeHeaders.marker();
    let out = fx.client(audit::curl::chat("gpt-4o-mini", marker)).run();
    let body = warden_error(&out, 504);
    assert_eq!(body["error"]["code"], "upstream_timeout", "{body}");
    let reason = "the upstream sent no response within 2s ([upstream] response_timeout_secs)";
    assert_eq!(
        body["error"]["message"],
        format!("Warden got no answer from the upstream api.openai.com: {reason}"),
    );
    assert_recorded(&fx, marker, "timeout", reason);
    still_serving(&fx);
    audit::assert_verifies(&fx.daemon);
    assert!(!fx.daemon.log_text().contains(FAKE_KEY));
}
