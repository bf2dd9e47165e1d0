//! Applies stream maskers to the deltas of parsed chat/completions chunks.
use serde_json::{Map, Value};

use super::channels::{Channel, ChatField, ChunkMaskers};
use crate::policy::mask::MaskCounts;

/// Masks the text deltas of one `chat.completion.chunk` (or legacy `text_completion` chunk) in
/// place: content, refusal, tool-call and function-call arguments, per choice. A choice that
/// finishes (`finish_reason` set) gets its held-back text appended to this chunk's delta.
/// Token logprobs are dropped, since they would carry the text unmasked.
pub fn mask_chat_chunk(chunk: &mut Value, maskers: &mut ChunkMaskers, counts: &mut MaskCounts) {
    let Some(fields) = chunk.as_object_mut() else {
        return;
    };
    if maskers.envelope.is_none() {
        let envelope = fields
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "choices" | "usage" | "obfuscation"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        maskers.envelope = Some(envelope);
    }
    let Some(choices) = fields.get_mut("choices").and_then(Value::as_array_mut) else {
        return;
    };
    for (position, choice) in choices.iter_mut().enumerate() {
        let Some(choice) = choice.as_object_mut() else {
            continue;
        };
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        if let Some(logprobs) = choice.get_mut("logprobs") {
            *logprobs = Value::Null;
        }
        let mut push = |field: ChatField, json: bool, text: &mut String| {
            let channel = Channel::Chat {
                choice: index,
                field,
            };
            *text = maskers.masker(channel, json).masker.push(text, counts);
        };
        if let Some(Value::String(text)) = choice.get_mut("text") {
            push(ChatField::Text, false, text);
        }
        if let Some(Value::Object(delta)) = choice.get_mut("delta") {
            if let Some(Value::String(text)) = delta.get_mut("content") {
                push(ChatField::Content, false, text);
            }
            if let Some(Value::String(text)) = delta.get_mut("refusal") {
                push(ChatField::Refusal, false, text);
            }
            if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                for (position, call) in calls.iter_mut().enumerate() {
                    let tool = call
                        .get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(position as u64);
                    if let Some(Value::String(text)) = call.pointer_mut("/function/arguments") {
                        push(ChatField::ToolArguments(tool), true, text);
                    }
                }
            }
            let arguments = delta
                .get_mut("function_call")
                .and_then(|call| call.get_mut("arguments"));
            if let Some(Value::String(text)) = arguments {
                push(ChatField::FunctionArguments, true, text);
            }
        }
        if choice
            .get("finish_reason")
            .is_some_and(|reason| !reason.is_null())
        {
            let closed = maskers.close(
                |channel| matches!(channel, Channel::Chat { choice, .. } if *choice == index),
            );
            for mut open in closed {
                let held = open.masker.finish(counts);
                let Channel::Chat { field, .. } = open.channel else {
                    continue;
                };
                if held.is_empty() {
                    continue;
                }
                if field == ChatField::Text {
                    append_chat_text(choice, field, &held);
                    continue;
                }
                let delta = choice
                    .entry("delta")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(delta) = delta.as_object_mut() {
                    append_chat_text(delta, field, &held);
                }
            }
        }
    }
}

/// Appends `text` to the field of a chat delta (or a completions choice) that `field` names.
pub(super) fn append_chat_text(delta: &mut Map<String, Value>, field: ChatField, text: &str) {
    let target = match field {
        ChatField::Content => delta.entry("content"),
        ChatField::Refusal => delta.entry("refusal"),
        ChatField::Text => delta.entry("text"),
        ChatField::FunctionArguments => {
            let call = delta
                .entry("function_call")
                .or_insert_with(|| Value::Object(Map::new()));
            let Some(call) = call.as_object_mut() else {
                return;
            };
            call.entry("arguments")
        }
        ChatField::ToolArguments(tool) => {
            let calls = delta
                .entry("tool_calls")
                .or_insert_with(|| Value::Array(Vec::new()));
            let Some(calls) = calls.as_array_mut() else {
                return;
            };
            let existing = calls
                .iter()
                .position(|call| call.get("index").and_then(Value::as_u64) == Some(tool));
            let at = existing.unwrap_or_else(|| {
                calls.push(serde_json::json!({ "index": tool, "function": {} }));
                calls.len() - 1
            });
            let Some(function) = calls[at]
                .as_object_mut()
                .map(|call| {
                    call.entry("function")
                        .or_insert_with(|| Value::Object(Map::new()))
                })
                .and_then(Value::as_object_mut)
            else {
                return;
            };
            function.entry("arguments")
        }
    };
    let value = target.or_insert(Value::Null);
    match value {
        Value::String(existing) => existing.push_str(text),
        _ => *value = Value::String(text.to_string()),
    }
}
