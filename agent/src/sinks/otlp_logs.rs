//! Sink events as OTLP log records: one per event, its JSON as the body.
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{any_value::Value, AnyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};

use super::{
    otlp_values::{int, nanos, scope, span_id, string, trace_id},
    severity::severity,
    SinkEvent,
};

pub fn export_request(resource: &Resource, batch: &[SinkEvent]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: batch.iter().map(log_record).collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

pub fn log_record(event: &SinkEvent) -> LogRecord {
    let severity = severity(event);
    let class = serde_json::to_value(event.class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut attributes = vec![
        int("warden.seq", i64::try_from(event.seq).unwrap_or(i64::MAX)),
        string("warden.event", event.name.as_str()),
        string("warden.class", class),
    ];
    let (trace, span) = match &event.exchange_id {
        Some(id) => {
            attributes.push(string("warden.exchange_id", id.as_str()));
            // The exchange's records sit in its span's trace.
            (trace_id(id), span_id(id))
        }
        None => (Vec::new(), Vec::new()),
    };
    let body = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    LogRecord {
        time_unix_nano: nanos(event.at_us),
        observed_time_unix_nano: nanos(crate::ids::now_us()),
        severity_number: severity.otel_number(),
        severity_text: severity.as_str().to_owned(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(body)),
        }),
        attributes,
        trace_id: trace,
        span_id: span,
        event_name: format!("warden.{}", event.name),
        ..LogRecord::default()
    }
}
