//! `sessions replay`: an exchange as a timeline — the request, each streamed delta at its offset,
//! the outcome.
use crate::{
    audit::record::{ExchangeRequest, ExchangeResponse},
    openai::assemble::{Assembled, Usage},
};

use super::{
    prompt::{self, Delta},
    text::{self, one_line, Doc, NO_RESPONSE},
};

/// Where the prompt and other detail lines start: under the text of the timed lines.
const DETAIL_INDENT: usize = 9;

/// One line of a replay: timed (at `offset_ms` after the exchange started), or a detail of the
/// timed line before it.
#[derive(Debug, serde::Serialize)]
pub struct TimelineLine {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_ms: Option<f64>,
    pub text: String,
}

#[derive(Default)]
struct Lines(Vec<TimelineLine>);

impl Lines {
    /// A line at `offset_ms` after the exchange started.
    fn timed(&mut self, offset_ms: f64, what: impl std::fmt::Display) {
        self.0.push(TimelineLine {
            offset_ms: Some(offset_ms),
            text: what.to_string(),
        });
    }

    fn detail(&mut self, what: impl std::fmt::Display) {
        self.0.push(TimelineLine {
            offset_ms: None,
            text: what.to_string(),
        });
    }
}

/// The replay as text, for a terminal.
pub fn render(request: &ExchangeRequest, response: Option<&ExchangeResponse>) -> String {
    let mut doc = Doc::default();
    for line in lines(request, response) {
        match line.offset_ms {
            Some(offset_ms) => {
                let offset = format!("+{:.3}s", offset_ms / 1000.0);
                doc.line(0, format_args!("{offset:<8} {}", line.text));
            }
            None => doc.line(DETAIL_INDENT, line.text),
        }
    }
    doc.into_string()
}

/// The replay as lines: the request, each streamed delta at its offset, the outcome (the CLI's
/// `sessions replay` and the console's replay view).
pub fn lines(request: &ExchangeRequest, response: Option<&ExchangeResponse>) -> Vec<TimelineLine> {
    let mut lines = Lines::default();
    let model = request
        .model
        .as_deref()
        .map(|model| format!(" model={model}"))
        .unwrap_or_default();
    lines.timed(
        0.0,
        format_args!("request {} {}{model}", request.method, request.path),
    );
    match prompt::prompt(&request.endpoint, &request.body) {
        Some(parts) => {
            for part in parts {
                lines.detail(format_args!("{}: {}", part.label, part.text));
            }
        }
        None if request.body.size > 0 => lines.detail(text::body(&request.body)),
        None => {}
    }
    let Some(response) = response else {
        lines.detail(NO_RESPONSE);
        return lines.0;
    };
    if response.streamed {
        for event in &response.events {
            for delta in prompt::stream_deltas(event) {
                lines.timed(event.offset_ms, describe(&delta));
            }
        }
    } else {
        let at_ms = response.ttfb_ms.unwrap_or(response.duration_ms);
        match &response.assembled {
            Some(assembled) => whole_response(&mut lines, at_ms, assembled),
            None => {
                if let Some(body) = &response.body {
                    lines.timed(at_ms, one_line(&text::body(body)));
                }
            }
        }
    }
    lines.timed(response.duration_ms, outcome(response));
    lines.0
}

fn describe(delta: &Delta) -> String {
    match delta {
        Delta::Text(text) => one_line(text),
        Delta::Refusal(text) => format!("[refusal] {}", one_line(text)),
        Delta::ToolCall(name) => format!("[tool call] {}", one_line(name)),
        Delta::ToolArguments(arguments) => format!("[arguments] {}", one_line(arguments)),
        Delta::Error(message) => format!("[error] {}", one_line(message)),
    }
}

/// A response that was not streamed arrives all at once.
fn whole_response(lines: &mut Lines, at_ms: f64, assembled: &Assembled) {
    if !assembled.text.is_empty() {
        lines.timed(at_ms, one_line(&assembled.text));
    }
    if let Some(refusal) = &assembled.refusal {
        lines.timed(at_ms, format_args!("[refusal] {}", one_line(refusal)));
    }
    for call in &assembled.tool_calls {
        let name = call.name.as_deref().unwrap_or("?");
        lines.timed(
            at_ms,
            format_args!(
                "[tool call] {}({})",
                one_line(name),
                one_line(&call.arguments)
            ),
        );
    }
    if let Some(error) = &assembled.error {
        lines.timed(at_ms, format_args!("[error] {}", one_line(error)));
    }
}

