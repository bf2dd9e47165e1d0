//! Tests for assembling whole (non-streamed) JSON bodies.
use super::*;

fn json(kind: EndpointKind, body: &str) -> Option<Assembled> {
    assemble_json(kind, body.as_bytes())
}

#[test]
fn chat_completion_content_and_usage() {
    let body = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The image shows a wooden boardwalk.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;
    assert_eq!(
        json(EndpointKind::ChatCompletions, body),
        Some(Assembled {
            text: "The image shows a wooden boardwalk.".into(),
            finish_reason: Some("stop".into()),
            usage: usage(1117, 46, 1163),
            ..Assembled::default()
        })
    );
}

#[test]
fn chat_completion_tool_calls_and_refusal() {
    let body = r#"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Boston, MA\"}"}},{"id":"call_def","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99}}"#;
    let assembled = json(EndpointKind::ChatCompletions, body).unwrap();
    assert_eq!(assembled.text, "");
    assert_eq!(assembled.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        assembled.tool_calls,
        [
            ToolCall {
                index: 0,
                id: Some("call_abc".into()),
                name: Some("get_weather".into()),
                arguments: "{\"location\":\"Boston, MA\"}".into(),
            },
            ToolCall {
                index: 1,
                id: Some("call_def".into()),
                name: Some("get_time".into()),
                arguments: "{}".into(),
            },
        ]
    );

    let refusal = r#"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I'm sorry, I can't assist with that."},"finish_reason":"stop"}]}"#;
    let assembled = json(EndpointKind::ChatCompletions, refusal).unwrap();
    assert_eq!(
        assembled.refusal.as_deref(),
        Some("I'm sorry, I can't assist with that.")
    );
    assert_eq!(assembled.usage, None);
}

#[test]
fn legacy_completion_text() {
    let body = r#"{"id":"cmpl-1","object":"text_completion","choices":[{"text":"\n\nThis is a test.","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
    let assembled = json(EndpointKind::Completions, body).unwrap();
    assert_eq!(assembled.text, "\n\nThis is a test.");
    assert_eq!(assembled.finish_reason.as_deref(), Some("length"));
    assert_eq!(assembled.usage, usage(5, 7, 12));
}

#[test]
fn responses_object_message_function_call_and_usage() {
    let body = r#"{"id":"resp_67ccd3a9","object":"response","created_at":1741476777,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"model":"o4-mini-2025-04-16","output":[{"id":"rs_1","type":"reasoning","summary":[],"content":[{"type":"reasoning_text","text":"secret thoughts"}]},{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Checking ","annotations":[]},{"type":"output_text","text":"the weather.","annotations":[]}]},{"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":"{\"location\":\"Paris\"}","status":"completed"}],"parallel_tool_calls":true,"tools":[{"type":"function","name":"get_weather","parameters":{}}],"usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":0},"output_tokens":52,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":380},"metadata":{}}"#;
    assert_eq!(
        json(EndpointKind::Responses, body),
        Some(Assembled {
            text: "Checking the weather.".into(),
            tool_calls: vec![ToolCall {
                index: 2,
                id: Some("call_1".into()),
                name: Some("get_weather".into()),
                arguments: "{\"location\":\"Paris\"}".into(),
            }],
            finish_reason: Some("completed".into()),
            usage: usage(328, 52, 380),
            ..Assembled::default()
        })
    );
}

#[test]
fn responses_object_refusal() {
    let body = r#"{"object":"response","status":"completed","output":[{"type":"message","id":"msg_1","role":"assistant","content":[{"type":"refusal","refusal":"No."}]}],"usage":{"input_tokens":3,"output_tokens":1,"total_tokens":4}}"#;
    let assembled = json(EndpointKind::Responses, body).unwrap();
    assert_eq!(assembled.refusal.as_deref(), Some("No."));
    assert_eq!(assembled.text, "");
}

#[test]
fn embeddings_usage_only() {
    let vector = vec!["0.0023064255"; 1536].join(",");
    let body = format!(
        r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[{vector}]}}],"model":"text-embedding-3-small","usage":{{"prompt_tokens":8,"total_tokens":8}}}}"#
    );
    assert_eq!(
        json(EndpointKind::Embeddings, &body),
        Some(Assembled {
            usage: usage(8, 0, 8),
            ..Assembled::default()
        })
    );
}

#[test]
fn error_bodies_for_every_kind() {
    let body = r#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    for kind in EndpointKind::ALL {
        let assembled = json(kind, body).unwrap_or_else(|| panic!("{kind}"));
        assert_eq!(
            assembled.error.as_deref(),
            Some("invalid_api_key: Incorrect API key provided: sk-abc***xyz."),
            "{kind}"
        );
        assert_eq!(assembled.text, "", "{kind}");
    }
    let no_code = r#"{"error":{"message":"That model is currently overloaded.","type":"server_error","param":null,"code":null}}"#;
    assert_eq!(
        json(EndpointKind::ChatCompletions, no_code)
            .unwrap()
            .error
            .as_deref(),
        Some("server_error: That model is currently overloaded.")
    );
}

#[test]
fn non_error_bodies_of_other_kinds_and_invalid_json_are_none() {
    let models = r#"{"object":"list","data":[{"id":"gpt-4o","object":"model","created":1686935002,"owned_by":"openai"}]}"#;
    assert_eq!(json(EndpointKind::Models, models), None);
    assert_eq!(
        json(EndpointKind::Files, r#"{"object":"file","id":"file-1"}"#),
        None
    );
    for kind in EndpointKind::ALL {
        assert_eq!(json(kind, "<html>502 Bad Gateway</html>"), None, "{kind}");
        assert_eq!(json(kind, ""), None, "{kind}");
    }
}
