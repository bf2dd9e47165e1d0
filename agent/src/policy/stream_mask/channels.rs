//! The text channels of one response stream, each with its own stream masker, and their flush.
use std::sync::Arc;

use serde_json::{Map, Value};

use super::chat::append_chat_text;
use super::responses::{responses_delta, TEXT_EVENTS};
use super::{StreamMasker, StreamPrefixes};
use crate::policy::mask::MaskCounts;

/// One text channel of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Channel {
    /// `choices[choice].delta.<field>` (or `.text` for legacy completions).
    Chat { choice: u64, field: ChatField },
    /// The `TEXT_EVENTS[event]` deltas of output `output`, content/summary part `part`.
    Responses {
        event: usize,
        output: u64,
        part: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChatField {
    Content,
    Refusal,
    Text,
    ToolArguments(u64),
    FunctionArguments,
}

pub(super) struct OpenChannel {
    pub(super) channel: Channel,
    pub(super) masker: StreamMasker,
    /// Responses: the item the deltas belong to, repeated in a synthetic delta.
    pub(super) item_id: Option<String>,
}

/// The stream maskers of one response stream, one per text channel, opened on first use.
pub struct ChunkMaskers {
    pub(super) prefixes: Arc<StreamPrefixes>,
    open: Vec<OpenChannel>,
    /// The first chat chunk's fields other than `choices` (id, model, …), for a synthetic chunk.
    pub(super) envelope: Option<Map<String, Value>>,
}

impl ChunkMaskers {
    pub fn new(prefixes: Arc<StreamPrefixes>) -> ChunkMaskers {
        ChunkMaskers {
            prefixes,
            open: Vec::new(),
            envelope: None,
        }
    }

    /// Bytes held back over all channels.
    pub fn held(&self) -> usize {
        self.open.iter().map(|open| open.masker.held()).sum()
    }

    /// The stream ended: what every channel still holds, masked, as events to send before the
    /// end (`[DONE]`): one chat chunk for all chat channels, one delta event per Responses
    /// channel. Empty if nothing is held.
    pub fn flush(&mut self, counts: &mut MaskCounts) -> Vec<Value> {
        let mut events = Vec::new();
        let mut choices: Vec<(u64, Map<String, Value>)> = Vec::new();
        for mut open in std::mem::take(&mut self.open) {
            let held = open.masker.finish(counts);
            if held.is_empty() {
                continue;
            }
            match open.channel {
                Channel::Chat { choice, field } => {
                    let at = match choices.iter().position(|(index, _)| *index == choice) {
                        Some(at) => at,
                        None => {
                            choices.push((choice, Map::new()));
                            choices.len() - 1
                        }
                    };
                    append_chat_text(&mut choices[at].1, field, &held);
                }
                Channel::Responses {
                    event,
                    output,
                    part,
                } => events.push(responses_delta(
                    &TEXT_EVENTS[event],
                    open.item_id.take(),
                    output,
                    part,
                    held,
                    None,
                )),
            }
        }
        if !choices.is_empty() {
            let mut chunk = self.envelope.clone().unwrap_or_default();
            let choices = choices
                .into_iter()
                .map(|(index, delta)| {
                    let mut choice = Map::new();
                    choice.insert("index".into(), index.into());
                    choice.insert("delta".into(), Value::Object(delta));
                    choice.insert("finish_reason".into(), Value::Null);
                    Value::Object(choice)
                })
                .collect();
            chunk.insert("choices".into(), Value::Array(choices));
            events.insert(0, Value::Object(chunk));
        }
        events
    }

    pub(super) fn masker(&mut self, channel: Channel, json: bool) -> &mut OpenChannel {
        let at = match self.open.iter().position(|open| open.channel == channel) {
            Some(at) => at,
            None => {
                let prefixes = Arc::clone(&self.prefixes);
                let masker = if json {
                    StreamMasker::new_json(prefixes)
                } else {
                    StreamMasker::new(prefixes)
                };
                self.open.push(OpenChannel {
                    channel,
                    masker,
                    item_id: None,
                });
                self.open.len() - 1
            }
        };
        &mut self.open[at]
    }

    /// Closes every channel `which` selects, in the order they opened.
    pub(super) fn close(&mut self, which: impl Fn(&Channel) -> bool) -> Vec<OpenChannel> {
        let (closed, open) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|open| which(&open.channel));
        self.open = open;
        closed
    }
}
