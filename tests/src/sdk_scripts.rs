//! Client programs for the official `openai` Python SDK, unmodified usage with the default base URL.
//!
//! Each prints one JSON object with its pid and executable (as the process itself sees them) and
//! what it got back, so a test can compare the response and Warden's log line for that process.

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

/// A streamed chat completion: the content pieces and when each one arrived.
pub const CHAT_STREAM: &str = r#"
import json, os, time
from openai import OpenAI

client = OpenAI(api_key="sk-test")
stream = client.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "user", "content": "Say hello"}],
    stream=True,
    stream_options={"include_usage": True},
)
pieces, arrivals, total_tokens, models = [], [], None, set()
for chunk in stream:
    models.add(chunk.model)
    if chunk.usage is not None:
        total_tokens = chunk.usage.total_tokens
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
            arrivals.append(time.monotonic())
print(json.dumps({
    "pid": os.getpid(), "exe": os.readlink("/proc/self/exe"),
    "models": sorted(models), "pieces": pieces, "total_tokens": total_tokens,
    "spread_seconds": (arrivals[-1] - arrivals[0]) if arrivals else 0.0,
}))
"#;

/// A streamed Responses API call: the event types, text deltas and the completed response.
pub const RESPONSES_STREAM: &str = r#"
import json, os, time
from openai import OpenAI

client = OpenAI(api_key="sk-test")
stream = client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True)
types, deltas, arrivals, completed = [], [], [], None
for event in stream:
    types.append(event.type)
    if event.type == "response.output_text.delta":
        deltas.append(event.delta)
        arrivals.append(time.monotonic())
    elif event.type == "response.completed":
        completed = {
            "model": event.response.model,
            "output_text": event.response.output_text,
            "total_tokens": event.response.usage.total_tokens,
        }
print(json.dumps({
    "pid": os.getpid(), "exe": os.readlink("/proc/self/exe"),
    "types": types, "deltas": deltas, "completed": completed,
    "spread_seconds": (arrivals[-1] - arrivals[0]) if arrivals else 0.0,
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
