use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::policy::mask::{MaskCounts, Masker};
use crate::policy::recognizers::{builtin, BUILTIN_NAMES};

fn maskers() -> ChunkMaskers {
    let recognizers = BUILTIN_NAMES
        .iter()
        .filter_map(|name| builtin(name))
        .collect();
    let masker = Arc::new(Masker::new(recognizers, "[{NAME}]"));
    ChunkMaskers::new(Arc::new(
        StreamPrefixes::new(masker).expect("prefix DFAs build"),
    ))
}

fn chat_chunk(choices: Value) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o-mini", "choices": choices,
    })
}

fn content_chunk(index: u64, text: &str) -> Value {
    chat_chunk(json!([{ "index": index, "delta": { "content": text }, "finish_reason": null }]))
}

fn finish_chunk(index: u64, reason: &str) -> Value {
    chat_chunk(json!([{ "index": index, "delta": {}, "finish_reason": reason }]))
}

fn content_of(chunk: &Value, choice: usize) -> String {
    chunk["choices"][choice]["delta"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn chat_content_split_across_chunks_is_masked_and_the_rest_rides_the_finish_chunk() {
    let mut maskers = maskers();
    let mut counts = MaskCounts::default();
    let mut streamed = String::new();
    for text in ["", "Reach me at jo", "hn@example.com", " or call"] {
        let mut chunk = content_chunk(0, text);
        mask_chat_chunk(&mut chunk, &mut maskers, &mut counts);
        streamed.push_str(&content_of(&chunk, 0));
    }
    assert_eq!(streamed, "Reach me at [EMAIL] or ");
    assert_eq!(maskers.held(), "call".len());
    let mut last = finish_chunk(0, "stop");
    mask_chat_chunk(&mut last, &mut maskers, &mut counts);
    assert_eq!(content_of(&last, 0), "call");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(maskers.held(), 0);
    assert!(maskers.flush(&mut counts).is_empty());
    assert_eq!(counts.0.get("EMAIL"), Some(&1));
}

#[test]
fn tool_call_arguments_are_masked_per_tool_index() {
    let mut maskers = maskers();
    let mut counts = MaskCounts::default();
    let call = |index: u64, arguments: &str| {
        chat_chunk(json!([{ "index": 0, "delta": { "tool_calls": [
            { "index": index, "function": { "arguments": arguments } }
        ] }, "finish_reason": null }]))
    };
    let mut first = chat_chunk(
        json!([{ "index": 0, "delta": { "role": "assistant", "tool_calls": [
        { "index": 0, "id": "call_1", "type": "function",
          "function": { "name": "send", "arguments": "" } }
    ] }, "finish_reason": null }]),
    );
    mask_chat_chunk(&mut first, &mut maskers, &mut counts);
    let mut arguments = [String::new(), String::new()];
    for (index, text) in [
        (0, r#"{"to":"bo"#),
        (1, r#"{"card":"4111 1111"#),
        (0, r#"b@example.com","cc":"ca"#),
        (1, r#" 1111 1111"}"#),
        (0, "rol@example.org"),
    ] {
        let mut chunk = call(index, text);
        mask_chat_chunk(&mut chunk, &mut maskers, &mut counts);
        let released = &chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"];
        arguments[index as usize].push_str(released.as_str().unwrap_or_default());
    }
    let mut last = finish_chunk(0, "tool_calls");
    mask_chat_chunk(&mut last, &mut maskers, &mut counts);
    // `}` may begin an email address (`}x@example.com`), so it waits for the end too.
    assert_eq!(
        last["choices"][0]["delta"]["tool_calls"],
        json!([
            { "index": 0, "function": { "arguments": "[EMAIL]" } },
            { "index": 1, "function": { "arguments": "}" } },
        ])
    );
    arguments[0].push_str("[EMAIL]\"}");
    arguments[1].push('}');
    let to: Value = serde_json::from_str(&arguments[0]).expect("arguments stay JSON");
    assert_eq!(to, json!({ "to": "[EMAIL]", "cc": "[EMAIL]" }));
    let card: Value = serde_json::from_str(&arguments[1]).expect("arguments stay JSON");
    assert_eq!(card, json!({ "card": "[CREDIT_CARD]" }));
}

#[test]
fn choices_are_separate_channels_and_logprobs_are_dropped() {
    let mut maskers = maskers();
    let mut counts = MaskCounts::default();
    let mut chunk = chat_chunk(json!([
        { "index": 0, "delta": { "content": "a@exa" }, "logprobs": { "content": [
            { "token": "a@exa", "logprob": -0.1, "bytes": [97], "top_logprobs": [] }
        ] }, "finish_reason": null },
        { "index": 1, "delta": { "content": "mple.com " }, "finish_reason": null },
    ]));
    mask_chat_chunk(&mut chunk, &mut maskers, &mut counts);
    assert_eq!(content_of(&chunk, 0), "");
    assert_eq!(content_of(&chunk, 1), "mple.com ");
    assert_eq!(chunk["choices"][0]["logprobs"], Value::Null);
    let mut next = content_chunk(0, "mple.com ");
    mask_chat_chunk(&mut next, &mut maskers, &mut counts);
    assert_eq!(content_of(&next, 0), "[EMAIL] ");
}

#[test]
fn flush_at_the_end_of_a_cut_stream_builds_a_chunk_from_the_first_one() {
    let mut maskers = maskers();
    let mut counts = MaskCounts::default();
    let mut chunk = content_chunk(0, "token sk-abcdefghijklmnopqrstuvwxyz012345");
    mask_chat_chunk(&mut chunk, &mut maskers, &mut counts);
    assert_eq!(content_of(&chunk, 0), "token ");
    let flushed = maskers.flush(&mut counts);
    assert_eq!(
        flushed,
        vec![json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{ "index": 0, "delta": { "content": "[OPENAI_KEY]" }, "finish_reason": null }],
        })]
    );
    assert_eq!(counts.0.get("OPENAI_KEY"), Some(&1));
}

#[test]
fn legacy_completion_text_is_masked() {
    let mut maskers = maskers();
    let mut counts = MaskCounts::default();
    let mut texts = String::new();
    for (text, reason) in [("SSN 123-45-", Value::Null), ("6789", json!("stop"))] {
        let mut chunk = json!({ "object": "text_completion", "choices": [
            { "index": 0, "text": text, "finish_reason": reason }
        ] });
        mask_chat_chunk(&mut chunk, &mut maskers, &mut counts);
        texts.push_str(chunk["choices"][0]["text"].as_str().unwrap_or_default());
    }
    assert_eq!(texts, "SSN [US_SSN]");
}

fn text_delta(kind: &str, delta: &str, sequence: u64) -> Value {
    json!({ "type": kind, "item_id": "item_1", "output_index": 0, "content_index": 0,
            "delta": delta, "logprobs": [], "sequence_number": sequence })
}

#[test]
fn responses_output_text_deltas_and_done_agree() {
    let mut maskers = maskers();
    let mut counts = MaskCounts::default();
    let mut streamed = String::new();
    for (sequence, text) in [(4, "Mail bob@exa"), (5, "mple.com")] {
        let mut event = text_delta("response.output_text.delta", text, sequence);
        assert!(mask_responses_event(&mut event, &mut maskers, &mut counts).is_empty());
        streamed.push_str(event["delta"].as_str().unwrap_or_default());
    }
    assert_eq!(streamed, "Mail ");
    let mut done = json!({ "type": "response.output_text.done", "item_id": "item_1",
        "output_index": 0, "content_index": 0, "text": "Mail bob@example.com",
        "logprobs": [], "sequence_number": 6 });
    let before = mask_responses_event(&mut done, &mut maskers, &mut counts);
    assert_eq!(
        before,
        vec![
            json!({ "type": "response.output_text.delta", "item_id": "item_1",
            "output_index": 0, "content_index": 0, "delta": "[EMAIL]", "logprobs": [],
            "sequence_number": 6 })
        ]
    );
    assert_eq!(done["text"], "Mail [EMAIL]");
    assert_eq!(counts.0.get("EMAIL"), Some(&1));
}

#[test]
fn responses_function_call_arguments_stay_json() {
    let mut maskers = maskers();
    let mut counts = MaskCounts::default();
    let whole = r#"{"body":"hi\nbob@example.com","ip":"10.0.0.1"}"#;
    let mut streamed = String::new();
    for (sequence, piece) in [(1, &whole[..15]), (2, &whole[15..30]), (3, &whole[30..])] {
        let mut event = json!({ "type": "response.function_call_arguments.delta",
            "item_id": "fc_1", "output_index": 1, "delta": piece, "sequence_number": sequence });
        assert!(mask_responses_event(&mut event, &mut maskers, &mut counts).is_empty());
        streamed.push_str(event["delta"].as_str().unwrap_or_default());
    }
    let mut done = json!({ "type": "response.function_call_arguments.done", "item_id": "fc_1",
        "output_index": 1, "arguments": whole, "sequence_number": 4 });
    for event in mask_responses_event(&mut done, &mut maskers, &mut counts) {
        streamed.push_str(event["delta"].as_str().unwrap_or_default());
    }
    assert_eq!(done["arguments"], streamed.as_str());
    let parsed: Value = serde_json::from_str(&streamed).expect("arguments stay JSON");
    assert_eq!(
        parsed,
        json!({ "body": "hi\\[EMAIL]", "ip": "[IP_ADDRESS]" })
    );
}

#[test]
fn finished_parts_items_and_the_response_are_masked_and_flush_open_channels() {
    let mut maskers = maskers();
    let mut counts = MaskCounts::default();
    let mut delta = text_delta("response.output_text.delta", "call 415-555-2671", 3);
    mask_responses_event(&mut delta, &mut maskers, &mut counts);
    assert_eq!(delta["delta"], "call ");

    let mut part = json!({ "type": "response.content_part.done", "item_id": "item_1",
        "output_index": 0, "content_index": 0,
        "part": { "type": "output_text", "text": "call 415-555-2671", "annotations": [] } });
    assert!(mask_responses_event(&mut part, &mut maskers, &mut counts).is_empty());
    assert_eq!(part["part"]["text"], "call [PHONE]");

    let message = json!({ "type": "message", "id": "item_1", "role": "assistant",
        "content": [{ "type": "output_text", "text": "call 415-555-2671", "annotations": [] }] });
    let mut completed = json!({ "type": "response.completed", "sequence_number": 9,
        "response": { "id": "resp_1", "output": [message] } });
    let before = mask_responses_event(&mut completed, &mut maskers, &mut counts);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["delta"], "[PHONE]");
    assert_eq!(before[0]["sequence_number"], 9);
    assert_eq!(
        completed["response"]["output"][0]["content"][0]["text"],
        "call [PHONE]"
    );
    assert_eq!(counts.0.get("PHONE"), Some(&1));

    let mut item = json!({ "type": "response.output_item.done", "output_index": 2,
        "item": { "type": "function_call", "call_id": "c", "name": "f",
                  "arguments": "{\"to\":\"x@y.io\"}" } });
    assert!(mask_responses_event(&mut item, &mut maskers, &mut counts).is_empty());
    assert_eq!(item["item"]["arguments"], "{\"to\":\"[EMAIL]\"}");
}
