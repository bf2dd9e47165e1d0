//! Masks the text deltas of Responses stream events, and their finished texts alike.
use std::sync::Arc;

use serde_json::{Map, Value};

use super::channels::{Channel, ChunkMaskers};
use super::{StreamMasker, StreamPrefixes};
use crate::openai::endpoint::EndpointKind;
use crate::policy::mask::MaskCounts;
use crate::policy::prompt::mask_response;

/// A Responses event pair carrying one text: deltas, then the whole text in the done event.
pub(super) struct TextEvent {
    pub(super) delta: &'static str,
    done: &'static str,
    /// The field numbering parts within an output item, if the text is per part.
    pub(super) part_field: Option<&'static str>,
    /// The done event's field holding the whole text.
    done_field: &'static str,
    json: bool,
}

pub(super) const TEXT_EVENTS: [TextEvent; 6] = [
    TextEvent {
        delta: "response.output_text.delta",
        done: "response.output_text.done",
        part_field: Some("content_index"),
        done_field: "text",
        json: false,
    },
    TextEvent {
        delta: "response.refusal.delta",
        done: "response.refusal.done",
        part_field: Some("content_index"),
        done_field: "refusal",
        json: false,
    },
    TextEvent {
        delta: "response.function_call_arguments.delta",
        done: "response.function_call_arguments.done",
        part_field: None,
        done_field: "arguments",
        json: true,
    },
    TextEvent {
        delta: "response.custom_tool_call_input.delta",
        done: "response.custom_tool_call_input.done",
        part_field: None,
        done_field: "input",
        json: false,
    },
    TextEvent {
        delta: "response.reasoning_summary_text.delta",
        done: "response.reasoning_summary_text.done",
        part_field: Some("summary_index"),
        done_field: "text",
        json: false,
    },
    TextEvent {
        delta: "response.reasoning_text.delta",
        done: "response.reasoning_text.done",
        part_field: Some("content_index"),
        done_field: "text",
        json: false,
    },
];

/// Masks one Responses stream event in place and returns the events to send *before* it: the
/// held-back text of channels this event closes, as synthetic delta events. Deltas go through
/// the channel's stream masker; the whole texts in done events, finished items and the final
/// response are masked to the same result (their counts are not added again).
pub fn mask_responses_event(
    event: &mut Value,
    maskers: &mut ChunkMaskers,
    counts: &mut MaskCounts,
) -> Vec<Value> {
    let kind = match event.get("type").and_then(Value::as_str) {
        Some(kind) => EventKind::of(kind),
        None => return Vec::new(),
    };
    let output = event
        .get("output_index")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    match kind {
        EventKind::Delta(at) => {
            let channel = responses_channel(event, at, output);
            if let Some(logprobs) = event.get_mut("logprobs") {
                *logprobs = Value::Array(Vec::new());
            }
            let item_id = event.get("item_id").and_then(Value::as_str);
            let open = maskers.masker(channel, TEXT_EVENTS[at].json);
            if open.item_id.is_none() {
                open.item_id = item_id.map(str::to_string);
            }
            if let Some(Value::String(text)) = event.get_mut("delta") {
                *text = open.masker.push(text, counts);
            }
            Vec::new()
        }
        EventKind::Done(at) => {
            let channel = responses_channel(event, at, output);
            let before = flush_responses(maskers, event, counts, |open| *open == channel);
            if let Some(logprobs) = event.get_mut("logprobs") {
                *logprobs = Value::Array(Vec::new());
            }
            let text_event = &TEXT_EVENTS[at];
            if let Some(Value::String(text)) = event.get_mut(text_event.done_field) {
                *text = mask_whole(&maskers.prefixes, text_event.json, text);
            }
            before
        }
        EventKind::PartDone => {
            if let Some(Value::Object(part)) = event.get_mut("part") {
                for field in ["text", "refusal"] {
                    if let Some(Value::String(text)) = part.get_mut(field) {
                        *text = mask_whole(&maskers.prefixes, false, text);
                    }
                }
            }
            Vec::new()
        }
        EventKind::ItemDone => {
            let before = flush_responses(
                maskers,
                event,
                counts,
                |channel| matches!(channel, Channel::Responses { output: o, .. } if *o == output),
            );
            if let Some(item) = event.get_mut("item") {
                let mut body = serde_json::json!({ "output": [item.take()] });
                let masker = maskers.prefixes.masker();
                mask_response(
                    EndpointKind::Responses,
                    &mut body,
                    masker,
                    &mut MaskCounts::default(),
                );
                if let Some(masked) = body.pointer_mut("/output/0") {
                    *item = masked.take();
                }
            }
            before
        }
        EventKind::Response { ended } => {
            if let Some(response) = event.get_mut("response") {
                let masker = maskers.prefixes.masker();
                mask_response(
                    EndpointKind::Responses,
                    response,
                    masker,
                    &mut MaskCounts::default(),
                );
            }
            if ended {
                flush_responses(maskers, event, counts, |_| true)
            } else {
                Vec::new()
            }
        }
    }
}

