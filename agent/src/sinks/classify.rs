//! Which class a stored record belongs to.
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
}
