//! Exchanges as OTLP spans with the OpenTelemetry GenAI semantic conventions: one span per
//! exchange, built from its response event (which carries the exchange's summary).
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    resource::v1::Resource,
    trace::v1::{span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status},
};
use serde_json::Value as Json;

use super::{
    otlp_values::{int, nanos, scope, span_id, string, strings, trace_id},
    SinkEvent,
};

pub fn export_request(resource: &Resource, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// `gen_ai.operation.name` for a Warden endpoint (chat.completions, responses, …).
pub fn operation_name(endpoint: &str) -> &str {
    match endpoint {
        "chat.completions" | "responses" => "chat",
        "completions" => "text_completion",
        "embeddings" => "embeddings",
        other => other,
    }
}

/// The exchange's span, from its response event; None for every other event. `server_address`
/// is the host the request went to, when the transport saw the request event.
pub fn span(event: &SinkEvent, server_address: Option<&str>) -> Option<Span> {
    let summary = event.exchange.as_ref()?;
    let operation = operation_name(&summary.endpoint);
    let name = match &summary.model {
        Some(model) => format!("{operation} {model}"),
        None => operation.to_owned(),
    };
    let mut attributes = vec![
        // `gen_ai.system` is the older name of `gen_ai.provider.name`: both, for receivers
        // built on either version of the conventions.
        string("gen_ai.system", "openai"),
        string("gen_ai.provider.name", "openai"),
        string("gen_ai.operation.name", operation),
        string("warden.endpoint", summary.endpoint.as_str()),
        string("warden.exchange_id", summary.id.as_str()),
        int("warden.seq", i64::try_from(event.seq).unwrap_or(i64::MAX)),
        string("warden.outcome", summary.outcome.as_str()),
        int(
            "warden.masked",
            i64::try_from(summary.masked).unwrap_or(i64::MAX),
        ),
        int("warden.uid", i64::from(summary.uid)),
        int("warden.pid", i64::from(summary.pid)),
    ];
    if let Some(model) = &summary.model {
        attributes.push(string("gen_ai.request.model", model.as_str()));
    }
    if let Some(model) = response_model(&event.record) {
        attributes.push(string("gen_ai.response.model", model));
    }
    if let Some(reason) = event
        .record
        .pointer("/assembled/finish_reason")
        .and_then(Json::as_str)
    {
        attributes.push(strings(
            "gen_ai.response.finish_reasons",
            vec![reason.to_owned()],
        ));
    }
    let tokens = [
        ("gen_ai.usage.input_tokens", summary.input_tokens),
        ("gen_ai.usage.output_tokens", summary.output_tokens),
    ];
    for (key, count) in tokens {
        if let Some(count) = count {
            attributes.push(int(key, i64::try_from(count).unwrap_or(i64::MAX)));
        }
    }
    if let Some(status) = summary.status {
        attributes.push(int("http.response.status_code", i64::from(status)));
    }
    if let Some(host) = server_address {
        attributes.push(string("server.address", host));
    }
    let identity = [
        ("warden.user", &summary.user),
        ("warden.account", &summary.account),
        ("warden.unit", &summary.unit),
        ("warden.container", &summary.container),
        ("warden.exe", &summary.exe),
    ];
    for (key, value) in identity {
        if let Some(value) = value {
            attributes.push(string(key, value.as_str()));
        }
    }
    let ok = summary.outcome == "ok";
    if !ok {
        attributes.push(string("error.type", summary.outcome.as_str()));
    }
    let status = Status {
        code: if ok {
            StatusCode::Unset
        } else {
            StatusCode::Error
        } as i32,
        message: if ok {
            String::new()
        } else {
            match event.record.get("reason").and_then(Json::as_str) {
                Some(reason) => format!("{}: {reason}", summary.outcome),
                None => summary.outcome.clone(),
            }
        },
    };
    let start_us = summary.started_us;
    // The response's duration_ms counts from the request's start: the span covers the exchange.
    let end_us = summary
        .duration_ms
        .map_or(event.at_us, |ms| start_us + (ms * 1000.0).round() as i64);
    Some(Span {
        trace_id: trace_id(&summary.id),
        span_id: span_id(&summary.id),
        name,
        kind: SpanKind::Client as i32,
        start_time_unix_nano: nanos(start_us),
        end_time_unix_nano: nanos(end_us.max(start_us)),
        attributes,
        status: Some(status),
        ..Span::default()
    })
}

/// The model that answered: the `openai-model` response header, else the body's or the first
/// stream event's `model` (present only when the sink's filter includes bodies).
fn response_model(record: &Json) -> Option<String> {
    let header = record
        .get("headers")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .find_map(|pair| {
            let pair = pair.as_array()?;
            let name = pair.first()?.as_str()?;
            name.eq_ignore_ascii_case("openai-model")
                .then(|| pair.get(1)?.as_str().map(str::to_owned))?
        });
    let from_json = |text: &str| -> Option<String> {
        let parsed: Json = serde_json::from_str(text).ok()?;
        parsed.get("model")?.as_str().map(str::to_owned)
    };
    header
        .or_else(|| from_json(record.pointer("/body/text")?.as_str()?))
        .or_else(|| from_json(record.pointer("/events/0/data")?.as_str()?))
}
