use serde_json::json;

use super::*;
use crate::policy::recognizers::builtin;

fn masker() -> Masker {
    let recognizers = ["email", "credit_card", "openai_key"]
        .iter()
        .map(|name| builtin(name).unwrap_or_else(|| panic!("{name}")))
        .collect();
    Masker::new(recognizers, "[{NAME}]")
}

/// Masks `body` as a request and checks that only the expected strings changed.
fn assert_request_masked(mut body: Value, expected: Value, expected_total: u64) {
    let mut counts = MaskCounts::default();
    assert!(mask_request(&mut body, &masker(), &mut counts));
    assert_eq!(body, expected);
    assert_eq!(counts.total(), expected_total);
}

#[test]
fn chat_string_content_and_text_parts() {
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Reply to alice@example.com"},
            {"role": "user", "content": [
                {"type": "text", "text": "card 4111 1111 1111 1111"},
                {"type": "image_url", "image_url": {"url": "https://example.com/bob@example.com.png"}}
            ]}
        ],
        "user": "carol@example.com"
    });
    assert_eq!(
        prompt_texts(&body),
        vec!["Reply to alice@example.com", "card 4111 1111 1111 1111"]
    );
    let mut expected = body.clone();
    expected["messages"][0]["content"] = json!("Reply to [EMAIL]");
    expected["messages"][1]["content"][0]["text"] = json!("card [CREDIT_CARD]");
    assert_request_masked(body, expected, 2);
}

#[test]
fn assistant_tool_call_arguments_stay_json_strings() {
    let arguments = r#"{"to": "alice@example.com", "note": "hi"}"#;
    let body = json!({
        "messages": [
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "send_mail", "arguments": arguments}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sent to alice@example.com"},
            {"role": "assistant", "function_call": {"name": "f", "arguments": "{\"k\":\"bob@example.org\"}"}}
        ]
    });
    assert_eq!(
        prompt_texts(&body),
        vec![
            arguments,
            "sent to alice@example.com",
            "{\"k\":\"bob@example.org\"}"
        ]
    );
    let mut expected = body.clone();
    expected["messages"][0]["tool_calls"][0]["function"]["arguments"] =
        json!(r#"{"to": "[EMAIL]", "note": "hi"}"#);
    expected["messages"][1]["content"] = json!("sent to [EMAIL]");
    expected["messages"][2]["function_call"]["arguments"] = json!("{\"k\":\"[EMAIL]\"}");
    assert_request_masked(body, expected, 3);
}

#[test]
fn arguments_masked_across_an_escape_are_re_encoded_as_valid_json() {
    // As text, `\nbob@…` matches from the `n` and would leave an invalid `\[` escape behind.
    let arguments = r#"{"body":"line one\nbob@example.com"}"#;
    let mut body = json!({"messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": arguments}}]}]});
    let mut counts = MaskCounts::default();
    assert!(mask_request(&mut body, &masker(), &mut counts));
    let masked = body["messages"][0]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap_or_default();
    let decoded: Value = serde_json::from_str(masked).unwrap_or_default();
    assert_eq!(decoded, json!({"body": "line one\n[EMAIL]"}));
    assert_eq!(counts.total(), 1);
}

#[test]
fn a_card_number_sent_as_a_json_number_in_arguments_is_masked() {
    // As text the mask gives `{"card": [CREDIT_CARD]}`, not JSON: the decoded value is masked
    // instead, and its numbers must be masked as well as its strings (found by fuzzing).
    let arguments = r#"{"card": 4111111111111111, "note": "bob@example.com"}"#;
    let mut body = json!({"messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": arguments}}]}]});
    let mut counts = MaskCounts::default();
    assert!(mask_request(&mut body, &masker(), &mut counts));
    let masked = body["messages"][0]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap_or_default();
    assert!(!masked.contains("4111"), "{masked}");
    let decoded: Value = serde_json::from_str(masked).unwrap_or_default();
    assert_eq!(decoded, json!({"card": "[CREDIT_CARD]", "note": "[EMAIL]"}));
    assert_eq!(counts.total(), 2);
}

#[test]
fn responses_input_string_items_and_instructions() {
    let body = json!({
        "model": "gpt-4.1",
        "instructions": "Never email alice@example.com",
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "my card is 5555-5555-5555-4444"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
            ]},
            {"role": "user", "content": "plain bob@example.org"},
            {"type": "function_call", "call_id": "c1", "name": "lookup",
             "arguments": "{\"email\":\"carol@example.com\"}"},
            {"type": "function_call_output", "call_id": "c1", "output": "found dave@example.com"}
        ]
    });
    assert_eq!(prompt_texts(&body).len(), 5);
    let mut expected = body.clone();
    expected["instructions"] = json!("Never email [EMAIL]");
    expected["input"][0]["content"][0]["text"] = json!("my card is [CREDIT_CARD]");
    expected["input"][1]["content"] = json!("plain [EMAIL]");
    expected["input"][2]["arguments"] = json!("{\"email\":\"[EMAIL]\"}");
    expected["input"][3]["output"] = json!("found [EMAIL]");
    assert_request_masked(body, expected, 5);

    let body = json!({"model": "gpt-4.1", "input": "hello alice@example.com"});
    assert_eq!(prompt_texts(&body), vec!["hello alice@example.com"]);
    assert_request_masked(
        body,
        json!({"model": "gpt-4.1", "input": "hello [EMAIL]"}),
        1,
    );
}

