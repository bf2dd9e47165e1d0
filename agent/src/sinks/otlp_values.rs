//! The pieces OTLP logs and traces share: attributes, the resource, the scope, and ids derived
//! from an exchange id.
use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue},
    resource::v1::Resource,
};
use sha2::{Digest, Sha256};

pub fn string(key: &str, value: impl Into<String>) -> KeyValue {
    attribute(key, Value::StringValue(value.into()))
}

pub fn int(key: &str, value: i64) -> KeyValue {
    attribute(key, Value::IntValue(value))
}

pub fn strings(key: &str, values: Vec<String>) -> KeyValue {
    let values = values
        .into_iter()
        .map(|value| AnyValue {
            value: Some(Value::StringValue(value)),
        })
        .collect();
    attribute(key, Value::ArrayValue(ArrayValue { values }))
}

fn attribute(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// `service.name` and `host.name`: who sent it, from where.
pub fn resource(service_name: &str, host_name: &str) -> Resource {
    Resource {
        attributes: vec![
            string("service.name", service_name),
            string("host.name", host_name),
            string("service.version", env!("CARGO_PKG_VERSION")),
        ],
        ..Resource::default()
    }
}

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "warden".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    }
}

/// The exchange's trace id: the same for every delivery of it, so a receiver sees a redelivered
/// span as the same span.
pub fn trace_id(exchange_id: &str) -> Vec<u8> {
    derived(b"warden trace id\0", exchange_id, 16)
}

/// The exchange's span id (the one span of its trace).
pub fn span_id(exchange_id: &str) -> Vec<u8> {
    derived(b"warden span id\0", exchange_id, 8)
}

fn derived(domain: &[u8], exchange_id: &str, len: usize) -> Vec<u8> {
    let digest = Sha256::new()
        .chain_update(domain)
        .chain_update(exchange_id.as_bytes())
        .finalize();
    digest[..len].to_vec()
}

/// Unix µs → ns (negative times, which Warden never writes, become 0).
pub fn nanos(us: i64) -> u64 {
    u64::try_from(us).unwrap_or(0).saturating_mul(1000)
}
