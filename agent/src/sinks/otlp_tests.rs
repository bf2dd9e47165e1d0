use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{any_value::Value, KeyValue},
    trace::v1::{span::SpanKind, status::StatusCode as SpanStatus},
};
use prost::Message;

use super::*;
use crate::sinks::{test_events, EventClass};

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(attributes: &[KeyValue], key: &str) -> String {
    match find(attributes, key) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn number(attributes: &[KeyValue], key: &str) -> i64 {
    match find(attributes, key) {
        Some(Value::IntValue(n)) => *n,
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn every_event_is_a_log_record_with_its_json_body_and_warden_attributes() {
    let resource = otlp_values::resource("warden", "host-1");
    let batch = [test_events::request_event(), test_events::response_event()];
    let encoded = otlp_logs::export_request(&resource, &batch).encode_to_vec();
    let decoded = ExportLogsServiceRequest::decode(encoded.as_slice()).unwrap();
    let resource_logs = &decoded.resource_logs[0];
    let resource_attrs = &resource_logs.resource.as_ref().unwrap().attributes;
    assert_eq!(text(resource_attrs, "service.name"), "warden");
    assert_eq!(text(resource_attrs, "host.name"), "host-1");
    let records = &resource_logs.scope_logs[0].log_records;
    assert_eq!(records.len(), 2);
    let response = &records[1];
    assert_eq!(number(&response.attributes, "warden.seq"), 42);
    assert_eq!(text(&response.attributes, "warden.event"), "response");
    assert_eq!(text(&response.attributes, "warden.exchange_id"), "ex_01");
    assert_eq!(response.time_unix_nano, 1_700_000_000_250_000_000);
    assert_eq!(response.severity_number, 9);
    let Some(Value::StringValue(body)) = response.body.as_ref().and_then(|b| b.value.clone())
    else {
        panic!("no string body");
    };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["exchange"]["output_tokens"], 5);
    // The request's and the response's records are in the exchange's trace.
    assert_eq!(records[0].trace_id, otlp_values::trace_id("ex_01"));
    assert_eq!(response.span_id, otlp_values::span_id("ex_01"));
    let alert = otlp_logs::log_record(&test_events::governance_event(EventClass::Alerts, "alert"));
    assert_eq!(alert.severity_number, 13);
    assert!(alert.trace_id.is_empty());
}

#[test]
fn a_response_is_a_genai_span_covering_the_exchange() {
    let mut event = test_events::response_event();
    event.record = serde_json::json!({
        "outcome": "ok",
        "headers": [["content-type", "application/json"], ["OpenAI-Model", "gpt-4o-mini-2024-07-18"]],
        "assembled": {"finish_reason": "stop"},
    });
    let span = otlp_traces::span(&event, Some("api.openai.com")).expect("a span");
    assert_eq!(span.name, "chat gpt-4o-mini");
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert_eq!(span.trace_id.len(), 16);
    assert_eq!(span.span_id.len(), 8);
    assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_700_000_000_250_000_000);
    let a = &span.attributes;
    assert_eq!(text(a, "gen_ai.system"), "openai");
    assert_eq!(text(a, "gen_ai.provider.name"), "openai");
    assert_eq!(text(a, "gen_ai.operation.name"), "chat");
    assert_eq!(text(a, "gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(text(a, "gen_ai.response.model"), "gpt-4o-mini-2024-07-18");
    assert_eq!(number(a, "gen_ai.usage.input_tokens"), 12);
    assert_eq!(number(a, "gen_ai.usage.output_tokens"), 5);
    assert_eq!(text(a, "server.address"), "api.openai.com");
    assert_eq!(text(a, "warden.user"), "alice");
    assert_eq!(text(a, "warden.account"), "billing-bot");
    assert_eq!(text(a, "warden.unit"), "agent.service");
    assert_eq!(text(a, "warden.outcome"), "ok");
    assert_eq!(number(a, "warden.masked"), 1);
    assert!(find(a, "warden.container").is_none());
    assert!(find(a, "error.type").is_none());
    assert_eq!(span.status.as_ref().unwrap().code, SpanStatus::Unset as i32);
}

#[test]
fn span_ids_are_the_exchange_ids_so_a_redelivery_is_the_same_span() {
    let first = otlp_traces::span(&test_events::response_event(), None).unwrap();
    let again = otlp_traces::span(&test_events::response_event(), None).unwrap();
    assert_eq!(
        (&first.trace_id, &first.span_id),
        (&again.trace_id, &again.span_id)
    );
    let mut other = test_events::response_event();
    if let Some(summary) = other.exchange.as_mut() {
        summary.id = "ex_02".to_owned();
    }
    let other = otlp_traces::span(&other, None).unwrap();
    assert_ne!(first.trace_id, other.trace_id);
    assert_ne!(first.span_id, other.span_id);
}

#[test]
fn non_ok_outcomes_are_error_spans_and_other_events_are_no_span() {
    let mut denied = test_events::response_event();
    denied.record = serde_json::json!({"outcome": "denied", "reason": "rule no-gpt4"});
    if let Some(summary) = denied.exchange.as_mut() {
        summary.outcome = "denied".to_owned();
        summary.endpoint = "embeddings".to_owned();
        summary.model = None;
    }
    let span = otlp_traces::span(&denied, None).unwrap();
    assert_eq!(span.name, "embeddings");
    let status = span.status.unwrap();
    assert_eq!(status.code, SpanStatus::Error as i32);
    assert_eq!(status.message, "denied: rule no-gpt4");
    assert_eq!(text(&span.attributes, "error.type"), "denied");
    assert!(otlp_traces::span(&test_events::request_event(), None).is_none());
    assert_eq!(
        otlp_traces::operation_name("completions"),
        "text_completion"
    );
    assert_eq!(otlp_traces::operation_name("responses"), "chat");
}

#[test]
fn spans_encode_as_an_export_trace_request() {
    let resource = otlp_values::resource("svc", "h");
    let span = otlp_traces::span(&test_events::response_event(), None).unwrap();
    let encoded = otlp_traces::export_request(&resource, vec![span]).encode_to_vec();
    let decoded = ExportTraceServiceRequest::decode(encoded.as_slice()).unwrap();
    assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 1);
}

#[test]
fn only_429_and_gateway_failures_are_retried() {
    for code in [429, 502, 503, 504] {
        assert!(retryable(StatusCode::from_u16(code).unwrap()), "{code}");
    }
    for code in [400, 401, 403, 404, 413, 500, 501] {
        assert!(!retryable(StatusCode::from_u16(code).unwrap()), "{code}");
    }
}

#[test]
fn the_request_host_is_remembered_for_the_span() {
    let mut hosts = RequestHosts::default();
    let mut request = test_events::request_event();
    request.record["host"] = serde_json::json!("api.openai.com");
    hosts.note(&request);
    hosts.note(&test_events::response_event());
    assert_eq!(hosts.get("ex_01"), Some("api.openai.com"));
    assert_eq!(hosts.get("ex_02"), None);
}

#[test]
fn a_bad_endpoint_fails_at_construction() {
    let config: OtlpSinkConfig = toml::from_str("endpoint = \"gopher://x\"").unwrap();
    let error = OtlpTransport::new(&config).err().expect("refused");
    assert!(error.to_string().starts_with("endpoint: "), "{error}");
}
