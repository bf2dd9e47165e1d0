//! The audit store records what the official openai Python SDK did through Warden: one exchange
//! per call with the caller's identity, model, endpoint, usage and the text the SDK got, the key
//! only as a fingerprint, stream events with their offsets, a replayable timeline, an export, and
//! a `client_aborted` record with the partial text when the client walks away mid-stream.
//!
//! That stream events are recorded when they arrive is checked without timing: the upstream holds
//! everything after the first piece of text at its gate until the client has reported that text,
//! so each event is on one side of the moment the test opens the gate, and its recorded time must
//! be on that side too.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::{self, gated, scripts, sqlite};
use warden_tests::fake_upstream::openai;
use warden_tests::{require_kernel, require_python, AgentFixture, FakeUpstream};

/// Words no prompt or CLI label contains, so the replay can be searched for each one.
const REPLY: &str = "Alpha Bravo Charlie Delta Echo Foxtrot Golf Hotel";
/// The first piece of [`REPLY`] a stream sends.
const FIRST_PIECE: &str = "Alpha";

/// The agent is python with the SDK, its upstream answers with [`REPLY`].
struct Sdk {
    fx: AgentFixture,
    python: PathBuf,
}

impl Sdk {
    fn start(name: &str, upstream: FakeUpstream) -> Option<Self> {
        let e2e = require_kernel()?;
        let python = require_python()?;
        let fx = audit::fixture(&e2e, name, upstream, |daemon, _| daemon);
        Some(Self { fx, python })
    }

    fn with_reply(name: &str) -> Option<Self> {
        Self::start(name, FakeUpstream::builder().reply(REPLY).start())
    }

    /// The upstream streams [`REPLY`] and holds back its events from index `gate` on until the
    /// test opens its gate.
    fn gated(name: &str, gate: usize) -> Option<Self> {
        let upstream = FakeUpstream::builder()
            .reply(REPLY)
            .gate_after(gate)
            .start();
        Self::start(name, upstream)
    }

    /// Runs a script; returns what it printed (last, for a streaming one).
    fn run(&self, script: &str) -> Value {
        let out = audit::sdk_client(&self.fx, &self.python, script).run();
        out.assert_success();
        out.last_line_json()
    }

    /// Runs a streaming script against the gated upstream ([`gated::run`]); returns what it
    /// printed last and the wall-clock time (unix µs) read right before the gate opened.
    fn run_gated(&self, script: &str) -> (Value, i64) {
        let (out, gate_open_us) = gated::run(&self.fx, &self.python, script);
        (out.last_line_json(), gate_open_us)
    }

    /// The store's only exchange, once finished: its `sessions list` and `sessions show` objects.
    fn only_exchange(&self) -> (Value, Value) {
        let summary = audit::wait_for_finished(&self.fx.daemon, 1).remove(0);
        let id = summary["id"].as_str().expect("an id").to_owned();
        let detail = audit::show(&self.fx.daemon, &id);
        assert_eq!(detail["id"], summary["id"], "{detail:#}");
        (summary, detail)
    }
}

/// What a finished SDK call must have left in the store.
struct Expected<'a> {
    model: &'a str,
    endpoint: &'a str,
    path: &'a str,
    streamed: bool,
}

fn pid_and_exe(printed: &Value) -> (u32, PathBuf) {
    let pid = printed["pid"].as_u64().expect("the script prints its pid") as u32;
    let exe = PathBuf::from(printed["exe"].as_str().expect("the script prints its exe"));
    (pid, exe)
}

fn assert_number(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} should be a number, is {value}"))
}

