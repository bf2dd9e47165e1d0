//! Tests for Responses API stream assembly.
use super::*;

/// `event:` line plus `data:` line, as the API sends them.
fn sse(event_type: &str, data: &str) -> String {
    format!("event: {event_type}\ndata: {data}\n\n")
}

const CREATED: &str = r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_67c9","object":"response","created_at":1741290958,"status":"in_progress","error":null,"incomplete_details":null,"instructions":"You are a helpful assistant.","max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":null,"user":null,"metadata":{}}}"#;

fn text_stream() -> String {
    [
        sse("response.created", CREATED),
        sse("response.in_progress", &CREATED.replace("response.created", "response.in_progress")),
        sse("response.output_item.added", r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_67c9","type":"message","status":"in_progress","role":"assistant","content":[]}}"#),
        sse("response.content_part.added", r#"{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_67c9","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}"#),
        sse("response.output_text.delta", r#"{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67c9","output_index":0,"content_index":0,"delta":"Hi","logprobs":[]}"#),
        sse("response.output_text.delta", r#"{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_67c9","output_index":0,"content_index":0,"delta":" there \u00e9\n","logprobs":[]}"#),
        sse("response.output_text.done", r#"{"type":"response.output_text.done","sequence_number":6,"item_id":"msg_67c9","output_index":0,"content_index":0,"text":"Hi there \u00e9\n","logprobs":[]}"#),
        sse("response.output_item.done", r#"{"type":"response.output_item.done","sequence_number":7,"output_index":0,"item":{"id":"msg_67c9","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there \u00e9\n","annotations":[]}]}}"#),
        sse("response.completed", r#"{"type":"response.completed","sequence_number":8,"response":{"id":"resp_67c9","object":"response","status":"completed","error":null,"incomplete_details":null,"model":"gpt-4.1-2025-04-14","output":[{"id":"msg_67c9","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there \u00e9\n","annotations":[]}]}],"usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":0},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48}}}"#),
    ]
    .concat()
}

#[test]
fn output_text_deltas_and_completed_usage() {
    let (assembled, deltas, complete) = responses(&text_stream());
    assert_eq!(
        assembled,
        Assembled {
            text: "Hi there \u{e9}\n".into(),
            finish_reason: Some("completed".into()),
            usage: usage(37, 11, 48),
            ..Assembled::default()
        }
    );
    assert_eq!(deltas, ["Hi", " there \u{e9}\n"]);
    assert!(complete);
}

#[test]
fn responses_stream_split_at_every_offset() {
    let stream = text_stream();
    let expected = responses(&stream).0;
    for split in (0..=stream.len()).step_by(3) {
        let (a, b) = stream.as_bytes().split_at(split);
        assert_eq!(
            assemble_stream(EndpointKind::Responses, &[a, b]).0,
            expected,
            "{split}"
        );
    }
}

#[test]
fn the_type_field_is_used_without_event_lines() {
    let stream: String = text_stream()
        .lines()
        .filter(|line| !line.starts_with("event:"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(responses(&stream).0.text, "Hi there \u{e9}\n");
}

#[test]
fn function_call_arguments_are_joined_per_output_index() {
    let stream = [
        sse("response.output_item.added", r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"reasoning","id":"rs_1","summary":[]}}"#),
        sse("response.output_item.added", r#"{"type":"response.output_item.added","sequence_number":3,"output_index":1,"item":{"type":"function_call","id":"fc_1","call_id":"call_a","name":"get_weather","arguments":"","status":"in_progress"}}"#),
        sse("response.output_item.added", r#"{"type":"response.output_item.added","sequence_number":4,"output_index":2,"item":{"type":"function_call","id":"fc_2","call_id":"call_b","name":"send_email","arguments":"","status":"in_progress"}}"#),
        sse("response.function_call_arguments.delta", r#"{"type":"response.function_call_arguments.delta","sequence_number":5,"item_id":"fc_1","output_index":1,"delta":"{\"location\":"}"#),
        sse("response.function_call_arguments.delta", r#"{"type":"response.function_call_arguments.delta","sequence_number":6,"item_id":"fc_2","output_index":2,"delta":"{\"to\":\"bob\"}"}"#),
        sse("response.function_call_arguments.delta", r#"{"type":"response.function_call_arguments.delta","sequence_number":7,"item_id":"fc_1","output_index":1,"delta":"\"Paris\"}"}"#),
        sse("response.function_call_arguments.done", r#"{"type":"response.function_call_arguments.done","sequence_number":8,"item_id":"fc_1","output_index":1,"arguments":"{\"location\":\"Paris\"}"}"#),
        sse("response.output_item.done", r#"{"type":"response.output_item.done","sequence_number":9,"output_index":1,"item":{"type":"function_call","id":"fc_1","call_id":"call_a","name":"get_weather","arguments":"{\"location\":\"Paris\"}","status":"completed"}}"#),
        sse("response.completed", r#"{"type":"response.completed","sequence_number":10,"response":{"id":"resp_1","object":"response","status":"completed","output":[{"type":"reasoning","id":"rs_1","summary":[]},{"type":"function_call","id":"fc_1","call_id":"call_a","name":"get_weather","arguments":"{\"location\":\"Paris\"}","status":"completed"},{"type":"function_call","id":"fc_2","call_id":"call_b","name":"send_email","arguments":"{\"to\":\"bob\"}","status":"completed"}],"usage":{"input_tokens":80,"output_tokens":40,"total_tokens":120}}}"#),
    ]
    .concat();
    let (assembled, deltas, _) = responses(&stream);
    assert_eq!(
        assembled.tool_calls,
        [
            ToolCall {
                index: 1,
                id: Some("call_a".into()),
                name: Some("get_weather".into()),
                arguments: "{\"location\":\"Paris\"}".into(),
            },
            ToolCall {
                index: 2,
                id: Some("call_b".into()),
                name: Some("send_email".into()),
                arguments: "{\"to\":\"bob\"}".into(),
            },
        ]
    );
    assert_eq!(assembled.text, "");
    assert_eq!(assembled.usage, usage(80, 40, 120));
    assert_eq!(deltas, ["{\"location\":", "{\"to\":\"bob\"}", "\"Paris\"}"]);
}

#[test]
fn argument_deltas_without_output_index_use_the_item_id() {
    let stream = [
        sse("response.output_item.added", r#"{"type":"response.output_item.added","output_index":3,"item":{"type":"function_call","id":"fc_9","call_id":"call_9","name":"f","arguments":""}}"#),
        sse("response.function_call_arguments.delta", r#"{"type":"response.function_call_arguments.delta","item_id":"fc_9","delta":"{}"}"#),
    ]
    .concat();
    let (assembled, _, complete) = responses(&stream);
    assert_eq!(assembled.tool_calls.len(), 1);
    assert_eq!(assembled.tool_calls[0].index, 3);
    assert_eq!(assembled.tool_calls[0].arguments, "{}");
    assert!(!complete);
}

#[test]
fn refusal_deltas_are_joined() {
    let stream = [
        sse("response.refusal.delta", r#"{"type":"response.refusal.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"I can't "}"#),
        sse("response.refusal.delta", r#"{"type":"response.refusal.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"do that."}"#),
        sse("response.refusal.done", r#"{"type":"response.refusal.done","item_id":"msg_1","output_index":0,"content_index":0,"refusal":"I can't do that."}"#),
    ]
    .concat();
    let (assembled, deltas, _) = responses(&stream);
    assert_eq!(assembled.refusal.as_deref(), Some("I can't do that."));
    assert_eq!(deltas, ["I can't ", "do that."]);
}

#[test]
fn error_event_is_recorded() {
    let stream = [
        sse("response.output_text.delta", r#"{"type":"response.output_text.delta","output_index":0,"delta":"partial"}"#),
        sse("error", r#"{"type":"error","code":"rate_limit_exceeded","message":"Rate limit reached for gpt-4.1","param":null,"sequence_number":3}"#),
    ]
    .concat();
    let (assembled, _, complete) = responses(&stream);
    assert_eq!(assembled.text, "partial");
    assert_eq!(
        assembled.error.as_deref(),
        Some("rate_limit_exceeded: Rate limit reached for gpt-4.1")
    );
    assert!(!complete);

    let nested = sse(
        "error",
        r#"{"type":"error","error":{"type":"invalid_request_error","code":null,"message":"bad"}}"#,
    );
    assert_eq!(
        responses(&nested).0.error.as_deref(),
        Some("invalid_request_error: bad")
    );
}

#[test]
fn response_failed_records_the_error() {
    let stream = sse(
        "response.failed",
        r#"{"type":"response.failed","sequence_number":5,"response":{"id":"resp_1","object":"response","status":"failed","error":{"code":"server_error","message":"The model failed to generate a response."},"incomplete_details":null,"output":[],"usage":null}}"#,
    );
    let (assembled, _, complete) = responses(&stream);
    assert_eq!(
        assembled.error.as_deref(),
        Some("server_error: The model failed to generate a response.")
    );
    assert_eq!(assembled.finish_reason.as_deref(), Some("failed"));
    assert_eq!(assembled.usage, None);
    assert!(complete);
}

#[test]
fn response_incomplete_gives_its_reason_and_usage() {
    let stream = [
        sse("response.output_text.delta", r#"{"type":"response.output_text.delta","output_index":0,"delta":"cut"}"#),
        sse("response.incomplete", r#"{"type":"response.incomplete","response":{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[{"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"cut","annotations":[]}]}],"usage":{"input_tokens":5,"output_tokens":16,"total_tokens":21}}}"#),
    ]
    .concat();
    let (assembled, _, _) = responses(&stream);
    assert_eq!(assembled.text, "cut");
    assert_eq!(
        assembled.finish_reason.as_deref(),
        Some("max_output_tokens")
    );
    assert_eq!(assembled.usage, usage(5, 16, 21));
}

#[test]
fn completed_output_fills_what_was_not_streamed() {
    let stream = sse(
        "response.completed",
        r#"{"type":"response.completed","response":{"status":"completed","output":[{"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"whole","annotations":[]}]}],"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}}"#,
    );
    assert_eq!(responses(&stream).0.text, "whole");
}

#[test]
fn unknown_events_are_ignored() {
    let stream = [
        sse("response.reasoning_summary_text.delta", r#"{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"delta":"thinking"}"#),
        sse("response.mcp_call_arguments.delta", r#"{"type":"response.mcp_call_arguments.delta","output_index":0,"item_id":"mcp_1","delta":{"q":1}}"#),
    ]
    .concat();
    let (assembled, deltas, _) = responses(&stream);
    assert_eq!(assembled, Assembled::default());
    assert!(deltas.is_empty());
}