/// What a Responses event type means for masking.
#[derive(Clone, Copy, Debug)]
enum EventKind {
    /// A delta of `TEXT_EVENTS[n]`.
    Delta(usize),
    /// The done event of `TEXT_EVENTS[n]`, with the whole text.
    Done(usize),
    /// A finished content or summary part, with its whole text.
    PartDone,
    /// A finished output item, with its whole text.
    ItemDone,
    /// Any other event; it may carry the response object. `ended`: the stream's last event.
    Response { ended: bool },
}

impl EventKind {
    fn of(kind: &str) -> EventKind {
        if let Some(at) = TEXT_EVENTS.iter().position(|text| text.delta == kind) {
            return EventKind::Delta(at);
        }
        if let Some(at) = TEXT_EVENTS.iter().position(|text| text.done == kind) {
            return EventKind::Done(at);
        }
        match kind {
            "response.content_part.done" | "response.reasoning_summary_part.done" => {
                EventKind::PartDone
            }
            "response.output_item.done" => EventKind::ItemDone,
            _ => EventKind::Response {
                ended: matches!(
                    kind,
                    "response.completed" | "response.incomplete" | "response.failed"
                ),
            },
        }
    }
}

fn responses_channel(event: &Value, at: usize, output: u64) -> Channel {
    let part = TEXT_EVENTS[at]
        .part_field
        .and_then(|field| event.get(field))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Channel::Responses {
        event: at,
        output,
        part,
    }
}

/// Closes the Responses channels `which` selects; their held text as synthetic deltas, numbered
/// like `event` (the event that closes them).
fn flush_responses(
    maskers: &mut ChunkMaskers,
    event: &Value,
    counts: &mut MaskCounts,
    which: impl Fn(&Channel) -> bool,
) -> Vec<Value> {
    let sequence = event.get("sequence_number").cloned();
    let closed =
        maskers.close(|channel| matches!(channel, Channel::Responses { .. }) && which(channel));
    let mut events = Vec::new();
    for mut open in closed {
        let held = open.masker.finish(counts);
        let Channel::Responses {
            event,
            output,
            part,
        } = open.channel
        else {
            continue;
        };
        if !held.is_empty() {
            let item_id = open.item_id.take();
            events.push(responses_delta(
                &TEXT_EVENTS[event],
                item_id,
                output,
                part,
                held,
                sequence.clone(),
            ));
        }
    }
    events
}

pub(super) fn responses_delta(
    text_event: &TextEvent,
    item_id: Option<String>,
    output: u64,
    part: u64,
    delta: String,
    sequence: Option<Value>,
) -> Value {
    let mut event = Map::new();
    event.insert("type".into(), text_event.delta.into());
    if let Some(item_id) = item_id {
        event.insert("item_id".into(), item_id.into());
    }
    event.insert("output_index".into(), output.into());
    if let Some(field) = text_event.part_field {
        event.insert(field.into(), part.into());
    }
    event.insert("delta".into(), delta.into());
    if text_event.delta == "response.output_text.delta" {
        event.insert("logprobs".into(), Value::Array(Vec::new()));
    }
    if let Some(sequence) = sequence {
        event.insert("sequence_number".into(), sequence);
    }
    Value::Object(event)
}

/// A whole text masked exactly as its deltas were (JSON texts keep valid escapes).
fn mask_whole(prefixes: &Arc<StreamPrefixes>, json: bool, text: &str) -> String {
    let mut ignored = MaskCounts::default();
    if json {
        let mut masker = StreamMasker::new_json(Arc::clone(prefixes));
        let mut masked = masker.push(text, &mut ignored);
        masked.push_str(&masker.finish(&mut ignored));
        masked
    } else {
        prefixes.masker().mask(text, &mut ignored).into_owned()
    }
}
