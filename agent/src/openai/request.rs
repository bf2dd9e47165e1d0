//! Read a request body as an API call: the audited fields (model, stream, sampling limits, tool
//! names), and the normalized body a policy that reads bodies judges.
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::lenient::LenientStr;

/// What an audit record keeps about a request body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestFields {
    pub model: Option<String>,
    pub params: RequestParams,
    /// Chat completions: `stream_options.include_usage`, so the last chunk carries usage.
    pub include_usage: bool,
}

/// The request parameters that matter to an audit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestParams {
    pub stream: Option<bool>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// Tool (function) names offered to the model.
    pub tools: Vec<String>,
}

/// The fields of a chat completions / responses / embeddings / completions body we read; everything
/// else is skipped by serde without being materialized.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RequestBody<'a> {
    #[serde(borrow)]
    model: LenientStr<'a>,
    stream: Option<bool>,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
    /// Chat completions' newer name for `max_tokens`.
    max_completion_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    #[serde(borrow)]
    tools: Option<Vec<Tool<'a>>>,
    stream_options: Option<StreamOptions>,
}

/// Chat: `{"type":"function","function":{"name":…}}`; Responses: `{"type":"function","name":…}`,
/// or a built-in tool named by its type (`{"type":"web_search"}`, `{"type":"mcp","server_label":…}`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Tool<'a> {
    #[serde(rename = "type", borrow)]
    kind: LenientStr<'a>,
    #[serde(borrow)]
    name: LenientStr<'a>,
    #[serde(borrow)]
    function: Option<FunctionDef<'a>>,
    #[serde(borrow)]
    server_label: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FunctionDef<'a> {
    #[serde(borrow)]
    name: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StreamOptions {
    include_usage: Option<bool>,
}

impl Tool<'_> {
    fn display_name(self) -> Option<String> {
        if let Some(name) = self
            .function
            .and_then(|function| function.name.into_string())
        {
            return Some(name);
        }
        if let Some(name) = self.name.into_string() {
            return Some(name);
        }
        let kind = self.kind.into_string()?;
        Some(match self.server_label.as_deref() {
            Some(label) if kind == "mcp" => format!("mcp:{label}"),
            _ => kind,
        })
    }
}

/// Parses `body` once. A body that is not a JSON object of the expected shape (wrong value types
/// for the numeric fields, duplicate keys, not JSON at all) yields the defaults: the upstream
/// rejects such requests too.
pub fn request_fields(body: &[u8]) -> RequestFields {
    try_request_fields(body).unwrap_or_default()
}

/// The fields, or None when the body does not parse as an API call (invalid JSON, a duplicated
/// field, a field of the wrong type): a policy that reads bodies must then refuse it rather than
/// judge it by defaults.
pub fn try_request_fields(body: &[u8]) -> Option<RequestFields> {
    serde_json::from_slice::<RequestBody>(body)
        .ok()
        .map(RequestBody::into_fields)
}

impl RequestBody<'_> {
    fn into_fields(self) -> RequestFields {
        let tools = self
            .tools
            .unwrap_or_default()
            .into_iter()
            .filter_map(Tool::display_name)
            .collect();
        RequestFields {
            model: self.model.into_string(),
            params: RequestParams {
                stream: self.stream,
                temperature: self.temperature,
                // Both names cap the output; a policy cap must see the larger, or one could hide
                // the other.
                max_tokens: self.max_tokens.max(self.max_completion_tokens),
                max_output_tokens: self.max_output_tokens,
                tools,
            },
            include_usage: self
                .stream_options
                .and_then(|options| options.include_usage)
                .unwrap_or(false),
        }
    }
}

/// A body a policy reads: parsed once, into the value the policy judges and masks, and
/// re-serialized from it, so that what a policy judges and what the upstream receives cannot
/// differ.
pub struct NormalizedBody {
    pub bytes: Bytes,
    pub fields: RequestFields,
    /// None for an empty body.
    pub value: Option<serde_json::Value>,
}

