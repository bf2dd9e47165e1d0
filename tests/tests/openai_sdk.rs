//! The official openai Python SDK, unmodified (default base URL, `OpenAI(api_key=...)`), in a
//! selected cgroup: chat, streamed chat, the streamed Responses API and the models list all work
//! through Warden, streams arrive as streams, and each call is logged with the python process.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use warden_tests::attribution::assert_attributed;
use warden_tests::fake_upstream::openai::MODELS;
use warden_tests::{require_kernel, require_python, sdk_scripts, AgentFixture, LogLine};

/// The stream's events are 100 ms apart at the upstream; a proxy that buffered the stream would
/// deliver them all at once.
const CHUNK_DELAY: Duration = Duration::from_millis(100);

/// The agent is python with the SDK.
struct Sdk {
    fx: AgentFixture,
    python: PathBuf,
}

impl Sdk {
    fn start(name: &str) -> Option<Self> {
        let e2e = require_kernel()?;
        let python = require_python()?;
        let fx = AgentFixture::with_chunk_delay(&e2e, name, CHUNK_DELAY);
        Some(Self { fx, python })
    }

    /// Runs a script; returns what it printed and Warden's exchange line for its process.
    fn run(&self, script: &str) -> (Value, LogLine) {
        let out = self
            .fx
            .client([self.python.as_os_str(), "-c".as_ref(), script.as_ref()])
            .run();
        out.assert_success();
        let printed = out.json();
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
    let (printed, line) = sdk.run(sdk_scripts::CHAT_STREAM);

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
    let spread = printed["spread_seconds"].as_f64().unwrap_or_default();
    let sent_over = CHUNK_DELAY.as_secs_f64() * (pieces.len() - 1) as f64;
    assert!(
        spread >= sent_over / 2.0,
        "chunks sent over {sent_over:.2}s arrived within {spread:.2}s: the stream was buffered"
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
    let (printed, line) = sdk.run(sdk_scripts::RESPONSES_STREAM);

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
    let spread = printed["spread_seconds"].as_f64().unwrap_or_default();
    let sent_over = CHUNK_DELAY.as_secs_f64() * (deltas.len() - 1) as f64;
    assert!(
        spread >= sent_over / 2.0,
        "buffered: {spread:.2}s < {sent_over:.2}s / 2"
    );

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
