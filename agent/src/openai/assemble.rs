//! Assemble what a response said (text, refusal, tool calls, usage) from JSON bodies and SSE events.
//!
//! Chat completions: only choice 0 is assembled (text, refusal, tool calls, finish reason); other
//! choices (`n > 1`) stay in the raw events/body. Responses API: text and refusal deltas of every
//! output item are joined in arrival order; tool calls are keyed by `output_index`.
use serde::{Deserialize, Serialize};

use super::endpoint::EndpointKind;
use super::sse::SseEvent;
use super::wire::{
    ChatBody, ChatChoice, ChatToolCall, OutputItem, ResponseObject, ResponsesEvent, UsageBody,
    WireError,
};

/// Token counts, whichever API reported them (chat: prompt/completion; responses: input/output).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

/// One tool call, its arguments joined across deltas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// What came back, assembled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Assembled {
    pub text: String,
    pub refusal: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// An `error` event or error body, as the upstream said it.
    pub error: Option<String>,
}

impl Assembled {
    /// The tool call with `index`, created (in index order) if new.
    fn tool_call_mut(&mut self, index: u32) -> &mut ToolCall {
        let position = match self
            .tool_calls
            .binary_search_by_key(&index, |call| call.index)
        {
            Ok(position) => position,
            Err(position) => {
                let call = ToolCall {
                    index,
                    ..ToolCall::default()
                };
                self.tool_calls.insert(position, call);
                position
            }
        };
        &mut self.tool_calls[position]
    }

    fn push_refusal(&mut self, delta: &str) {
        self.refusal.get_or_insert_with(String::new).push_str(delta);
    }
}

/// Builds an [`Assembled`] from a response's SSE events, one event at a time.
#[derive(Debug)]
pub struct StreamAssembler {
    responses_api: bool,
    assembled: Assembled,
    /// `[DONE]` or a terminal `response.*` event arrived.
    complete: bool,
    /// Responses API: whether text arrived as deltas (else it is taken from the final response).
    streamed_text: bool,
    /// Responses API: function-call item ids by output index, for deltas that lack the index.
    item_indexes: Vec<(String, u32)>,
    /// Events whose data is not JSON of the expected shape (a malformed stream).
    unreadable: u64,
}

impl StreamAssembler {
    /// Responses API streams are read as `response.*` events; every other kind as chat
    /// completion (or legacy completion) chunks.
    pub fn new(kind: EndpointKind) -> Self {
        StreamAssembler {
            responses_api: kind == EndpointKind::Responses,
            assembled: Assembled::default(),
            complete: false,
            streamed_text: false,
            item_indexes: Vec::new(),
            unreadable: 0,
        }
    }

    /// How many events had data that is not JSON of the expected shape.
    pub fn unreadable_events(&self) -> u64 {
        self.unreadable
    }

