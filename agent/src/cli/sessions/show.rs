//! `sessions show`: one exchange whole, for reading — identity, connection, request, response.
use crate::audit::record::{
    ConnectionRecord, Disposition, ExchangeRequest, ExchangeResponse, IdentitySnapshot,
    RequestParams,
};

use super::{
    prompt,
    text::{self, Doc, NO_RESPONSE},
    timeline::usage_text,
    verdict,
};
use crate::cli::time_arg::rfc3339_from_micros;

const SECTION: usize = 2;
const BLOCK: usize = 4;

/// The exchange `id` with its `outcome` (`incomplete` while it has no response record).
pub fn render(
    id: &str,
    outcome: &str,
    request: &ExchangeRequest,
    response: Option<&ExchangeResponse>,
    connection: Option<&ConnectionRecord>,
) -> String {
    let mut doc = Doc::default();
    doc.line(0, format_args!("exchange {id}  {outcome}"));
    doc.line(0, "Identity");
    identity(&mut doc, &request.identity);
    doc.line(0, "Connection");
    match connection {
        Some(connection) => connection_fields(&mut doc, connection),
        None => doc.line(
            SECTION,
            "(no connection record yet: it is written when the connection ends)",
        ),
    }
    doc.line(0, "Request");
    request_fields(&mut doc, request);
    doc.line(0, "Response");
    match response {
        Some(response) => response_fields(&mut doc, response),
        None => doc.line(SECTION, NO_RESPONSE),
    }
    doc.into_string()
}

fn identity(doc: &mut Doc, identity: &IdentitySnapshot) {
    let exited = if identity.process_exited {
        " (exited)"
    } else {
        ""
    };
    doc.field(
        SECTION,
        "process",
        format_args!("pid {} {}{exited}", identity.pid, identity.comm),
    );
    optional(doc, "exe", &identity.exe);
    optional(doc, "cmdline", &identity.cmdline);
    let user = identity.user.as_deref().unwrap_or("?");
    doc.field(
        SECTION,
        "user",
        format_args!("{user} (uid {}, gid {})", identity.uid, identity.gid),
    );
    let cgroup = identity.cgroup.as_deref().unwrap_or("?");
    doc.field(
        SECTION,
        "cgroup",
        format_args!("{cgroup} (id {})", identity.cgroup_id),
    );
    optional(doc, "unit", &identity.unit);
    optional(doc, "container", &identity.container);
    optional(doc, "account", &identity.account);
    optional(doc, "k8s sa", &identity.k8s_sa);
}

fn connection_fields(doc: &mut Doc, connection: &ConnectionRecord) {
    doc.field(SECTION, "id", &connection.id);
    let disposition = match connection.disposition {
        Disposition::Intercepted => "intercepted",
        Disposition::Tunneled => "tunneled",
        Disposition::Rejected => "rejected",
    };
    let server_name = connection
        .server_name
        .as_deref()
        .unwrap_or("no server name");
    doc.field(
        SECTION,
        "destination",
        format_args!("{} ({server_name}), {disposition}", connection.original_dst),
    );
    optional(doc, "reason", &connection.reason);
    doc.field(
        SECTION,
        "bytes",
        format_args!(
            "{} from client, {} to client",
            connection.bytes_from_client, connection.bytes_to_client
        ),
    );
    doc.field(
        SECTION,
        "time",
        format_args!(
            "{} to {}",
            rfc3339_from_micros(connection.started_at_us),
            rfc3339_from_micros(connection.ended_at_us)
        ),
    );
}

fn request_fields(doc: &mut Doc, request: &ExchangeRequest) {
    doc.field(SECTION, "time", rfc3339_from_micros(request.started_at_us));
    doc.field(
        SECTION,
        "call",
        format_args!(
            "{} {}{} ({})",
            request.method, request.host, request.path, request.endpoint
        ),
    );
    optional(doc, "model", &request.model);
    let params = params(&request.params);
    if !params.is_empty() {
        doc.field(SECTION, "params", params);
    }
    doc.field(SECTION, "policy", verdict::decision(&request.policy));
    doc.field(SECTION, "masked", verdict::masked(&request.policy.masked));
    headers(doc, &request.headers);
    match prompt::prompt(&request.endpoint, &request.body) {
        Some(parts) => {
            doc.line(SECTION, "prompt");
            for part in parts {
                doc.line(BLOCK, format_args!("{}: {}", part.label, part.text));
            }
        }
        None if request.body.size > 0 => {
            doc.line(SECTION, "body");
            doc.line(BLOCK, text::body(&request.body));
        }
        None => {}
    }
}

fn params(params: &RequestParams) -> String {
    let mut shown = Vec::new();
    if let Some(stream) = params.stream {
        shown.push(format!("stream={stream}"));
    }
    if let Some(temperature) = params.temperature {
        shown.push(format!("temperature={temperature}"));
    }
    if let Some(max_tokens) = params.max_tokens {
        shown.push(format!("max_tokens={max_tokens}"));
    }
    if let Some(max_output_tokens) = params.max_output_tokens {
        shown.push(format!("max_output_tokens={max_output_tokens}"));
    }
    if !params.tools.is_empty() {
        shown.push(format!("tools={}", params.tools.join(",")));
    }
    shown.join(" ")
}

