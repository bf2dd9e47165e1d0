//! What an exchange said in words: the prompt in a request body, the text in each stream event.
use serde_json::Value;

use crate::audit::record::{RecordedBody, StreamEvent};

/// One labelled piece of a prompt: a chat message (`user`), `instructions`, a Responses input item.
#[derive(Debug, PartialEq, Eq)]
pub struct PromptPart {
    pub label: String,
    pub text: String,
}

impl PromptPart {
    fn new(label: impl Into<String>, text: impl Into<String>) -> Self {
        PromptPart {
            label: label.into(),
            text: text.into(),
        }
    }
}

/// The prompt of a request to `endpoint`; None when the body is not recorded, not JSON (e.g.
/// truncated) or the endpoint carries no prompt.
pub fn prompt(endpoint: &str, body: &RecordedBody) -> Option<Vec<PromptPart>> {
    let json: Value = serde_json::from_str(body.text.as_deref()?).ok()?;
    let parts = match endpoint {
        "chat.completions" => json["messages"]
            .as_array()?
            .iter()
            .map(chat_message)
            .collect(),
        "responses" => responses_prompt(&json),
        "completions" => vec![PromptPart::new("prompt", content_text(&json["prompt"]))],
        "embeddings" => vec![PromptPart::new("input", content_text(&json["input"]))],
        _ => return None,
    };
    Some(parts)
}

fn chat_message(message: &Value) -> PromptPart {
    let role = message["role"].as_str().unwrap_or("?");
    let mut lines: Vec<String> = Vec::new();
    let content = content_text(&message["content"]);
    if !content.is_empty() {
        lines.push(content);
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let function = &call["function"];
        lines.push(tool_call(&function["name"], &function["arguments"]));
    }
    PromptPart::new(role, lines.join("\n"))
}

fn responses_prompt(json: &Value) -> Vec<PromptPart> {
    let mut parts = Vec::new();
    if let Some(instructions) = json["instructions"].as_str() {
        parts.push(PromptPart::new("instructions", instructions));
    }
    match &json["input"] {
        Value::String(text) => parts.push(PromptPart::new("user", text.as_str())),
        Value::Array(items) => parts.extend(items.iter().map(responses_input_item)),
        _ => {}
    }
    parts
}

fn responses_input_item(item: &Value) -> PromptPart {
    match item["type"].as_str() {
        Some("function_call") => {
            PromptPart::new("tool call", tool_call(&item["name"], &item["arguments"]))
        }
        Some("function_call_output") => {
            PromptPart::new("tool output", content_text(&item["output"]))
        }
        // A message item may omit `type`: `{"role": "user", "content": …}`.
        None | Some("message") => PromptPart::new(
            item["role"].as_str().unwrap_or("?"),
            content_text(&item["content"]),
        ),
        Some(other) => PromptPart::new(other, item.to_string()),
    }
}

