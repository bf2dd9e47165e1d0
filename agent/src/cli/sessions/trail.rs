//! The governance part of `sessions show`: the approval trail of an exchange (requested, decided,
//! expired, cancelled, interrupted), one line per chain record.
use super::text::{one_line, Doc};
use crate::{
    audit::governance::{Actor, Decision, GovernanceEvent, GovernanceRecord},
    cli::time_arg::rfc3339_from_micros,
};

const SECTION: usize = 2;

/// An empty string when the exchange has no governance record.
pub fn render(records: &[GovernanceRecord]) -> String {
    if records.is_empty() {
        return String::new();
    }
    let mut doc = Doc::default();
    doc.line(0, "Approval");
    for record in records {
        let at = rfc3339_from_micros(record.at_us);
        doc.line(SECTION, format_args!("{at}  {}", describe(&record.event)));
    }
    doc.into_string()
}

fn actor(by: &Actor) -> String {
    one_line(&by.describe())
}

fn describe(event: &GovernanceEvent) -> String {
    match event {
        GovernanceEvent::ApprovalRequested {
            approval_id,
            rule,
            expires_at_us,
            ..
        } => format!(
            "requested {approval_id} by rule {}, expires {}",
            one_line(rule),
            rfc3339_from_micros(*expires_at_us)
        ),
        GovernanceEvent::ApprovalDecided {
            approval_id,
            decision,
            by,
            reason,
            grant,
        } => {
            let verb = match decision {
                Decision::Approve => "approved",
                Decision::Deny => "denied",
            };
            let mut text = format!("{verb} {approval_id} by {}", actor(by));
            if let Some(reason) = reason {
                text.push_str(&format!(": {}", one_line(reason)));
            }
            if let Some(grant) = grant {
                text.push_str(&format!(
                    "; grant {} until {}",
                    grant.grant_id,
                    rfc3339_from_micros(grant.expires_at_us)
                ));
            }
            text
        }
        GovernanceEvent::ApprovalCancelled { approval_id } => {
            format!("cancelled {approval_id}: the request ended while held (client left or identity revoked)")
        }
        GovernanceEvent::ApprovalExpired { approval_id } => {
            format!("expired {approval_id}: nobody decided in time")
        }
        GovernanceEvent::ApprovalInterrupted { approval_id } => {
            format!("interrupted {approval_id}: Warden stopped while it was pending")
        }
        GovernanceEvent::Alert {
            detector,
            selector,
            action,
            summary,
            ..
        } => format!(
            "anomaly {} ({}) for {}: {}",
            one_line(detector),
            one_line(action),
            one_line(selector),
            one_line(summary)
        ),
        other => other.name().to_string(),
    }
}