fn response_fields(doc: &mut Doc, response: &ExchangeResponse) {
    let status = response
        .status
        .map_or_else(|| "none sent".to_string(), |status| status.to_string());
    let delivery = if response.streamed {
        format!("streamed, {} events", response.events.len())
    } else {
        "not streamed".to_string()
    };
    doc.field(SECTION, "status", format_args!("{status}, {delivery}"));
    let ttfb = response.ttfb_ms.map_or_else(
        || "no first byte".to_string(),
        |ms| format!("first byte {}", text::duration(ms)),
    );
    doc.field(
        SECTION,
        "timing",
        format_args!("{ttfb}, duration {}", text::duration(response.duration_ms)),
    );
    doc.field(SECTION, "masked", verdict::masked(&response.masked));
    headers(doc, &response.headers);
    match &response.assembled {
        Some(assembled) => {
            if !assembled.text.is_empty() {
                doc.line(SECTION, "text");
                // Trailing newlines would only print as blank lines; --json has the text exactly.
                doc.line(BLOCK, assembled.text.trim_end());
            }
            optional(doc, "refusal", &assembled.refusal);
            if !assembled.tool_calls.is_empty() {
                doc.line(SECTION, "tool calls");
                for call in &assembled.tool_calls {
                    let name = call.name.as_deref().unwrap_or("?");
                    doc.line(BLOCK, format_args!("{name}({})", call.arguments));
                }
            }
            optional(doc, "finish", &assembled.finish_reason);
            if let Some(usage) = &assembled.usage {
                doc.field(SECTION, "usage", usage_text(usage));
            }
            optional(doc, "error", &assembled.error);
        }
        None => {
            if let Some(body) = &response.body {
                doc.line(SECTION, "body");
                doc.line(BLOCK, text::body(body));
            }
        }
    }
    let reason = response
        .reason
        .as_deref()
        .map(|reason| format!(" ({reason})"))
        .unwrap_or_default();
    doc.field(
        SECTION,
        "outcome",
        format_args!("{}{reason}", response.outcome.as_str()),
    );
}

fn headers(doc: &mut Doc, headers: &[(String, String)]) {
    if headers.is_empty() {
        return;
    }
    doc.line(SECTION, "headers");
    for (name, value) in headers {
        doc.line(BLOCK, format_args!("{name}: {value}"));
    }
}

fn optional(doc: &mut Doc, name: &str, value: &Option<String>) {
    if let Some(value) = value {
        doc.field(SECTION, name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::sessions::timeline::tests::{chat_request, streamed_response};

    #[test]
    fn shows_identity_prompt_and_assembled_response() {
        let rendered = render(
            "ex-1",
            "ok",
            &chat_request(true),
            Some(&streamed_response()),
            None,
        );
        let expected = "\
exchange ex-1  ok
Identity
  process     pid 4242 python3
  user        alice (uid 1000, gid 0)
  cgroup      ? (id 0)
  unit        agent.service
Connection
  (no connection record yet: it is written when the connection ends)
Request
  time        2026-11-20T22:10:14.000Z
  call        POST api.openai.com/v1/chat/completions (chat.completions)
  model       gpt-4o
  params      stream=true
  policy      not recorded
  masked      nothing
  headers
    content-type: application/json
  prompt
    system: Be brief.
    user: Say hi
Response
  status      200, streamed, 5 events
  timing      first byte 123ms, duration 1.2s
  masked      nothing
  headers
    content-type: text/event-stream
  text
    Hi there!
  finish      stop
  usage       12 in / 3 out / 15 total
  outcome     ok
";
        assert_eq!(rendered, expected);
    }

    #[test]
    fn recorded_escape_sequences_are_shown_not_obeyed() {
        let mut request = chat_request(true);
        request.model = Some("gpt\u{1b}]52;c;cm0gLXJmIH4=\u{7}".into());
        request.path = "/v1/\u{1b}[2Jchat".into();
        let mut response = streamed_response();
        if let Some(assembled) = response.assembled.as_mut() {
            assembled.text = "ok\u{1b}[2J\u{1b}]0;owned\u{7}".into();
        }
        let rendered = render("ex-1", "ok", &request, Some(&response), None);
        assert!(
            !rendered.contains('\u{1b}') && !rendered.contains('\u{7}'),
            "{rendered}"
        );
        assert!(rendered.contains("  model       gpt\\u{1b}]52;c;cm0gLXJmIH4=\\u{7}\n"));
        assert!(rendered.contains("/v1/\\u{1b}[2Jchat"), "{rendered}");
        assert!(rendered.contains("    ok\\u{1b}[2J\\u{1b}]0;owned\\u{7}\n"));
        let replayed = crate::cli::sessions::timeline::render(&request, Some(&response));
        assert!(
            !replayed.contains('\u{1b}') && !replayed.contains('\u{7}'),
            "{replayed}"
        );
        assert!(replayed.contains("model=gpt\\u{1b}]52;c;"), "{replayed}");
    }

    #[test]
    fn shows_the_connection_and_an_incomplete_exchange() {
        let connection = ConnectionRecord {
            id: "c-1".into(),
            identity: IdentitySnapshot::default(),
            original_dst: "162.159.140.245:443".into(),
            server_name: Some("api.openai.com".into()),
            disposition: Disposition::Intercepted,
            reason: None,
            bytes_from_client: 10,
            bytes_to_client: 20,
            started_at_us: 1_795_212_614_000_000,
            ended_at_us: 1_795_212_615_500_000,
        };
        let rendered = render(
            "ex-1",
            "incomplete",
            &chat_request(true),
            None,
            Some(&connection),
        );
        assert!(
            rendered.contains(
                "  destination 162.159.140.245:443 (api.openai.com), intercepted\n  \
             bytes       10 from client, 20 to client\n  \
             time        2026-11-20T22:10:14.000Z to 2026-11-20T22:10:15.500Z\n"
            ),
            "{rendered}"
        );
        assert!(
            rendered.ends_with(&format!("Response\n  {NO_RESPONSE}\n")),
            "{rendered}"
        );
    }
}