    /// Folds one event in; returns the text it added (content, refusal or tool-call arguments),
    /// if any. Events that are not JSON of the expected shape are ignored.
    pub fn on_event(&mut self, event: &SseEvent) -> Option<String> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.complete = true;
            return None;
        }
        if data.is_empty() {
            return None;
        }
        if self.responses_api {
            let Ok(event) = serde_json::from_str::<ResponsesEvent>(data) else {
                self.unreadable += 1;
                return None;
            };
            self.on_responses_event(event)
        } else {
            let Ok(chunk) = serde_json::from_str::<ChatBody>(data) else {
                self.unreadable += 1;
                return None;
            };
            self.on_chat_chunk(chunk)
        }
    }

    /// Whether the stream said it was done (`[DONE]`, `response.completed|incomplete|failed`).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// What has been assembled so far (an aborted stream's partial result).
    pub fn snapshot(&self) -> Assembled {
        self.assembled.clone()
    }

    pub fn finish(self) -> Assembled {
        self.assembled
    }

    fn on_chat_chunk(&mut self, chunk: ChatBody) -> Option<String> {
        let assembled = &mut self.assembled;
        if let Some(error) = chunk.error {
            assembled.error = Some(error.describe());
        }
        if let Some(usage) = chunk.usage {
            assembled.usage = Some(usage.into());
        }
        let mut added = Added::default();
        let first = chunk
            .choices
            .into_iter()
            .flatten()
            .find(|choice| choice.index.unwrap_or(0) == 0)?;
        if let Some(reason) = first.finish_reason.into_string() {
            assembled.finish_reason = Some(reason);
        }
        if let Some(text) = first.text.as_deref() {
            assembled.text.push_str(text);
            added.push(text);
        }
        let Some(delta) = first.delta else {
            return added.0;
        };
        if let Some(content) = delta.content.as_deref() {
            assembled.text.push_str(content);
            added.push(content);
        }
        if let Some(refusal) = delta.refusal.as_deref() {
            assembled.push_refusal(refusal);
            added.push(refusal);
        }
        for (position, call_delta) in delta.tool_calls.into_iter().flatten().enumerate() {
            let index = call_delta.index.unwrap_or(position as u32);
            let ChatToolCall { id, function, .. } = call_delta;
            let call = assembled.tool_call_mut(index);
            if call.id.is_none() {
                call.id = id.into_string();
            }
            if let Some(function) = function {
                if call.name.is_none() {
                    call.name = function.name.into_string();
                }
                if let Some(arguments) = function.arguments.as_deref() {
                    call.arguments.push_str(arguments);
                    added.push(arguments);
                }
            }
        }
        added.0
    }

    fn on_responses_event(&mut self, event: ResponsesEvent) -> Option<String> {
        let assembled = &mut self.assembled;
        match event.kind.as_deref()? {
            "response.output_text.delta" => {
                let delta = event.delta.as_deref()?;
                self.streamed_text = true;
                assembled.text.push_str(delta);
                non_empty(delta)
            }
            "response.refusal.delta" => {
                let delta = event.delta.as_deref()?;
                assembled.push_refusal(delta);
                non_empty(delta)
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                let delta = event.delta.as_deref()?;
                let index = self.index_of(event.output_index, event.item_id.as_deref());
                self.assembled
                    .tool_call_mut(index)
                    .arguments
                    .push_str(delta);
                non_empty(delta)
            }
            "response.function_call_arguments.done" | "response.custom_tool_call_input.done" => {
                let index = self.index_of(event.output_index, event.item_id.as_deref());
                let whole = event.arguments.as_deref().or(event.input.as_deref());
                fill_missing_arguments(self.assembled.tool_call_mut(index), whole);
                None
            }
            "response.output_item.added" | "response.output_item.done" => {
                let item = event.item.filter(OutputItem::is_tool_call)?;
                let index = event.output_index.unwrap_or(0);
                if let Some(item_id) = item.id.as_deref() {
                    if !self.item_indexes.iter().any(|(id, _)| id == item_id) {
                        self.item_indexes.push((item_id.to_owned(), index));
                    }
                }
                merge_tool_call_item(self.assembled.tool_call_mut(index), &item);
                None
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.complete = true;
                let response = event.response?;
                apply_response(assembled, response, !self.streamed_text);
                None
            }
            "error" => {
                assembled.error = Some(match event.error {
                    Some(nested) => nested.describe(),
                    None => WireError {
                        message: event.message,
                        code: event.code,
                        kind: Default::default(),
                    }
                    .describe(),
                });
                None
            }
            _ => None,
        }
    }

    fn index_of(&self, output_index: Option<u32>, item_id: Option<&str>) -> u32 {
        output_index
            .or_else(|| {
                let item_id = item_id?;
                let (_, index) = self.item_indexes.iter().find(|(id, _)| id == item_id)?;
                Some(*index)
            })
            .unwrap_or(0)
    }
}

/// The text one event added, joined if it added several pieces.
#[derive(Default)]
struct Added(Option<String>);

impl Added {
    fn push(&mut self, piece: &str) {
        if !piece.is_empty() {
            self.0.get_or_insert_with(String::new).push_str(piece);
        }
    }
}

fn non_empty(delta: &str) -> Option<String> {
    (!delta.is_empty()).then(|| delta.to_owned())
}

fn fill_missing_arguments(call: &mut ToolCall, whole: Option<&str>) {
    if let Some(whole) = whole {
        if call.arguments.is_empty() {
            call.arguments.push_str(whole);
        }
    }
}

