//! Sink events as the runner builds them, for the transports' unit tests.
use serde_json::json;

use super::{EventClass, SinkEvent};
use crate::audit::ExchangeSummary;

/// A chat completion's response event: alice, gpt-4o-mini, 12 in, 5 out, 250 ms, one value masked.
pub fn response_event() -> SinkEvent {
    SinkEvent {
        seq: 42,
        class: EventClass::Exchanges,
        name: "response".to_owned(),
        at_us: 1_700_000_000_250_000,
        exchange_id: Some("ex_01".to_owned()),
        record: json!({"exchange_id": "ex_01", "status": 200, "outcome": "ok"}),
        exchange: Some(ExchangeSummary {
            id: "ex_01".to_owned(),
            started_at: "2023-11-14T22:13:20.000000Z".to_owned(),
            started_us: 1_700_000_000_000_000,
            pid: 4242,
            uid: 1000,
            user: Some("alice".to_owned()),
            account: Some("billing-bot".to_owned()),
            unit: Some("agent.service".to_owned()),
            exe: Some("/usr/bin/python3".to_owned()),
            cgroup: Some("/system.slice/agent.service".to_owned()),
            container: None,
            model: Some("gpt-4o-mini".to_owned()),
            endpoint: "chat.completions".to_owned(),
            status: Some(200),
            outcome: "ok".to_owned(),
            input_tokens: Some(12),
            output_tokens: Some(5),
            total_tokens: Some(17),
            duration_ms: Some(250.0),
            masked: 1,
        }),
    }
}

/// A request event (no summary: the identity is in the record).
pub fn request_event() -> SinkEvent {
    SinkEvent {
        seq: 41,
        class: EventClass::Exchanges,
        name: "request".to_owned(),
        at_us: 1_700_000_000_000_000,
        exchange_id: Some("ex_01".to_owned()),
        record: json!({"exchange_id": "ex_01", "model": "gpt-4o-mini",
            "identity": {"user": "alice", "uid": 1000}}),
        exchange: None,
    }
}

/// A governance event of the given class and name, with no exchange.
pub fn governance_event(class: EventClass, name: &str) -> SinkEvent {
    SinkEvent {
        seq: 7,
        class,
        name: name.to_owned(),
        at_us: 1_700_000_000_000_000,
        exchange_id: None,
        record: json!({"at_us": 1_700_000_000_000_000_i64, "event": {"kind": name}}),
        exchange: None,
    }
}