fn outcome(response: &ExchangeResponse) -> String {
    let mut details = Vec::new();
    if let Some(status) = response.status {
        details.push(format!("status {status}"));
    }
    if let Some(usage) = response.assembled.as_ref().and_then(|a| a.usage) {
        details.push(format!("usage {}", usage_text(&usage)));
    }
    if let Some(reason) = &response.reason {
        details.push(format!("reason: {}", one_line(reason)));
    }
    let outcome = response.outcome.as_str();
    if details.is_empty() {
        format!("outcome {outcome}")
    } else {
        format!("outcome {outcome} ({})", details.join(", "))
    }
}

/// `12 in / 34 out / 46 total`.
pub fn usage_text(usage: &Usage) -> String {
    format!(
        "{} in / {} out / {} total",
        usage.input_tokens, usage.output_tokens, usage.total_tokens
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::{
        audit::record::{IdentitySnapshot, Outcome, RecordedBody, RequestParams, StreamEvent},
        openai::assemble::ToolCall,
    };

    pub fn chat_request(stream: bool) -> ExchangeRequest {
        let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hi"}]}"#;
        ExchangeRequest {
            exchange_id: "ex-1".into(),
            connection_id: "c-1".into(),
            started_at_us: 1_795_212_614_000_000,
            identity: IdentitySnapshot {
                pid: 4242,
                comm: "python3".into(),
                uid: 1000,
                user: Some("alice".into()),
                unit: Some("agent.service".into()),
                ..IdentitySnapshot::default()
            },
            method: "POST".into(),
            host: "api.openai.com".into(),
            path: "/v1/chat/completions".into(),
            endpoint: "chat.completions".into(),
            model: Some("gpt-4o".into()),
            params: RequestParams {
                stream: Some(stream),
                ..RequestParams::default()
            },
            headers: vec![("content-type".into(), "application/json".into())],
            body: RecordedBody {
                content_type: Some("application/json".into()),
                size: body.len() as u64,
                text: Some(body.into()),
                truncated: false,
            },
            policy: Default::default(),
        }
    }

    pub fn streamed_response() -> ExchangeResponse {
        let chunk = |offset_ms: f64, data: &str| StreamEvent {
            offset_ms,
            event: None,
            data: data.into(),
        };
        ExchangeResponse {
            exchange_id: "ex-1".into(),
            ended_at_us: 1_795_212_615_234_000,
            status: Some(200),
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: None,
            streamed: true,
            events: vec![
                chunk(
                    123.4,
                    r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                ),
                chunk(
                    150.0,
                    r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
                ),
                chunk(
                    1012.6,
                    r#"{"choices":[{"index":0,"delta":{"content":" there!\n"}}]}"#,
                ),
                chunk(
                    1200.0,
                    r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#,
                ),
                chunk(1201.0, "[DONE]"),
            ],
            assembled: Some(Assembled {
                text: "Hi there!\n".into(),
                finish_reason: Some("stop".into()),
                usage: Some(Usage {
                    input_tokens: 12,
                    output_tokens: 3,
                    total_tokens: 15,
                }),
                ..Assembled::default()
            }),
            ttfb_ms: Some(123.4),
            duration_ms: 1234.0,
            outcome: Outcome::Ok,
            reason: None,
            masked: Default::default(),
        }
    }

    #[test]
    fn a_streamed_exchange_shows_each_delta_at_its_offset() {
        let expected = "\
+0.000s  request POST /v1/chat/completions model=gpt-4o
         system: Be brief.
         user: Say hi
+0.150s  Hi
+1.013s   there!\\n
+1.234s  outcome ok (status 200, usage 12 in / 3 out / 15 total)
";
        assert_eq!(
            render(&chat_request(true), Some(&streamed_response())),
            expected
        );
    }

    #[test]
    fn a_whole_response_arrives_at_its_first_byte() {
        let response = ExchangeResponse {
            streamed: false,
            events: Vec::new(),
            ttfb_ms: Some(800.0),
            assembled: Some(Assembled {
                text: "Hi".into(),
                tool_calls: vec![ToolCall {
                    index: 0,
                    id: Some("c".into()),
                    name: Some("lookup".into()),
                    arguments: "{}".into(),
                }],
                ..Assembled::default()
            }),
            outcome: Outcome::ClientAborted,
            status: None,
            reason: Some("client closed the connection".into()),
            masked: Default::default(),
            ..streamed_response()
        };
        let rendered = render(&chat_request(false), Some(&response));
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(
            lines[3..],
            [
                "+0.800s  Hi",
                "+0.800s  [tool call] lookup({})",
                "+1.234s  outcome client_aborted (reason: client closed the connection)",
            ]
        );
    }

    #[test]
    fn an_incomplete_exchange_says_so() {
        let rendered = render(&chat_request(true), None);
        assert!(
            rendered.ends_with(&format!("{NO_RESPONSE}\n")),
            "{rendered}"
        );
    }
}