#[test]
fn embeddings_input_string_and_array() {
    let body = json!({"model": "text-embedding-3-small", "input": "alice@example.com"});
    assert_request_masked(
        body,
        json!({"model": "text-embedding-3-small", "input": "[EMAIL]"}),
        1,
    );

    let body = json!({"input": ["a alice@example.com", "nothing here", [1, 2, 3]]});
    assert_eq!(
        prompt_texts(&body),
        vec!["a alice@example.com", "nothing here"]
    );
    assert_request_masked(
        body,
        json!({"input": ["a [EMAIL]", "nothing here", [1, 2, 3]]}),
        1,
    );
}

#[test]
fn legacy_completions_prompt() {
    let body =
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "key sk-abcdefghij0123456789XYZ"});
    assert_request_masked(
        body,
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "key [OPENAI_KEY]"}),
        1,
    );
    let body = json!({"prompt": ["one alice@example.com", "two"]});
    assert_request_masked(body, json!({"prompt": ["one [EMAIL]", "two"]}), 1);
}

#[test]
fn unchanged_request_reports_false() {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}],
                          "metadata": {"owner": "alice@example.com"}});
    let original = body.clone();
    let mut counts = MaskCounts::default();
    assert!(!mask_request(&mut body, &masker(), &mut counts));
    assert_eq!(body, original);
    assert!(counts.is_empty());
}

#[test]
fn chat_completion_response_content_and_tool_calls() {
    let mut body = json!({
        "id": "chatcmpl-1", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant",
            "content": "Write to alice@example.com",
            "refusal": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "charge", "arguments": "{\"card\":\"4111111111111111\"}"}}]
        }}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    });
    let mut expected = body.clone();
    expected["choices"][0]["message"]["content"] = json!("Write to [EMAIL]");
    expected["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] =
        json!("{\"card\":\"[CREDIT_CARD]\"}");
    let mut counts = MaskCounts::default();
    assert!(mask_response(
        EndpointKind::ChatCompletions,
        &mut body,
        &masker(),
        &mut counts
    ));
    assert_eq!(body, expected);
    assert_eq!(counts.total(), 2);
}

#[test]
fn responses_response_output_text_and_function_call() {
    let mut body = json!({
        "id": "resp_1", "object": "response",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [
                {"type": "summary_text", "text": "user is alice@example.com"}]},
            {"type": "message", "id": "msg_1", "role": "assistant", "content": [
                {"type": "output_text", "text": "Your key sk-abcdefghij0123456789XYZ", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f",
             "arguments": "{\"to\":\"bob@example.org\"}"}
        ]
    });
    let mut expected = body.clone();
    expected["output"][0]["summary"][0]["text"] = json!("user is [EMAIL]");
    expected["output"][1]["content"][0]["text"] = json!("Your key [OPENAI_KEY]");
    expected["output"][2]["arguments"] = json!("{\"to\":\"[EMAIL]\"}");
    let mut counts = MaskCounts::default();
    assert!(mask_response(
        EndpointKind::Responses,
        &mut body,
        &masker(),
        &mut counts
    ));
    assert_eq!(body, expected);
    assert_eq!(counts.0.get("EMAIL"), Some(&2));
    assert_eq!(counts.0.get("OPENAI_KEY"), Some(&1));
}

#[test]
fn completions_response_text_and_other_endpoints() {
    let mut body = json!({"choices": [{"text": "mail alice@example.com", "index": 0}]});
    let mut counts = MaskCounts::default();
    assert!(mask_response(
        EndpointKind::Completions,
        &mut body,
        &masker(),
        &mut counts
    ));
    assert_eq!(body["choices"][0]["text"], json!("mail [EMAIL]"));

    let mut body = json!({"data": [{"embedding": [0.1]}], "note": "alice@example.com"});
    let original = body.clone();
    assert!(!mask_response(
        EndpointKind::Embeddings,
        &mut body,
        &masker(),
        &mut counts
    ));
    assert_eq!(body, original);
}

#[test]
fn prompt_template_variables_and_predicted_output() {
    let body = json!({
        "prompt": {"id": "pmpt_1", "version": "2", "variables": {
            "customer": "alice@example.com",
            "note": {"type": "input_text", "text": "card 4111111111111111"},
            "logo": {"type": "input_image", "image_url": "https://example.com/x.png"}
        }},
        "prediction": {"type": "content", "content": "Dear bob@example.org"}
    });
    assert_eq!(prompt_texts(&body).len(), 3);
    let mut expected = body.clone();
    expected["prompt"]["variables"]["customer"] = json!("[EMAIL]");
    expected["prompt"]["variables"]["note"]["text"] = json!("card [CREDIT_CARD]");
    expected["prediction"]["content"] = json!("Dear [EMAIL]");
    assert_request_masked(body, expected, 3);
}
