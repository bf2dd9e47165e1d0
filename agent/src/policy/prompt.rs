//! Finds the prompt and completion text fields of OpenAI request/response JSON, to match or mask them.
use serde::de::IgnoredAny;
use serde_json::Value;

use super::mask::{MaskCounts, Masker};
use crate::openai::endpoint::EndpointKind;

/// One step from a JSON value to a child; the keys are the field names this walker knows.
#[derive(Clone, Copy, Debug)]
enum Step {
    Key(&'static str),
    Index(usize),
    /// The n-th value of an object with caller-chosen keys (prompt template variables); the
    /// walk and the rewrite see the same unchanged object, so positions agree.
    Nth(usize),
}

/// How a text field holds its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextKind {
    /// Plain text (message content, instructions, tool output).
    Plain,
    /// JSON encoded in a string (tool-call arguments): masked as text, but must stay valid JSON.
    Json,
}

type Visit<'v, 'a> = dyn FnMut(&[Step], &'v str, TextKind) + 'a;

/// Every prompt text of a request body, in document order: chat messages (content strings and
/// text parts, refusals, tool-call arguments, tool results) and predicted output, Responses
/// `input`, `instructions` and prompt-template variables, embeddings `input`, legacy `prompt`.
pub fn prompt_texts(body: &Value) -> Vec<&str> {
    let mut texts = Vec::new();
    walk_request(body, &mut Vec::new(), &mut |_, text, _| texts.push(text));
    texts
}

/// Masks every prompt text of a request body in place (only string values change); true if
/// anything changed.
pub fn mask_request(body: &mut Value, masker: &Masker, counts: &mut MaskCounts) -> bool {
    let fields = text_fields(body, walk_request);
    mask_fields(body, fields, masker, counts)
}

/// Masks the generated text of a non-streamed response body in place: chat/completions message
/// content, refusals and tool-call arguments; Responses output text, refusals, function-call
/// arguments and reasoning summaries. True if anything changed.
pub fn mask_response(
    endpoint: EndpointKind,
    body: &mut Value,
    masker: &Masker,
    counts: &mut MaskCounts,
) -> bool {
    let fields = match endpoint {
        EndpointKind::ChatCompletions | EndpointKind::Completions => {
            text_fields(body, walk_choices)
        }
        EndpointKind::Responses => text_fields(body, walk_response_output),
        _ => return false,
    };
    mask_fields(body, fields, masker, counts)
}

type Walker = for<'v> fn(&'v Value, &mut Vec<Step>, &mut Visit<'v, '_>);

fn text_fields(body: &Value, walker: Walker) -> Vec<(Vec<Step>, TextKind)> {
    let mut fields = Vec::new();
    walker(body, &mut Vec::new(), &mut |path, _, kind| {
        fields.push((path.to_vec(), kind))
    });
    fields
}

fn mask_fields(
    body: &mut Value,
    fields: Vec<(Vec<Step>, TextKind)>,
    masker: &Masker,
    counts: &mut MaskCounts,
) -> bool {
    let mut changed = false;
    for (path, kind) in fields {
        let Some(Value::String(text)) = resolve_mut(body, &path) else {
            continue;
        };
        let masked = match kind {
            TextKind::Plain => masker.mask(text, counts).into_owned_if_changed(),
            TextKind::Json => mask_json_text(text, masker, counts),
        };
        if let Some(masked) = masked {
            *text = masked;
            changed = true;
        }
    }
    changed
}

trait IntoOwnedIfChanged {
    fn into_owned_if_changed(self) -> Option<String>;
}

impl IntoOwnedIfChanged for std::borrow::Cow<'_, str> {
    fn into_owned_if_changed(self) -> Option<String> {
        match self {
            std::borrow::Cow::Owned(masked) => Some(masked),
            std::borrow::Cow::Borrowed(_) => None,
        }
    }
}

