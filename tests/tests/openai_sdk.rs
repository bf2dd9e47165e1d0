//! The official openai Python SDK, unmodified (default base URL, `OpenAI(api_key=...)`), in a
//! selected cgroup: chat, streamed chat, the streamed Responses API and the models list all work
//! through Warden, streams arrive as streams, and each call is logged with the python process.
//!
//! Streams are proven without timing: the upstream sends the first event and holds the rest at its
//! gate; the script reports the first event before the test opens the gate, which a proxy that
//! buffered the response could never make happen.

use std::path::PathBuf;

use serde_json::{json, Value};
use warden_tests::attribution::assert_attributed;
use warden_tests::fake_upstream::openai::MODELS;
use warden_tests::{
    require_kernel, require_python, sdk_scripts, AgentFixture, ClientOutput, FakeUpstream, LogLine,
};

/// The agent is python with the SDK.
struct Sdk {
    fx: AgentFixture,
    python: PathBuf,
}

impl Sdk {
    fn start(name: &str) -> Option<Self> {
        let e2e = require_kernel()?;
        let python = require_python()?;
        let upstream = FakeUpstream::builder().gate_after(1).start();
        let fx = AgentFixture::with_upstream(&e2e, name, upstream);
        Some(Self { fx, python })
    }

    /// Runs a script; returns what it printed and Warden's exchange line for its process.
    fn run(&self, script: &str) -> (Value, LogLine) {
        let out = self
            .fx
            .client([self.python.as_os_str(), "-c".as_ref(), script.as_ref()])
            .run();
        self.check(&out, ClientOutput::json)
    }

    /// Runs a streaming script, opening the upstream's gate only once the script has reported the
    /// first event; returns what it printed last and Warden's exchange line for its process.
    fn run_streamed(&self, script: &str) -> (Value, LogLine) {
        let running = self
            .fx
            .client([self.python.as_os_str(), "-c".as_ref(), script.as_ref()])
            .spawn();
        let out = self
            .fx
            .upstream
            .assert_first_line_before_gate(running, |line| line == sdk_scripts::FIRST_EVENT_LINE);
        self.check(&out, ClientOutput::last_line_json)
    }

    fn check(&self, out: &ClientOutput, parse: fn(&ClientOutput) -> Value) -> (Value, LogLine) {
        out.assert_success();
        let printed = parse(out);
        let pid = printed["pid"].as_u64().expect("the script prints its pid") as u32;
        let exe = PathBuf::from(printed["exe"].as_str().expect("the script prints its exe"));
        let line = self.fx.daemon.wait_for_exchange(pid);
        assert_attributed(&line, pid, &exe, self.fx.agent.path());
        assert_eq!(line.str("host"), Some("api.openai.com"), "{line}");
        assert_eq!(line.u64("status"), Some(200), "{line}");
        (printed, line)
    }
}

#[test]
fn chat_completion() {
    let Some(sdk) = Sdk::start("sdk-chat") else {
        return;
    };
    let (printed, line) = sdk.run(sdk_scripts::CHAT);

    assert_eq!(printed["content"], sdk.fx.upstream.reply());
    assert_eq!(printed["model"], "gpt-4o-mini");
    assert!(printed["total_tokens"].as_u64().is_some_and(|t| t > 0));

    assert_eq!(line.str("method"), Some("POST"), "{line}");
    assert_eq!(line.str("path"), Some("/v1/chat/completions"), "{line}");
    assert_eq!(line.str("model"), Some("gpt-4o-mini"), "{line}");
    assert_eq!(line.bool("streamed"), Some(false), "{line}");
    let seen = sdk.fx.upstream.requests();
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test"));
}

#[test]
fn streamed_chat_completion_arrives_chunk_by_chunk() {
    let Some(sdk) = Sdk::start("sdk-stream") else {
        return;
    };
    let (printed, line) = sdk.run_streamed(sdk_scripts::CHAT_STREAM);

    let pieces: Vec<&str> = printed["pieces"]
        .as_array()
        .expect("pieces")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        pieces.len() >= 3,
        "the reply comes in several chunks: {pieces:?}"
    );
    assert_eq!(pieces.concat(), sdk.fx.upstream.reply());
    assert_eq!(printed["models"], json!(["gpt-4o"]));
    assert!(
        printed["total_tokens"].as_u64().is_some_and(|t| t > 0),
        "usage chunk: {printed}"
    );

    assert_eq!(line.str("path"), Some("/v1/chat/completions"), "{line}");
    assert_eq!(line.str("model"), Some("gpt-4o"), "{line}");
    assert_eq!(line.bool("streamed"), Some(true), "{line}");
}

#[test]
fn streamed_responses_api() {
    let Some(sdk) = Sdk::start("sdk-responses") else {
        return;
    };
    let (printed, line) = sdk.run_streamed(sdk_scripts::RESPONSES_STREAM);

    let types: Vec<&str> = printed["types"]
        .as_array()
        .expect("types")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types.first(), Some(&"response.created"));
    assert_eq!(types.last(), Some(&"response.completed"));
    let deltas: Vec<&str> = printed["deltas"]
        .as_array()
        .expect("deltas")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(deltas.len() >= 3, "{deltas:?}");
    assert_eq!(deltas.concat(), sdk.fx.upstream.reply());
    assert_eq!(printed["completed"]["output_text"], sdk.fx.upstream.reply());
    assert_eq!(printed["completed"]["model"], "gpt-4o-mini");

    assert_eq!(line.str("path"), Some("/v1/responses"), "{line}");
    assert_eq!(line.str("model"), Some("gpt-4o-mini"), "{line}");
    assert_eq!(line.bool("streamed"), Some(true), "{line}");
}

#[test]
fn models_list() {
    let Some(sdk) = Sdk::start("sdk-models") else {
        return;
    };
    let (printed, line) = sdk.run(sdk_scripts::MODELS);

    assert_eq!(printed["ids"], json!(MODELS));
    assert_eq!(line.str("method"), Some("GET"), "{line}");
    assert_eq!(line.str("path"), Some("/v1/models"), "{line}");
    assert_eq!(line.bool("streamed"), Some(false), "{line}");
    assert!(
        !line.has("model"),
        "a request without a JSON body has no model: {line}"
    );
}