/// A message's content: a string, or content parts whose text is joined and others named.
fn content_text(content: &Value) -> String {
    match content {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match (&part["text"], part["type"].as_str()) {
                (Value::String(text), _) => text.clone(),
                (_, Some(kind)) => format!("[{kind}]"),
                _ => content_text(part),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

fn tool_call(name: &Value, arguments: &Value) -> String {
    let arguments = match arguments {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    format!("{}({arguments})", name.as_str().unwrap_or("?"))
}

/// What one stream event added to the response.
#[derive(Debug, PartialEq, Eq)]
pub enum Delta {
    Text(String),
    Refusal(String),
    /// A tool call begins (its name); its arguments follow as `ToolArguments`.
    ToolCall(String),
    ToolArguments(String),
    Error(String),
}

/// The deltas in one event of a chat completions or Responses stream (both shapes are recognized,
/// so the endpoint does not matter); events that add no text yield none.
pub fn stream_deltas(event: &StreamEvent) -> Vec<Delta> {
    let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
        return Vec::new(); // `[DONE]` and anything else that is not JSON
    };
    if let Some(error) = data.get("error").filter(|e| !e.is_null()) {
        if data.get("choices").is_none() && data.get("type").is_none() {
            return vec![Delta::Error(error_message(error))];
        }
    }
    if let Some(choices) = data["choices"].as_array() {
        return choices.iter().flat_map(chat_choice_deltas).collect();
    }
    let kind = data["type"].as_str().or(event.event.as_deref());
    let delta = || data["delta"].as_str().unwrap_or_default().to_string();
    let delta = match kind {
        Some("response.output_text.delta") => Delta::Text(delta()),
        Some("response.refusal.delta") => Delta::Refusal(delta()),
        Some("response.function_call_arguments.delta") => Delta::ToolArguments(delta()),
        Some("response.output_item.added") if data["item"]["type"] == "function_call" => {
            Delta::ToolCall(data["item"]["name"].as_str().unwrap_or("?").to_string())
        }
        Some("error") => Delta::Error(error_message(&data)),
        Some("response.failed") => Delta::Error(error_message(&data["response"]["error"])),
        _ => return Vec::new(),
    };
    vec![delta]
}

fn chat_choice_deltas(choice: &Value) -> Vec<Delta> {
    let delta = &choice["delta"];
    let mut deltas = Vec::new();
    // Legacy completions stream `choices[].text`.
    for text in [&delta["content"], &choice["text"]] {
        if let Some(text) = text.as_str().filter(|t| !t.is_empty()) {
            deltas.push(Delta::Text(text.to_string()));
        }
    }
    if let Some(refusal) = delta["refusal"].as_str().filter(|t| !t.is_empty()) {
        deltas.push(Delta::Refusal(refusal.to_string()));
    }
    for call in delta["tool_calls"].as_array().into_iter().flatten() {
        if let Some(name) = call["function"]["name"].as_str() {
            deltas.push(Delta::ToolCall(name.to_string()));
        }
        if let Some(arguments) = call["function"]["arguments"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            deltas.push(Delta::ToolArguments(arguments.to_string()));
        }
    }
    deltas
}

fn error_message(error: &Value) -> String {
    error["message"]
        .as_str()
        .map_or_else(|| error.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> RecordedBody {
        RecordedBody {
            content_type: Some("application/json".into()),
            size: json.len() as u64,
            text: Some(json.into()),
            truncated: false,
        }
    }

    fn parts(endpoint: &str, json: &str) -> Vec<(String, String)> {
        prompt(endpoint, &body(json))
            .unwrap()
            .into_iter()
            .map(|p| (p.label, p.text))
            .collect()
    }

    fn pair(label: &str, text: &str) -> (String, String) {
        (label.into(), text.into())
    }

    #[test]
    fn chat_prompts_are_role_and_content() {
        let json = r#"{"model":"gpt-4o","messages":[
            {"role":"system","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"What is this?"},
                                      {"type":"image_url","image_url":{"url":"data:…"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
                "function":{"name":"lookup","arguments":"{\"q\":\"x\"}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"}]}"#;
        assert_eq!(
            parts("chat.completions", json),
            [
                pair("system", "Be brief."),
                pair("user", "What is this?\n[image_url]"),
                pair("assistant", "lookup({\"q\":\"x\"})"),
                pair("tool", "42"),
            ]
        );
    }

    #[test]
    fn responses_prompts_are_instructions_and_input() {
        let json = r#"{"model":"gpt-4o","instructions":"Be brief.","input":"Hi"}"#;
        assert_eq!(
            parts("responses", json),
            [pair("instructions", "Be brief."), pair("user", "Hi")]
        );
        let json = r#"{"input":[
            {"role":"user","content":[{"type":"input_text","text":"Weather?"}]},
            {"type":"function_call","name":"weather","arguments":"{}","call_id":"c"},
            {"type":"function_call_output","call_id":"c","output":"sunny"}]}"#;
        assert_eq!(
            parts("responses", json),
            [
                pair("user", "Weather?"),
                pair("tool call", "weather({})"),
                pair("tool output", "sunny"),
            ]
        );
    }

    #[test]
    fn no_prompt_without_a_parsable_body_or_for_other_endpoints() {
        assert_eq!(prompt("models", &body("{}")), None);
        assert_eq!(
            prompt("chat.completions", &body(r#"{"messages":[{"ro"#)),
            None
        );
        assert_eq!(prompt("chat.completions", &RecordedBody::default()), None);
    }

    fn event(event: Option<&str>, data: &str) -> StreamEvent {
        StreamEvent {
            offset_ms: 0.0,
            event: event.map(str::to_string),
            data: data.into(),
        }
    }

    #[test]
    fn chat_stream_deltas() {
        let text = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#;
        assert_eq!(
            stream_deltas(&event(None, text)),
            [Delta::Text("Hel".into())]
        );
        let tool = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,
            "function":{"name":"lookup","arguments":""}}]}}]}"#;
        assert_eq!(
            stream_deltas(&event(None, tool)),
            [Delta::ToolCall("lookup".into())]
        );
        let args = r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q"}}]}}]}"#;
        assert_eq!(
            stream_deltas(&event(None, args)),
            [Delta::ToolArguments("{\"q".into())]
        );
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":1}}"#;
        assert_eq!(stream_deltas(&event(None, usage)), []);
        assert_eq!(stream_deltas(&event(None, "[DONE]")), []);
        let error = r#"{"error":{"message":"overloaded","type":"server_error"}}"#;
        assert_eq!(
            stream_deltas(&event(None, error)),
            [Delta::Error("overloaded".into())]
        );
    }

    #[test]
    fn responses_stream_deltas() {
        let text = r#"{"type":"response.output_text.delta","delta":"Hi","output_index":0}"#;
        assert_eq!(
            stream_deltas(&event(Some("response.output_text.delta"), text)),
            [Delta::Text("Hi".into())]
        );
        // The SSE event name stands in when the data has no `type`.
        assert_eq!(
            stream_deltas(&event(Some("response.refusal.delta"), r#"{"delta":"No."}"#)),
            [Delta::Refusal("No.".into())]
        );
        let added = r#"{"type":"response.output_item.added","item":{"type":"function_call","name":"weather"}}"#;
        assert_eq!(
            stream_deltas(&event(None, added)),
            [Delta::ToolCall("weather".into())]
        );
        let args = r#"{"type":"response.function_call_arguments.delta","delta":"{}"}"#;
        assert_eq!(
            stream_deltas(&event(None, args)),
            [Delta::ToolArguments("{}".into())]
        );
        let error = r#"{"type":"error","code":"x","message":"bad"}"#;
        assert_eq!(
            stream_deltas(&event(None, error)),
            [Delta::Error("bad".into())]
        );
        let done = r#"{"type":"response.completed","response":{"usage":{}}}"#;
        assert_eq!(stream_deltas(&event(None, done)), []);
    }
}