/// Masks JSON-encoded text as text, so its formatting survives. If that cut through an escape
/// sequence (`\nbob@example.com` matches from the `n`) and broke once-valid JSON, the decoded
/// strings are masked instead and the value re-encoded.
fn mask_json_text(text: &str, masker: &Masker, counts: &mut MaskCounts) -> Option<String> {
    let mut text_counts = MaskCounts::default();
    let masked = masker
        .mask(text, &mut text_counts)
        .into_owned_if_changed()?;
    let still_json = || serde_json::from_str::<IgnoredAny>(&masked).is_ok();
    let was_json = || serde_json::from_str::<IgnoredAny>(text).is_ok();
    if still_json() || !was_json() {
        counts.merge(&text_counts);
        return Some(masked);
    }
    let mut decoded: Value = serde_json::from_str(text).ok()?;
    mask_all_strings(&mut decoded, masker, counts);
    Some(decoded.to_string())
}

fn mask_all_strings(value: &mut Value, masker: &Masker, counts: &mut MaskCounts) {
    match value {
        Value::String(text) => {
            if let Some(masked) = masker.mask(text, counts).into_owned_if_changed() {
                *text = masked;
            }
        }
        // A card or phone number sent as a JSON number is as sensitive as one in a string.
        Value::Number(number) => {
            let text = number.to_string();
            if let Some(masked) = masker.mask(&text, counts).into_owned_if_changed() {
                *value = Value::String(masked);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| mask_all_strings(item, masker, counts)),
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|field| mask_all_strings(field, masker, counts)),
        _ => {}
    }
}

fn resolve_mut<'v>(mut value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    for step in path {
        value = match step {
            Step::Key(key) => value.get_mut(*key)?,
            Step::Index(index) => value.get_mut(*index)?,
            Step::Nth(nth) => value.as_object_mut()?.values_mut().nth(*nth)?,
        };
    }
    Some(value)
}

/// Visits `value[key]` with `visit_child` if present.
fn child<'v>(
    value: &'v Value,
    key: &'static str,
    path: &mut Vec<Step>,
    visit: &mut Visit<'v, '_>,
    visit_child: fn(&'v Value, &mut Vec<Step>, &mut Visit<'v, '_>),
) {
    if let Some(field) = value.get(key) {
        path.push(Step::Key(key));
        visit_child(field, path, visit);
        path.pop();
    }
}

fn each<'v>(
    value: &'v Value,
    path: &mut Vec<Step>,
    visit: &mut Visit<'v, '_>,
    visit_item: fn(&'v Value, &mut Vec<Step>, &mut Visit<'v, '_>),
) {
    if let Value::Array(items) = value {
        for (index, item) in items.iter().enumerate() {
            path.push(Step::Index(index));
            visit_item(item, path, visit);
            path.pop();
        }
    }
}

fn each_value<'v>(
    value: &'v Value,
    path: &mut Vec<Step>,
    visit: &mut Visit<'v, '_>,
    visit_item: fn(&'v Value, &mut Vec<Step>, &mut Visit<'v, '_>),
) {
    if let Value::Object(fields) = value {
        for (nth, field) in fields.values().enumerate() {
            path.push(Step::Nth(nth));
            visit_item(field, path, visit);
            path.pop();
        }
    }
}

#[allow(clippy::ptr_arg)] // shares the walker signature, which pushes and pops
fn plain<'v>(value: &'v Value, path: &mut Vec<Step>, visit: &mut Visit<'v, '_>) {
    if let Value::String(text) = value {
        visit(path, text, TextKind::Plain);
    }
}

#[allow(clippy::ptr_arg)] // shares the walker signature, which pushes and pops
fn json<'v>(value: &'v Value, path: &mut Vec<Step>, visit: &mut Visit<'v, '_>) {
    if let Value::String(text) = value {
        visit(path, text, TextKind::Json);
    }
}

/// A string, or an array of strings (embeddings and completions inputs; token arrays are skipped).
fn plain_or_strings<'v>(value: &'v Value, path: &mut Vec<Step>, visit: &mut Visit<'v, '_>) {
    plain(value, path, visit);
    each(value, path, visit, plain);
}

