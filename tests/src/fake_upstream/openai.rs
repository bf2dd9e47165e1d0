//! The bodies the fake upstream answers with, shaped like the OpenAI API's.

use serde_json::{json, Value};

const CREATED: u64 = 1_700_000_000;
const PROMPT_TOKENS: u64 = 9;

/// The models `GET /v1/models` lists.
pub const MODELS: [&str; 3] = ["gpt-4o-mini", "gpt-4o", "o4-mini"];

/// The reply split into the pieces a stream sends: words, each but the first with its leading space.
pub fn reply_pieces(reply: &str) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    for (i, word) in reply.split(' ').enumerate() {
        pieces.push(if i == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        });
    }
    pieces
}

fn completion_tokens(reply: &str) -> u64 {
    reply_pieces(reply).len() as u64
}

fn chat_usage(reply: &str) -> Value {
    let completion = completion_tokens(reply);
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion,
        "total_tokens": PROMPT_TOKENS + completion,
    })
}

/// `POST /v1/chat/completions` without `stream`.
pub fn chat_completion(model: &str, reply: &str) -> Value {
    json!({
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": chat_usage(reply),
    })
}

fn sse_data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// One chunk. As OpenAI sends them: without `include_usage` a chunk has no `usage` key; with it,
/// every chunk has `"usage": null` but the extra last one, which has the usage and no choices.
fn chunk(model: &str, choices: Value, usage: Option<Value>) -> Value {
    let mut chunk = json!({
        "id": "chatcmpl-fake-1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
    });
    if let Some(usage) = usage {
        chunk["usage"] = usage;
    }
    chunk
}

/// `POST /v1/chat/completions` with `"stream": true`: the SSE events, one string each, in order.
pub fn chat_completion_events(model: &str, reply: &str, include_usage: bool) -> Vec<String> {
    chat_completion_events_of(model, &reply_pieces(reply), include_usage)
}

/// [`chat_completion_events`] sending exactly these content deltas.
pub fn chat_completion_events_of(
    model: &str,
    pieces: &[String],
    include_usage: bool,
) -> Vec<String> {
    let reply = pieces.concat();
    let reply = reply.as_str();
    let delta = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let no_usage = include_usage.then_some(Value::Null);
    let mut events = vec![sse_data(&chunk(
        model,
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
        no_usage.clone(),
    ))];
    for piece in pieces {
        events.push(sse_data(&chunk(
            model,
            delta(json!({"content": piece}), Value::Null),
            no_usage.clone(),
        )));
    }
    events.push(sse_data(&chunk(
        model,
        delta(json!({}), json!("stop")),
        no_usage,
    )));
    if include_usage {
        events.push(sse_data(&chunk(model, json!([]), Some(chat_usage(reply)))));
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

/// A Responses API response object.
pub fn response_object(model: &str, reply: &str, status: &str) -> Value {
    let completion = completion_tokens(reply);
    let done = status == "completed";
    json!({
        "id": "resp_fake_1",
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "model": model,
        "output": if done {
            json!([{
                "type": "message",
                "id": "msg_fake_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply, "annotations": []}],
            }])
        } else {
            json!([])
        },
        "parallel_tool_calls": true,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": if done {
            json!({
                "input_tokens": PROMPT_TOKENS,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": PROMPT_TOKENS + completion,
            })
        } else {
            Value::Null
        },
    })
}

fn sse_event(sequence: &mut u64, kind: &str, mut data: Value) -> String {
    data["type"] = json!(kind);
    data["sequence_number"] = json!(*sequence);
    *sequence += 1;
    format!("event: {kind}\ndata: {data}\n\n")
}

/// `POST /v1/responses` with `"stream": true`: created, text deltas, done events, completed.
pub fn response_events(model: &str, reply: &str) -> Vec<String> {
    response_events_of(model, &reply_pieces(reply))
}

/// [`response_events`] sending exactly these `output_text` deltas.
pub fn response_events_of(model: &str, pieces: &[String]) -> Vec<String> {
    let reply = pieces.concat();
    let reply = reply.as_str();
    let mut seq = 0;
    let item_id = "msg_fake_1";
    let mut events = vec![
        sse_event(
            &mut seq,
            "response.created",
            json!({"response": response_object(model, reply, "in_progress")}),
        ),
        sse_event(
            &mut seq,
            "response.output_item.added",
            json!({"output_index": 0, "item": {
                "type": "message", "id": item_id, "status": "in_progress",
                "role": "assistant", "content": [],
            }}),
        ),
        sse_event(
            &mut seq,
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    for piece in pieces {
        events.push(sse_event(
            &mut seq,
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece}),
        ));
    }
    events.push(sse_event(
        &mut seq,
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": reply}),
    ));
    events.push(sse_event(
        &mut seq,
        "response.completed",
        json!({"response": response_object(model, reply, "completed")}),
    ));
    events
}

/// `GET /v1/models`.
pub fn models() -> Value {
    json!({
        "object": "list",
        "data": MODELS.iter().map(|id| json!({
            "id": id, "object": "model", "created": CREATED, "owned_by": "openai",
        })).collect::<Vec<_>>(),
    })
}

/// An OpenAI-shaped error body.
pub fn error(message: &str, kind: &str, code: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "Hello from the fake upstream.";

    fn data_of(event: &str) -> Value {
        let data = event
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn pieces_join_back_into_the_reply() {
        let pieces = reply_pieces(REPLY);
        assert_eq!(pieces.len(), 5);
        assert_eq!(pieces.concat(), REPLY);
    }

    #[test]
    fn a_chat_stream_carries_the_reply_usage_and_done() {
        let events = chat_completion_events("gpt-4o", REPLY, true);
        assert_eq!(events.last().unwrap(), "data: [DONE]\n\n");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| data_of(e))
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, REPLY);
        assert!(chunks.iter().all(|c| c["model"] == "gpt-4o"));
        assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 14);
        assert!(events.iter().all(|e| e.ends_with("\n\n")));
    }

    #[test]
    fn a_responses_stream_ends_with_completed() {
        let events = response_events("gpt-4o-mini", REPLY);
        assert!(events[0].starts_with("event: response.created\n"));
        let last = data_of(events.last().unwrap());
        assert_eq!(last["type"], "response.completed");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], REPLY);
        let deltas: String = events
            .iter()
            .map(|e| data_of(e))
            .filter(|d| d["type"] == "response.output_text.delta")
            .map(|d| d["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deltas, REPLY);
    }
}
