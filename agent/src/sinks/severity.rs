//! How serious an event is, the same for every sink kind: alerts warn, refusals are notices.
use super::{EventClass, SinkEvent};

/// RFC 5424 severities Warden uses (their numbers are syslog's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Warning = 4,
    Notice = 5,
    Informational = 6,
}

impl Severity {
    /// The OpenTelemetry log severity number (WARN, INFO2, INFO).
    pub fn otel_number(self) -> i32 {
        match self {
            Severity::Warning => 13,
            Severity::Notice => 10,
            Severity::Informational => 9,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Informational => "info",
        }
    }
}

/// Alerts are warnings; denials, revocations, limit refusals and rejected connections notices;
/// the rest info.
pub fn severity(event: &SinkEvent) -> Severity {
    if event.class == EventClass::Alerts {
        return Severity::Warning;
    }
    let refused = matches!(
        outcome(event),
        Some("denied" | "approval_denied" | "revoked" | "limited")
    ) || event.record.get("disposition").and_then(|d| d.as_str()) == Some("rejected");
    if refused {
        Severity::Notice
    } else {
        Severity::Informational
    }
}

/// The exchange's outcome: from the summary on response events, else from the record.
pub fn outcome(event: &SinkEvent) -> Option<&str> {
    event
        .exchange
        .as_ref()
        .map(|e| e.outcome.as_str())
        .or_else(|| event.record.get("outcome")?.as_str())
}