/// The body normalized, or why it cannot be inspected: compressed or not JSON, a key named twice
/// (at any depth), or an API field of the wrong type.
pub fn normalized_body(body: &[u8]) -> Result<NormalizedBody, &'static str> {
    if body.is_empty() {
        return Ok(NormalizedBody {
            bytes: Bytes::new(),
            fields: RequestFields::default(),
            value: None,
        });
    }
    let value = super::strict_json::parse(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => "duplicated or mistyped fields",
        _ => "not JSON",
    })?;
    let fields = RequestBody::deserialize(&value)
        .map_err(|_| "duplicated or mistyped fields")?
        .into_fields();
    let bytes = serde_json::to_vec(&value).map_err(|_| "not serializable")?;
    Ok(NormalizedBody {
        bytes: Bytes::from(bytes),
        fields,
        value: Some(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_request_fields() {
        let body = br#"{
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Weather in Paris?"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.2,
            "max_completion_tokens": 256,
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "strict": true}},
                {"type": "function", "function": {"name": "get_time", "parameters": {}}}
            ],
            "tool_choice": "auto"
        }"#;
        let fields = request_fields(body);
        assert_eq!(fields.model.as_deref(), Some("gpt-4o-mini"));
        assert!(fields.include_usage);
        assert_eq!(
            fields.params,
            RequestParams {
                stream: Some(true),
                temperature: Some(0.2),
                max_tokens: Some(256),
                max_output_tokens: None,
                tools: vec!["get_weather".into(), "get_time".into()],
            }
        );
    }

    #[test]
    fn the_larger_of_max_tokens_and_max_completion_tokens_counts() {
        let fields = request_fields(
            br#"{"model":"gpt-4","max_tokens":10,"max_completion_tokens":20000,"temperature":1}"#,
        );
        assert_eq!(fields.params.max_tokens, Some(20000));
        assert_eq!(fields.params.temperature, Some(1.0));
        assert_eq!(fields.params.stream, None);
        assert!(!fields.include_usage);
        let fields = request_fields(br#"{"model":"gpt-4","max_tokens":10}"#);
        assert_eq!(fields.params.max_tokens, Some(10));
    }

    #[test]
    fn responses_request_fields() {
        let body = br#"{
            "model": "gpt-4.1",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "instructions": "Be brief.",
            "stream": false,
            "max_output_tokens": 1024,
            "tools": [
                {"type": "function", "name": "lookup_order", "description": "d", "parameters": {"type": "object", "properties": {}}, "strict": true},
                {"type": "web_search_preview", "search_context_size": "low"},
                {"type": "file_search", "vector_store_ids": ["vs_1"]},
                {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.deepwiki.com/mcp", "require_approval": "never"},
                {"type": "custom", "name": "code_exec", "format": {"type": "text"}}
            ]
        }"#;
        let fields = request_fields(body);
        assert_eq!(fields.model.as_deref(), Some("gpt-4.1"));
        assert_eq!(fields.params.stream, Some(false));
        assert_eq!(fields.params.max_output_tokens, Some(1024));
        assert_eq!(fields.params.max_tokens, None);
        assert_eq!(
            fields.params.tools,
            [
                "lookup_order",
                "web_search_preview",
                "file_search",
                "mcp:deepwiki",
                "code_exec"
            ]
        );
    }

    #[test]
    fn embeddings_request_has_model_only() {
        let fields = request_fields(
            br#"{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"float"}"#,
        );
        assert_eq!(fields.model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(fields.params, RequestParams::default());
    }

    #[test]
    fn escaped_model_names_are_decoded() {
        let fields = request_fields(br#"{"model":"ft:gpt-4o:org\u002fname"}"#);
        assert_eq!(fields.model.as_deref(), Some("ft:gpt-4o:org/name"));
    }

    #[test]
    fn odd_values_in_string_fields_do_not_lose_the_rest() {
        let fields = request_fields(
            br#"{"model":"gpt-4o","tools":[{"type":"function","function":{"name":{"x":1}}},{"type":"function","function":{"name":"ok"}}],"stream":true,"stream_options":null}"#,
        );
        assert_eq!(fields.model.as_deref(), Some("gpt-4o"));
        assert_eq!(fields.params.tools, ["function", "ok"]);
        assert_eq!(fields.params.stream, Some(true));
        assert!(!fields.include_usage);
    }

    #[test]
    fn invalid_bodies_yield_defaults() {
        for body in [
            &b""[..],
            b"not json",
            b"[1,2]",
            b"{\"model\":\"gpt-4o\"",
            b"{\"model\":\"gpt-4o\",\"temperature\":\"hot\"}",
            b"\xff\xfe",
        ] {
            assert_eq!(request_fields(body), RequestFields::default(), "{body:?}");
        }
    }

    #[test]
    fn null_fields_are_absent() {
        let fields = request_fields(
            br#"{"model":null,"stream":null,"temperature":null,"max_tokens":null,"tools":null}"#,
        );
        assert_eq!(fields, RequestFields::default());
    }

    #[test]
    fn a_normalized_body_reads_back_as_the_numbers_judged() {
        // Found by fuzzing: without correctly rounded parsing this integer past u64 read as an
        // f64 printed `1.8446699999999998e+34`, which read back as another number.
        let body = br#"{"model":"gpt-4o","temperature":18446700000000000055511151231257827}"#;
        let normalized = normalized_body(body).expect("normalizes");
        let again = normalized_body(&normalized.bytes).expect("normalizes again");
        assert_eq!(again.bytes, normalized.bytes);
        assert_eq!(again.fields, normalized.fields);
        assert_eq!(normalized.fields.params.temperature, Some(1.84467e34));
    }
}
