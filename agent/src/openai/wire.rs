//! The parts of OpenAI response bodies and stream events that assembly reads, as borrowed serde types.
//!
//! Every struct is `#[serde(default)]` with lenient strings, and undeclared fields are skipped
//! without being materialized, so a large or unfamiliar payload costs one scan and no allocations
//! beyond the strings kept.
use serde::Deserialize;

use super::assemble::Usage;
use super::lenient::LenientStr;

/// Chat: `prompt_tokens`/`completion_tokens`; Responses: `input_tokens`/`output_tokens`;
/// embeddings: `prompt_tokens` only.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct WireUsage {
    #[serde(alias = "prompt_tokens")]
    input_tokens: Option<u64>,
    #[serde(alias = "completion_tokens")]
    output_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(wire: WireUsage) -> Usage {
        let input_tokens = wire.input_tokens.unwrap_or(0);
        let output_tokens = wire.output_tokens.unwrap_or(0);
        Usage {
            input_tokens,
            output_tokens,
            total_tokens: wire
                .total_tokens
                .unwrap_or(input_tokens.saturating_add(output_tokens)),
        }
    }
}

/// `{"message","type","param","code"}` of an error body, a stream `error` event or a failed response.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct WireError<'a> {
    #[serde(borrow)]
    pub message: LenientStr<'a>,
    #[serde(borrow)]
    pub code: LenientStr<'a>,
    #[serde(rename = "type", borrow)]
    pub kind: LenientStr<'a>,
}

impl WireError<'_> {
    /// `code: message`, or whichever of them (or the type) is present.
    pub fn describe(&self) -> String {
        let message = self.message.as_deref();
        let code = self.code.as_deref().or(self.kind.as_deref());
        match (code, message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (None, Some(text)) | (Some(text), None) => text.to_owned(),
            (None, None) => "error".to_owned(),
        }
    }
}

/// A chat completion, a chat completion chunk, a (legacy) completion, or an error body.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ChatBody<'a> {
    #[serde(borrow)]
    pub choices: Option<Vec<ChatChoice<'a>>>,
    pub usage: Option<WireUsage>,
    #[serde(borrow)]
    pub error: Option<WireError<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ChatChoice<'a> {
    pub index: Option<u32>,
    /// Streamed chunks.
    #[serde(borrow)]
    pub delta: Option<ChatMessage<'a>>,
    /// Whole completions.
    #[serde(borrow)]
    pub message: Option<ChatMessage<'a>>,
    /// Legacy `/v1/completions`.
    #[serde(borrow)]
    pub text: LenientStr<'a>,
    #[serde(borrow)]
    pub finish_reason: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ChatMessage<'a> {
    #[serde(borrow)]
    pub content: LenientStr<'a>,
    #[serde(borrow)]
    pub refusal: LenientStr<'a>,
    #[serde(borrow)]
    pub tool_calls: Option<Vec<ChatToolCall<'a>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ChatToolCall<'a> {
    /// Always present in chunks; absent in whole messages, where position is the index.
    pub index: Option<u32>,
    #[serde(borrow)]
    pub id: LenientStr<'a>,
    #[serde(borrow)]
    pub function: Option<ChatFunction<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ChatFunction<'a> {
    #[serde(borrow)]
    pub name: LenientStr<'a>,
    #[serde(borrow)]
    pub arguments: LenientStr<'a>,
}

/// One Responses API stream event; which fields are set depends on `type`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ResponsesEvent<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: LenientStr<'a>,
    #[serde(borrow)]
    pub delta: LenientStr<'a>,
    pub output_index: Option<u32>,
    #[serde(borrow)]
    pub item_id: LenientStr<'a>,
    #[serde(borrow)]
    pub item: Option<OutputItem<'a>>,
    /// `response.function_call_arguments.done`.
    #[serde(borrow)]
    pub arguments: LenientStr<'a>,
    /// `response.custom_tool_call_input.done`.
    #[serde(borrow)]
    pub input: LenientStr<'a>,
    #[serde(borrow)]
    pub response: Option<ResponseObject<'a>>,
    /// `error` events carry `code`/`message` at the top level.
    #[serde(borrow)]
    pub message: LenientStr<'a>,
    #[serde(borrow)]
    pub code: LenientStr<'a>,
    /// …or, in some deployments, nested.
    #[serde(borrow)]
    pub error: Option<WireError<'a>>,
}

/// A Responses API `response` object (whole body, or inside `response.completed` and friends).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ResponseObject<'a> {
    #[serde(borrow)]
    pub status: LenientStr<'a>,
    #[serde(borrow)]
    pub output: Option<Vec<OutputItem<'a>>>,
    pub usage: Option<WireUsage>,
    #[serde(borrow)]
    pub error: Option<WireError<'a>>,
    #[serde(borrow)]
    pub incomplete_details: Option<IncompleteDetails<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct IncompleteDetails<'a> {
    #[serde(borrow)]
    pub reason: LenientStr<'a>,
}

/// An item of a response's `output`: `message`, `function_call`, `custom_tool_call`, `reasoning`, …
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct OutputItem<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: LenientStr<'a>,
    #[serde(borrow)]
    pub id: LenientStr<'a>,
    #[serde(borrow)]
    pub call_id: LenientStr<'a>,
    #[serde(borrow)]
    pub name: LenientStr<'a>,
    #[serde(borrow)]
    pub arguments: LenientStr<'a>,
    /// A custom tool call's input, its counterpart of `arguments`.
    #[serde(borrow)]
    pub input: LenientStr<'a>,
    #[serde(borrow)]
    pub content: Option<Vec<ContentPart<'a>>>,
}

impl OutputItem<'_> {
    /// Function and custom tool calls are the items assembled as tool calls.
    pub fn is_tool_call(&self) -> bool {
        matches!(
            self.kind.as_deref(),
            Some("function_call" | "custom_tool_call")
        )
    }

    /// The id the model's caller answers with (`call_id`), else the item id.
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref().or(self.id.as_deref())
    }

    pub fn call_arguments(&self) -> Option<&str> {
        self.arguments.as_deref().or(self.input.as_deref())
    }
}

/// `{"type":"output_text","text":…}` or `{"type":"refusal","refusal":…}`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ContentPart<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: LenientStr<'a>,
    #[serde(borrow)]
    pub text: LenientStr<'a>,
    #[serde(borrow)]
    pub refusal: LenientStr<'a>,
}

/// An embeddings response (the vectors are skipped) or an error body.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct UsageBody<'a> {
    pub usage: Option<WireUsage>,
    #[serde(borrow)]
    pub error: Option<WireError<'a>>,
}
