//! Which class a stored record belongs to, and what of it a sink ships (bodies only when asked).
use serde_json::Value;

use super::event::EventClass;
use crate::{audit::chain::RecordKind, config::sinks::SinkEventClass};

impl From<SinkEventClass> for EventClass {
    fn from(class: SinkEventClass) -> Self {
        match class {
            SinkEventClass::Exchanges => EventClass::Exchanges,
            SinkEventClass::Connections => EventClass::Connections,
            SinkEventClass::Approvals => EventClass::Approvals,
            SinkEventClass::Alerts => EventClass::Alerts,
            SinkEventClass::Admin => EventClass::Admin,
        }
    }
}

/// A record's class and name; None for the records sinks never ship (retention's prune records).
pub(super) fn classify(kind: RecordKind, record: &Value) -> Option<(EventClass, String)> {
    match kind {
        RecordKind::Request => Some((EventClass::Exchanges, "request".into())),
        RecordKind::Response => Some((EventClass::Exchanges, "response".into())),
        RecordKind::Connection => Some((EventClass::Connections, "connection".into())),
        RecordKind::Prune => None,
        RecordKind::Governance => {
            let name = record["event"]["type"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned();
            Some((governance_class(&name), name))
        }
    }
}

/// Read by name, not by `GovernanceEvent`, so that events added later (by name) are still
/// classed; an unknown one is an admin event (shipped by default, never lost).
fn governance_class(name: &str) -> EventClass {
    if name.starts_with("approval_") {
        EventClass::Approvals
    } else if name == "alert" || name.starts_with("alert_") || name.starts_with("limit_") {
        EventClass::Alerts
    } else {
        EventClass::Admin
    }
}

/// Removes what a prompt or an answer says (masked as it is, it is still content): request and
/// response bodies, stream events, the assembled text and tool arguments, an approval's excerpt.
/// Sizes, types, usage and the finish reason stay.
pub(super) fn strip_bodies(kind: RecordKind, record: &mut Value) {
    match kind {
        RecordKind::Request => strip_text(&mut record["body"]),
        RecordKind::Response => {
            strip_text(&mut record["body"]);
            if let Some(events) = record.get_mut("events").and_then(Value::as_array_mut) {
                events.clear();
            }
            if let Some(assembled) = record.get_mut("assembled").and_then(Value::as_object_mut) {
                assembled.remove("text");
                assembled.remove("refusal");
                for call in assembled
                    .get_mut("tool_calls")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(call) = call.as_object_mut() {
                        call.remove("arguments");
                    }
                }
            }
        }
        RecordKind::Governance => {
            if let Some(event) = record.get_mut("event").and_then(Value::as_object_mut) {
                event.remove("excerpt");
            }
        }
        RecordKind::Connection | RecordKind::Prune => {}
    }
}

fn strip_text(body: &mut Value) {
    if let Some(body) = body.as_object_mut() {
        body.remove("text");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn records_are_classed_by_kind_and_governance_name() {
        let class = |kind, record: Value| classify(kind, &record);
        assert_eq!(
            class(RecordKind::Request, json!({})),
            Some((EventClass::Exchanges, "request".into()))
        );
        assert_eq!(
            class(RecordKind::Response, json!({})),
            Some((EventClass::Exchanges, "response".into()))
        );
        assert_eq!(
            class(RecordKind::Connection, json!({})),
            Some((EventClass::Connections, "connection".into()))
        );
        assert_eq!(class(RecordKind::Prune, json!({})), None);
        let governance = |name: &str| {
            class(
                RecordKind::Governance,
                json!({"at_us": 1, "event": {"type": name}}),
            )
            .map(|(c, _)| c)
        };
        for name in [
            "approval_requested",
            "approval_decided",
            "approval_expired",
            "approval_cancelled",
            "approval_interrupted",
        ] {
            assert_eq!(governance(name), Some(EventClass::Approvals), "{name}");
        }
        for name in [
            "revoked",
            "restored",
            "signed_in",
            "api_request",
            "new_thing",
        ] {
            assert_eq!(governance(name), Some(EventClass::Admin), "{name}");
        }
        for name in ["alert", "limit_exceeded", "limit_budget_spent"] {
            assert_eq!(governance(name), Some(EventClass::Alerts), "{name}");
        }
    }

    #[test]
    fn bodies_are_stripped_and_the_rest_kept() {
        let mut request = json!({"method": "POST", "body": {"content_type": "application/json",
            "size": 12, "text": "{\"x\":\"<EMAIL>\"}", "truncated": false}});
        strip_bodies(RecordKind::Request, &mut request);
        assert_eq!(
            request,
            json!({"method": "POST", "body": {"content_type": "application/json",
            "size": 12, "truncated": false}})
        );
        let mut response = json!({"body": null, "events": [{"data": "hi"}], "assembled":
            {"text": "hello", "refusal": null, "tool_calls": [{"index": 0, "name": "f",
            "arguments": "{}"}], "finish_reason": "stop", "usage": {"total_tokens": 3}}});
        strip_bodies(RecordKind::Response, &mut response);
        assert_eq!(
            response,
            json!({"body": null, "events": [], "assembled": {"tool_calls": [{"index": 0,
            "name": "f"}], "finish_reason": "stop", "usage": {"total_tokens": 3}}})
        );
        let mut approval =
            json!({"event": {"type": "approval_requested", "excerpt": "hi", "rule": "r"}});
        strip_bodies(RecordKind::Governance, &mut approval);
        assert_eq!(
            approval,
            json!({"event": {"type": "approval_requested", "rule": "r"}})
        );
    }
}