/// Message content: a string, or parts whose text lives in `text` (text, input_text,
/// output_text, summary_text) or `refusal`.
fn content<'v>(value: &'v Value, path: &mut Vec<Step>, visit: &mut Visit<'v, '_>) {
    plain(value, path, visit);
    each(value, path, visit, part);
}

fn part<'v>(value: &'v Value, path: &mut Vec<Step>, visit: &mut Visit<'v, '_>) {
    child(value, "text", path, visit, plain);
    child(value, "refusal", path, visit, plain);
}

fn walk_request<'v>(body: &'v Value, path: &mut Vec<Step>, visit: &mut Visit<'v, '_>) {
    child(body, "messages", path, visit, |messages, path, visit| {
        each(messages, path, visit, chat_message)
    });
    child(body, "instructions", path, visit, plain);
    child(body, "input", path, visit, |input, path, visit| {
        plain(input, path, visit);
        each(input, path, visit, |item, path, visit| {
            plain(item, path, visit);
            item_text(item, path, visit);
        });
    });
    child(body, "prompt", path, visit, |prompt, path, visit| {
        plain_or_strings(prompt, path, visit);
        // A Responses prompt template: its variables are strings or input_text parts.
        child(
            prompt,
            "variables",
            path,
            visit,
            |variables, path, visit| {
                each_value(variables, path, visit, |variable, path, visit| {
                    plain(variable, path, visit);
                    part(variable, path, visit);
                })
            },
        );
    });
    // Predicted outputs are sent to the model like prompt text.
    child(
        body,
        "prediction",
        path,
        visit,
        |prediction, path, visit| child(prediction, "content", path, visit, content),
    );
}

/// A chat message (request history or response choice).
fn chat_message<'v>(message: &'v Value, path: &mut Vec<Step>, visit: &mut Visit<'v, '_>) {
    child(message, "content", path, visit, content);
    child(message, "refusal", path, visit, plain);
    child(message, "audio", path, visit, |audio, path, visit| {
        child(audio, "transcript", path, visit, plain)
    });
    child(message, "tool_calls", path, visit, |calls, path, visit| {
        each(calls, path, visit, |call, path, visit| {
            child(call, "function", path, visit, |function, path, visit| {
                child(function, "arguments", path, visit, json)
            });
            child(call, "custom", path, visit, |custom, path, visit| {
                child(custom, "input", path, visit, plain)
            });
        })
    });
    child(
        message,
        "function_call",
        path,
        visit,
        |function, path, visit| child(function, "arguments", path, visit, json),
    );
}

/// A Responses item (input or output): a message's content, a function call's arguments, a tool
/// result's output, a custom tool call's input, a reasoning summary.
fn item_text<'v>(item: &'v Value, path: &mut Vec<Step>, visit: &mut Visit<'v, '_>) {
    child(item, "content", path, visit, content);
    child(item, "arguments", path, visit, json);
    child(item, "output", path, visit, content);
    child(item, "input", path, visit, plain);
    child(item, "summary", path, visit, |summary, path, visit| {
        each(summary, path, visit, part)
    });
}

fn walk_choices<'v>(body: &'v Value, path: &mut Vec<Step>, visit: &mut Visit<'v, '_>) {
    child(body, "choices", path, visit, |choices, path, visit| {
        each(choices, path, visit, |choice, path, visit| {
            child(choice, "message", path, visit, chat_message);
            child(choice, "text", path, visit, plain);
        })
    });
}

fn walk_response_output<'v>(body: &'v Value, path: &mut Vec<Step>, visit: &mut Visit<'v, '_>) {
    child(body, "output", path, visit, |output, path, visit| {
        each(output, path, visit, item_text)
    });
    child(body, "output_text", path, visit, plain);
}

#[cfg(test)]
#[path = "prompt_tests.rs"]
mod tests;