/// Checks the exchange against what the SDK printed and what the call was.
fn assert_recorded(
    sdk: &Sdk,
    printed: &Value,
    expected: &Expected,
    (summary, detail): &(Value, Value),
) {
    let (pid, exe) = pid_and_exe(printed);
    let cgroup = sdk.fx.agent.path();
    let exe_text = exe.display().to_string();

    // `sessions list`
    assert_eq!(summary["pid"], pid, "{summary:#}");
    assert_eq!(summary["exe"], exe_text.as_str(), "{summary:#}");
    assert_eq!(summary["uid"], 0, "{summary:#}");
    assert_eq!(summary["user"], "root", "{summary:#}");
    assert_eq!(summary["cgroup"], cgroup, "{summary:#}");
    assert_eq!(summary["model"], expected.model, "{summary:#}");
    assert_eq!(summary["endpoint"], expected.endpoint, "{summary:#}");
    assert_eq!(summary["outcome"], "ok", "{summary:#}");
    assert_eq!(summary["status"], 200, "{summary:#}");
    let usage = &printed["usage"];
    assert!(
        usage["total_tokens"].as_u64().is_some_and(|t| t > 0),
        "{printed}"
    );
    for field in ["input_tokens", "output_tokens", "total_tokens"] {
        assert_eq!(summary[field], usage[field], "{field} in {summary:#}");
    }
    assert_number(&summary["duration_ms"], "list duration_ms");

    // `sessions show`
    audit::assert_identity(detail, pid, &exe, cgroup);
    let request = &detail["request"];
    assert_eq!(detail["outcome"], "ok", "{detail:#}");
    assert_eq!(request["method"], "POST", "{detail:#}");
    assert_eq!(request["host"], "api.openai.com", "{detail:#}");
    assert_eq!(request["path"], expected.path, "{detail:#}");
    assert_eq!(request["endpoint"], expected.endpoint, "{detail:#}");
    assert_eq!(request["model"], expected.model, "{detail:#}");
    assert!(
        request["body"]["text"]
            .as_str()
            .is_some_and(|b| b.contains("Say hello")),
        "the request body is recorded: {detail:#}"
    );
    audit::assert_authorization_fingerprint(detail);
    let response = &detail["response"];
    assert_eq!(response["status"], 200, "{detail:#}");
    assert_eq!(response["streamed"], expected.streamed, "{detail:#}");
    assert_eq!(response["outcome"], "ok", "{detail:#}");
    let assembled = &response["assembled"];
    assert_eq!(
        assembled["text"], printed["text"],
        "assembled text in {detail:#}"
    );
    assert_eq!(printed["text"], sdk.fx.upstream.reply(), "{printed}");
    for field in ["input_tokens", "output_tokens", "total_tokens"] {
        assert_eq!(
            assembled["usage"][field], usage[field],
            "usage.{field} in {detail:#}"
        );
    }
    let ttfb = assert_number(&response["ttfb_ms"], "ttfb_ms");
    let duration = assert_number(&response["duration_ms"], "duration_ms");
    assert!(
        ttfb <= duration,
        "ttfb {ttfb} ms after the end {duration} ms"
    );

    // The key itself is nowhere: not in what `show` prints, not in the store's files, not logged.
    let shown = audit::show_raw(&sdk.fx.daemon, detail["id"].as_str().unwrap_or_default());
    assert!(!shown.stdout.contains(audit::KEY_SECRET), "{shown}");
    audit::assert_key_not_stored(&sdk.fx.daemon);
}

/// The stream's events were recorded as they arrived ([`gated::assert_events_around_gate`]), each
/// piece of text in one of them.
fn assert_stream_events(detail: &Value, pieces: usize, gate: usize, gate_open_us: i64) {
    let events = detail["response"]["events"].as_array().map_or(0, Vec::len);
    assert!(
        events > pieces,
        "{events} events for {pieces} pieces: {detail:#}"
    );
    gated::assert_events_around_gate(detail, gate, gate_open_us);
}

#[test]
fn a_chat_completion_is_recorded_with_identity_usage_and_text() {
    let Some(sdk) = Sdk::with_reply("audit-chat") else {
        return;
    };
    let printed = sdk.run(scripts::CHAT);
    let exchange = sdk.only_exchange();
    let expected = Expected {
        model: "gpt-4o-mini",
        endpoint: "chat.completions",
        path: "/v1/chat/completions",
        streamed: false,
    };
    assert_recorded(&sdk, &printed, &expected, &exchange);
    let detail = &exchange.1;
    assert!(
        detail["response"]["body"]["text"]
            .as_str()
            .is_some_and(|b| b.contains(REPLY)),
        "the response body is recorded: {detail:#}"
    );
}

#[test]
fn a_streamed_chat_is_recorded_with_its_events_and_replays_in_order() {
    let gate = gated::after_first_text(
        &openai::chat_completion_events("gpt-4o", REPLY, true),
        FIRST_PIECE,
    );
    let Some(sdk) = Sdk::gated("audit-stream", gate) else {
        return;
    };
    let (printed, gate_open_us) = sdk.run_gated(scripts::CHAT_STREAM);
    let exchange = sdk.only_exchange();
    let expected = Expected {
        model: "gpt-4o",
        endpoint: "chat.completions",
        path: "/v1/chat/completions",
        streamed: true,
    };
    assert_recorded(&sdk, &printed, &expected, &exchange);
    let (_, detail) = &exchange;
    assert_eq!(detail["request"]["params"]["stream"], true, "{detail:#}");
    let pieces: Vec<&str> = printed["pieces"]
        .as_array()
        .expect("pieces")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(pieces.len() >= 3, "{pieces:?}");
    assert_stream_events(detail, pieces.len(), gate, gate_open_us);

    // The replay: the request first, then every delta in order with its offset, then the outcome.
    let id = detail["id"].as_str().expect("an id");
    let text = audit::replay(&sdk.fx.daemon, id);
    let timeline = audit::replay_lines(&text);
    let first = timeline
        .first()
        .unwrap_or_else(|| panic!("no timeline lines:\n{text}"));
    assert!(
        first.1.contains("request")
            && first.1.contains("POST")
            && first.1.contains("/v1/chat/completions"),
        "the timeline starts with the request:\n{text}"
    );
    assert!(
        text.contains("Say hello"),
        "the replay shows the prompt:\n{text}"
    );
    let last = timeline.last().expect("not empty");
    assert!(
        last.1.contains("outcome") && last.1.contains("ok"),
        "the timeline ends with the outcome:\n{text}"
    );
    let mut offsets = Vec::new();
    let mut from = 1;
    for piece in &pieces {
        let found = timeline[from..timeline.len() - 1]
            .iter()
            .position(|(_, line)| line.contains(piece.trim()))
            .unwrap_or_else(|| panic!("delta {piece:?} missing or out of order in:\n{text}"));
        offsets.push(timeline[from + found].0);
        from += found + 1;
    }
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]),
        "delta offsets go back in time: {offsets:?}\n{text}"
    );
    // The first piece is the last event before the gate; the client reported it, and only then
    // did the test let the upstream send the others, so Warden got each of them after the first.
    assert!(
        offsets[1..].iter().all(|later| offsets[0] < *later),
        "the replay puts deltas sent after the gate at the first one's offset or before it \
         ({offsets:?}): its offsets are not when the deltas arrived\n{text}"
    );
}