fn merge_tool_call_item(call: &mut ToolCall, item: &OutputItem) {
    if call.id.is_none() {
        call.id = item.call_id().map(str::to_owned);
    }
    if call.name.is_none() {
        call.name = item.name.as_deref().map(str::to_owned);
    }
    fill_missing_arguments(call, item.call_arguments());
}

/// Takes status, usage and error from a final response object; its output fills text and tool
/// calls that were not streamed (`take_text`: no text deltas arrived).
fn apply_response(assembled: &mut Assembled, response: ResponseObject, take_text: bool) {
    if let Some(usage) = response.usage {
        assembled.usage = Some(usage.into());
    }
    if let Some(error) = response.error {
        assembled.error = Some(error.describe());
    }
    let incomplete_reason = response
        .incomplete_details
        .and_then(|details| details.reason.into_string());
    if let Some(status) = incomplete_reason.or_else(|| response.status.into_string()) {
        assembled.finish_reason = Some(status);
    }
    let take_refusal = assembled.refusal.is_none();
    for (position, item) in response.output.into_iter().flatten().enumerate() {
        if item.is_tool_call() {
            merge_tool_call_item(assembled.tool_call_mut(position as u32), &item);
            continue;
        }
        if item.kind.as_deref() != Some("message") {
            continue;
        }
        for part in item.content.into_iter().flatten() {
            match part.kind.as_deref() {
                Some("output_text") if take_text => {
                    assembled
                        .text
                        .push_str(part.text.as_deref().unwrap_or_default());
                }
                Some("refusal") if take_refusal => {
                    assembled.push_refusal(part.refusal.as_deref().unwrap_or_default());
                }
                _ => {}
            }
        }
    }
}

fn apply_chat_choice(assembled: &mut Assembled, choice: ChatChoice) {
    assembled.finish_reason = choice.finish_reason.into_string();
    if let Some(text) = choice.text.as_deref() {
        assembled.text.push_str(text);
    }
    let Some(message) = choice.message else {
        return;
    };
    if let Some(content) = message.content.as_deref() {
        assembled.text.push_str(content);
    }
    assembled.refusal = message.refusal.into_string();
    for (position, call) in message.tool_calls.into_iter().flatten().enumerate() {
        let function = call.function.unwrap_or_default();
        assembled.tool_calls.push(ToolCall {
            index: call.index.unwrap_or(position as u32),
            id: call.id.into_string(),
            name: function.name.into_string(),
            arguments: function.arguments.into_string().unwrap_or_default(),
        });
    }
}

/// Assembles a whole (non-streamed) JSON response body: chat completions and legacy completions
/// (choice 0), a Responses API object, embeddings (usage only), or any endpoint's error body.
/// `None` when the body is not JSON of such a shape (or, for other endpoints, not an error).
pub fn assemble_json(kind: EndpointKind, body: &[u8]) -> Option<Assembled> {
    let mut assembled = Assembled::default();
    match kind {
        EndpointKind::ChatCompletions | EndpointKind::Completions => {
            let body = serde_json::from_slice::<ChatBody>(body).ok()?;
            assembled.usage = body.usage.map(Into::into);
            assembled.error = body.error.map(|error| error.describe());
            let first = body
                .choices
                .into_iter()
                .flatten()
                .find(|choice| choice.index.unwrap_or(0) == 0);
            if let Some(choice) = first {
                apply_chat_choice(&mut assembled, choice);
            }
        }
        EndpointKind::Responses => {
            let response = serde_json::from_slice::<ResponseObject>(body).ok()?;
            apply_response(&mut assembled, response, true);
        }
        EndpointKind::Embeddings => {
            let body = serde_json::from_slice::<UsageBody>(body).ok()?;
            assembled.usage = body.usage.map(Into::into);
            assembled.error = body.error.map(|error| error.describe());
        }
        EndpointKind::Files
        | EndpointKind::Batches
        | EndpointKind::Models
        | EndpointKind::Other => {
            let body = serde_json::from_slice::<UsageBody>(body).ok()?;
            assembled.error = Some(body.error?.describe());
        }
    }
    Some(assembled)
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;
