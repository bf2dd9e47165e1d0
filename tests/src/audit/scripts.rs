//! Client programs for the official `openai` Python SDK (key from `OPENAI_API_KEY`, default base
//! URL) that print, as one JSON object, what they got back: the text, usage and their own pid/exe,
//! so a test can compare it with the audit record.
//!
//! The streaming ones first print [`FIRST_TEXT_LINE`] the moment the first piece of text arrives,
//! so their JSON is the last line ([`ClientOutput::last_line_json`](crate::ClientOutput::last_line_json)).

/// What [`CHAT_STREAM`] and [`RESPONSES_STREAM`] print (and flush) on receiving the first piece of
/// text: with an upstream that holds the rest of the stream at its gate, seeing it proves that the
/// text went through Warden before anything the gate held back.
pub const FIRST_TEXT_LINE: &str = "warden-test-first-text";

/// A non-streamed chat completion.
pub const CHAT: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI()
r = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello"}],
)
print(json.dumps({
    "pid": os.getpid(), "exe": os.readlink("/proc/self/exe"),
    "model": r.model, "text": r.choices[0].message.content,
    "usage": {"input_tokens": r.usage.prompt_tokens, "output_tokens": r.usage.completion_tokens,
              "total_tokens": r.usage.total_tokens},
}))
"#;

/// A streamed chat completion with the usage chunk.
pub const CHAT_STREAM: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI()
stream = client.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "user", "content": "Say hello"}],
    stream=True,
    stream_options={"include_usage": True},
)
pieces, usage = [], None
for chunk in stream:
    if chunk.usage is not None:
        usage = {"input_tokens": chunk.usage.prompt_tokens,
                 "output_tokens": chunk.usage.completion_tokens,
                 "total_tokens": chunk.usage.total_tokens}
    for choice in chunk.choices:
        if choice.delta.content:
            if not pieces:
                print("warden-test-first-text", flush=True)
            pieces.append(choice.delta.content)
print(json.dumps({
    "pid": os.getpid(), "exe": os.readlink("/proc/self/exe"),
    "pieces": pieces, "text": "".join(pieces), "usage": usage,
}))
"#;

/// A streamed Responses API call.
pub const RESPONSES_STREAM: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI()
stream = client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True)
deltas, usage = [], None
for event in stream:
    if event.type == "response.output_text.delta":
        if not deltas:
            print("warden-test-first-text", flush=True)
        deltas.append(event.delta)
    elif event.type == "response.completed":
        u = event.response.usage
        usage = {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                 "total_tokens": u.total_tokens}
print(json.dumps({
    "pid": os.getpid(), "exe": os.readlink("/proc/self/exe"),
    "pieces": deltas, "text": "".join(deltas), "usage": usage,
}))
"#;

/// A streamed chat completion the client walks away from after two pieces of text: it closes the
/// response and exits while the upstream is still sending.
pub const ABORTED_STREAM: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI(max_retries=0)
stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Tell me a long story"}],
    stream=True,
)
pieces = []
for chunk in stream:
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
    if len(pieces) >= 2:
        break
stream.close()
client.close()
print(json.dumps({"pid": os.getpid(), "pieces": pieces, "text": "".join(pieces)}), flush=True)
os._exit(0)
"#;

/// One worker of a load: up to `COUNT` chat completions in a row (for at most `SECONDS`), each
/// with the unique marker `audit-load-w{WORKER}-r{i}-end` in its user message. Errors (the daemon
/// may be gone) are counted, not raised. Prints `{"ok": n, "failed": n}`.
pub const LOAD: &str = r#"
import json, os, time
from openai import OpenAI

worker = os.environ["WORKER"]
count = int(os.environ["COUNT"])
deadline = time.monotonic() + float(os.environ["SECONDS"])
client = OpenAI(max_retries=0, timeout=10)
ok = failed = 0
for i in range(count):
    if time.monotonic() > deadline:
        break
    marker = f"audit-load-w{worker}-r{i}-end"
    try:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Remember {marker} please"}],
        )
        ok += 1
    except Exception:
        failed += 1
        time.sleep(0.05)
print(json.dumps({"ok": ok, "failed": failed}), flush=True)
"#;

/// The prefix of every [`LOAD`] marker.
pub const LOAD_MARKER_PREFIX: &str = "audit-load-w";

/// Every complete [`LOAD`] marker in `text` (a truncated one at the end is not a marker).
pub fn load_markers(text: &str) -> Vec<String> {
    let mut markers = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(LOAD_MARKER_PREFIX) {
        let candidate = &rest[start..];
        let after = &candidate[LOAD_MARKER_PREFIX.len()..];
        let worker_len = after.bytes().take_while(u8::is_ascii_digit).count();
        let after_worker = &after[worker_len..];
        if worker_len > 0 {
            if let Some(run) = after_worker.strip_prefix("-r") {
                let run_len = run.bytes().take_while(u8::is_ascii_digit).count();
                if run_len > 0 && run[run_len..].starts_with("-end") {
                    let len = LOAD_MARKER_PREFIX.len() + worker_len + 2 + run_len + 4;
                    markers.push(candidate[..len].to_owned());
                }
            }
        }
        rest = &candidate[LOAD_MARKER_PREFIX.len()..];
    }
    markers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_scripts_announce_their_first_text() {
        let announce = format!("print(\"{FIRST_TEXT_LINE}\", flush=True)");
        for script in [CHAT_STREAM, RESPONSES_STREAM] {
            assert_eq!(script.matches(&announce).count(), 1, "{script}");
        }
    }

    #[test]
    fn finds_complete_markers_only() {
        let text = r#"{"content":"Remember audit-load-w3-r12-end please"} audit-load-w1-r1"#;
        assert_eq!(load_markers(text), vec!["audit-load-w3-r12-end"]);
        assert_eq!(
            load_markers("audit-load-w0-r0-end audit-load-w-r1-end audit-load-w7-r9-end"),
            vec!["audit-load-w0-r0-end", "audit-load-w7-r9-end"]
        );
        assert!(load_markers("audit-load-w2-r1-en").is_empty());
    }
}
