//! Client programs for the official `openai` SDKs (Python, and Node through the npm package),
//! unmodified usage with the default base URL.
//!
//! Each prints one JSON object with its pid and executable (as the process itself sees them) and
//! what it got back, so a test can compare the response and Warden's log line for that process.
//! The streaming ones first print [`FIRST_EVENT_LINE`] the moment the first event arrives, so the
//! JSON is their last line ([`ClientOutput::last_line_json`](crate::ClientOutput::last_line_json)).

/// What the streaming scripts print (and flush) as soon as the SDK hands them the first event.
pub const FIRST_EVENT_LINE: &str = "warden-test-first-event";

/// A non-streamed chat completion.
pub const CHAT: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI(api_key="sk-test")
r = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello"}],
)
print(json.dumps({
    "pid": os.getpid(), "exe": os.readlink("/proc/self/exe"),
    "model": r.model, "content": r.choices[0].message.content,
    "total_tokens": r.usage.total_tokens,
}))
"#;

/// A streamed chat completion: the content pieces, models and usage.
pub const CHAT_STREAM: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI(api_key="sk-test")
stream = client.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "user", "content": "Say hello"}],
    stream=True,
    stream_options={"include_usage": True},
)
pieces, total_tokens, models = [], None, set()
for chunk in stream:
    if not models:
        print("warden-test-first-event", flush=True)
    models.add(chunk.model)
    if chunk.usage is not None:
        total_tokens = chunk.usage.total_tokens
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
print(json.dumps({
    "pid": os.getpid(), "exe": os.readlink("/proc/self/exe"),
    "models": sorted(models), "pieces": pieces, "total_tokens": total_tokens,
}))
"#;

/// A streamed Responses API call: the event types, text deltas and the completed response.
pub const RESPONSES_STREAM: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI(api_key="sk-test")
stream = client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True)
types, deltas, completed = [], [], None
for event in stream:
    if not types:
        print("warden-test-first-event", flush=True)
    types.append(event.type)
    if event.type == "response.output_text.delta":
        deltas.append(event.delta)
    elif event.type == "response.completed":
        completed = {
            "model": event.response.model,
            "output_text": event.response.output_text,
            "total_tokens": event.response.usage.total_tokens,
        }
print(json.dumps({
    "pid": os.getpid(), "exe": os.readlink("/proc/self/exe"),
    "types": types, "deltas": deltas, "completed": completed,
}))
"#;

/// The models list.
pub const MODELS: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI(api_key="sk-test")
print(json.dumps({
    "pid": os.getpid(), "exe": os.readlink("/proc/self/exe"),
    "ids": [m.id for m in client.models.list()],
}))
"#;

/// The official `openai` npm package (run as `node -e NODE_CHAT` with `NODE_PATH` at its
/// node_modules): one non-streamed chat completion, printed like [`CHAT`]. A failure prints one
/// line per error in its `cause` chain, `Class [code]: message`, on stderr and exits 1, so a test
/// can tell a certificate error from any other.
pub const NODE_CHAT: &str = r#"
const fs = require("fs");
const { OpenAI } = require("openai");

async function main() {
  const client = new OpenAI({ apiKey: "sk-test" });
  const r = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "Say hello" }],
  });
  console.log(JSON.stringify({
    pid: process.pid, exe: fs.readlinkSync("/proc/self/exe"),
    model: r.model, content: r.choices[0].message.content,
    total_tokens: r.usage.total_tokens,
  }));
}

main().catch((error) => {
  for (let e = error; e; e = e.cause) {
    const code = e.code ? ` [${e.code}]` : "";
    console.error(`${e.constructor ? e.constructor.name : typeof e}${code}: ${e.message}`);
  }
  process.exit(1);
});
"#;

/// A long-running agent: `python -c AGENT_ON_REQUEST FIFO DIR` makes one non-streamed chat
/// completion per line written to the FIFO and writes its result to `DIR/LINE.json` (renamed into
/// place, so a reader never sees half of it). The client is made once, like an agent's, with
/// `max_retries=0`: a refused connect is reported at once instead of retried (the SDK's retries
/// could outlast an outage a test makes on purpose).
///
/// A result holds the pid and executable, which CA variables the process has
/// (`ca_variables`), and either `"ok": true` with the reply's `content`, or `"ok": false` with
/// the SDK's `error` class and the HTTP `status` or, for a connection error, the `causes` chain.
pub const AGENT_ON_REQUEST: &str = r#"
import json, os, sys
import openai
from openai import OpenAI

CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
requests_fifo, results = sys.argv[1], sys.argv[2]
client = OpenAI(api_key="sk-test", max_retries=0)

def call():
    try:
        r = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Say hello"}],
        )
        return {"ok": True, "content": r.choices[0].message.content}
    except openai.APIStatusError as e:
        return {"ok": False, "error": type(e).__name__, "status": e.status_code, "message": e.message}
    except openai.APIConnectionError as e:
        causes, cause = [], e.__cause__ or e.__context__
        while cause is not None and len(causes) < 8:
            causes.append(f"{type(cause).__name__}: {cause}")
            cause = cause.__cause__ or cause.__context__
        return {"ok": False, "error": type(e).__name__, "causes": causes}

while True:
    with open(requests_fifo) as requests:
        for line in requests:
            name = line.strip()
            result = {
                "pid": os.getpid(), "exe": os.readlink("/proc/self/exe"),
                "ca_variables": sorted(v for v in CA_VARIABLES if v in os.environ),
            }
            result.update(call())
            path = os.path.join(results, name + ".json")
            with open(path + ".tmp", "w") as f:
                json.dump(result, f)
            os.rename(path + ".tmp", path)
"#;