#[test]
fn a_streamed_responses_call_is_recorded() {
    let gate = gated::after_first_text(&openai::response_events("gpt-4o-mini", REPLY), FIRST_PIECE);
    let Some(sdk) = Sdk::gated("audit-responses", gate) else {
        return;
    };
    let (printed, gate_open_us) = sdk.run_gated(scripts::RESPONSES_STREAM);
    let exchange = sdk.only_exchange();
    let expected = Expected {
        model: "gpt-4o-mini",
        endpoint: "responses",
        path: "/v1/responses",
        streamed: true,
    };
    assert_recorded(&sdk, &printed, &expected, &exchange);
    let pieces = printed["pieces"].as_array().map_or(0, Vec::len);
    assert!(pieces >= 3, "{printed}");
    assert_stream_events(&exchange.1, pieces, gate, gate_open_us);
}

#[test]
fn a_client_that_leaves_mid_stream_leaves_a_client_aborted_record_with_partial_text() {
    // 20 words 200 ms apart: the stream would take 4 s; the client leaves after two.
    let reply: String = (1..=20)
        .map(|i| format!("word{i:02}"))
        .collect::<Vec<_>>()
        .join(" ");
    let upstream = FakeUpstream::builder()
        .reply(&reply)
        .chunk_delay(Duration::from_millis(200))
        .start();
    let Some(sdk) = Sdk::start("audit-abort", upstream) else {
        return;
    };
    let printed = sdk.run(scripts::ABORTED_STREAM);
    let received = printed["text"].as_str().expect("text").to_owned();
    assert!(!received.is_empty(), "{printed}");

    let (summary, detail) = sdk.only_exchange();
    assert_eq!(summary["outcome"], "client_aborted", "{summary:#}");
    assert_eq!(detail["outcome"], "client_aborted", "{detail:#}");
    assert_eq!(
        detail["response"]["outcome"], "client_aborted",
        "{detail:#}"
    );
    let pid = printed["pid"].as_u64().expect("the script prints its pid");
    assert_eq!(detail["request"]["identity"]["pid"], pid, "{detail:#}");
    let partial = detail["response"]["assembled"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no partial text recorded: {detail:#}"));
    assert!(!partial.is_empty(), "the partial text is kept: {detail:#}");
    assert!(
        reply.starts_with(partial) && partial.len() < reply.len(),
        "the partial text {partial:?} is a proper prefix of the reply {reply:?}"
    );
    assert!(
        partial.starts_with(&received),
        "what the client got ({received:?}) was forwarded, so it is in the record ({partial:?})"
    );
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_store_is_private_in_wal_mode_and_exports_one_object_per_exchange() {
    let Some(sdk) = Sdk::with_reply("audit-store") else {
        return;
    };
    sdk.run(scripts::CHAT);
    sdk.run(scripts::CHAT_STREAM);
    let listed = audit::wait_for_finished(&sdk.fx.daemon, 2);

    let db = audit::db_path(&sdk.fx.daemon);
    for path in sqlite::store_files(&db) {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    let dir = db.parent().expect("the store is in the state dir");
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    assert_eq!(sqlite::query(&db, "PRAGMA journal_mode"), "wal");
    audit::assert_key_not_stored(&sdk.fx.daemon);

    let exported = audit::export(&sdk.fx.daemon, &[]);
    assert_eq!(exported.len(), 2, "{exported:#?}");
    let mut newest_first = audit::ids(&exported);
    newest_first.reverse();
    assert_eq!(newest_first, audit::ids(&listed), "export is oldest first");
    for detail in &exported {
        assert!(detail["request"].is_object(), "{detail:#}");
        assert!(detail["response"].is_object(), "{detail:#}");
        assert_eq!(detail["outcome"], "ok", "{detail:#}");
    }
    assert_eq!(exported[0]["response"]["streamed"], false);
    assert_eq!(exported[1]["response"]["streamed"], true);
}
