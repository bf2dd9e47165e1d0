//! The governance records of the chain: approvals, their decisions and grants, revocations and
//! anomaly alerts.
//!
//! They sit in the same hash chain as the exchanges they govern, so deleting or editing one breaks
//! `audit verify` like any other record. An approval's records carry its exchange's id, which is
//! how `sessions show` finds the trail of an exchange.
use serde::{Deserialize, Serialize};

use super::record::IdentitySnapshot;

/// One governance event, with when it happened and the exchange it concerns (if any).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceRecord {
    /// Unix time in microseconds.
    pub at_us: i64,
    pub exchange_id: Option<String>,
    pub event: GovernanceEvent,
}

/// Who did something: a peer of the admin socket (SO_PEERCRED), the daemon itself, or a person
/// signed in to the HTTPS API (then `uid` is the daemon's and `oidc` names the person).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub uid: u32,
    /// The user name, when the uid has one.
    pub user: Option<String>,
    pub pid: Option<u32>,
    /// Absent from the records of socket peers, so their canonical JSON (and hashes) are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcActor>,
}

/// A person the identity provider vouched for (a verified token's claims).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcActor {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
}

impl Actor {
    /// The shortest name that says who: the OIDC email (or subject), the user name, or `uid N`.
    pub fn name(&self) -> String {
        match (&self.oidc, &self.user) {
            (Some(oidc), _) => oidc.email.clone().unwrap_or_else(|| oidc.subject.clone()),
            (None, Some(user)) => user.clone(),
            (None, None) => format!("uid {}", self.uid),
        }
    }

    /// `alice@example.com (OIDC subject S)`, `user alice (uid 1000)` or `uid 1000`, for listings.
    pub fn describe(&self) -> String {
        if let Some(oidc) = &self.oidc {
            return match &oidc.email {
                Some(email) => format!("{email} (OIDC subject {})", oidc.subject),
                None => format!("OIDC subject {}", oidc.subject),
            };
        }
        match &self.user {
            Some(user) => format!("{user} (uid {})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

/// A duration approval: later requests of the same identity matching the same rule pass
/// until `expires_at_us`, each recorded with `grant_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub grant_id: String,
    pub expires_at_us: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GovernanceEvent {
    /// A request held for a human decision: who asked and for what.
    ApprovalRequested {
        approval_id: String,
        /// Boxed: it is most of the record's size, and the other events are small.
        identity: Box<IdentitySnapshot>,
        rule: String,
        model: Option<String>,
        endpoint: String,
        /// The prompt's beginning, masked as it was forwarded would be.
        excerpt: String,
        expires_at_us: i64,
    },
    /// Who decided, and why; an approval for a duration also opens a grant.
    ApprovalDecided {
        approval_id: String,
        decision: Decision,
        by: Actor,
        reason: Option<String>,
        grant: Option<GrantRecord>,
    },
    /// The client left while its request was held.
    ApprovalCancelled { approval_id: String },
    /// Nobody decided within the rule's timeout.
    ApprovalExpired { approval_id: String },
    /// The daemon stopped (or restarted) while the approval was pending.
    ApprovalInterrupted { approval_id: String },
    /// An identity selector cut off from every intercepted host.
    Revoked {
        selector: String,
        by: Actor,
        reason: Option<String>,
    },
    /// A revocation lifted.
    Restored { selector: String, by: Actor },
    /// A person signed in to the console (the identity provider vouched for `by`).
    SignedIn { by: Actor },
    /// One request to the HTTPS API, by whom, and how it was answered.
    ApiRequest {
        method: String,
        /// The path and query, as asked.
        target: String,
        status: u16,
        by: Actor,
    },
    /// An anomaly detector fired for an identity (the record's exchange is the one that tipped it).
    Alert {
        /// `token_spike`, `request_spike`, `new_model`, `unusual_hours`, `probing`, `real_key` or
        /// `pii_burst`.
        detector: String,
        /// The identity, as the selector a block revokes (`account:…`, `unit:…` or `uid:…`).
        selector: String,
        /// `alert`, or `block` (the identity was revoked, or already was).
        action: String,
        /// One line that says what was seen, for listings.
        summary: String,
        details: AlertDetails,
    },
}

/// The numbers behind an alert; which are set depends on the detector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertDetails {
    /// What was seen: this hour's tokens or requests, denials or masked values in the window.
    pub observed: f64,
    /// What it had to exceed (or, for unusual_hours, reach).
    pub threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stddev: Option<f64>,
    /// Hours in the baseline (the identity's active span within the trailing window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_hours: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The hour of the day, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour_utc: Option<u8>,
}

// The detectors only record finite numbers, so equality is reflexive.
impl Eq for AlertDetails {}

impl GovernanceEvent {
    /// The `type` tag, for listings and log lines.
    pub fn name(&self) -> &'static str {
        match self {
            GovernanceEvent::ApprovalRequested { .. } => "approval_requested",
            GovernanceEvent::ApprovalDecided { .. } => "approval_decided",
            GovernanceEvent::ApprovalCancelled { .. } => "approval_cancelled",
            GovernanceEvent::ApprovalExpired { .. } => "approval_expired",
            GovernanceEvent::ApprovalInterrupted { .. } => "approval_interrupted",
            GovernanceEvent::Revoked { .. } => "revoked",
            GovernanceEvent::Restored { .. } => "restored",
            GovernanceEvent::SignedIn { .. } => "signed_in",
            GovernanceEvent::ApiRequest { .. } => "api_request",
            GovernanceEvent::Alert { .. } => "alert",
        }
    }

    /// The approval this event belongs to, if it is an approval's.
    pub fn approval_id(&self) -> Option<&str> {
        match self {
            GovernanceEvent::ApprovalRequested { approval_id, .. }
            | GovernanceEvent::ApprovalDecided { approval_id, .. }
            | GovernanceEvent::ApprovalCancelled { approval_id }
            | GovernanceEvent::ApprovalExpired { approval_id }
            | GovernanceEvent::ApprovalInterrupted { approval_id } => Some(approval_id),
            GovernanceEvent::Revoked { .. }
            | GovernanceEvent::Restored { .. }
            | GovernanceEvent::SignedIn { .. }
            | GovernanceEvent::ApiRequest { .. }
            | GovernanceEvent::Alert { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_type() {
        let record = GovernanceRecord {
            at_us: 5,
            exchange_id: Some("ex-1".into()),
            event: GovernanceEvent::ApprovalExpired {
                approval_id: "ap-1".into(),
            },
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            json,
            r#"{"at_us":5,"exchange_id":"ex-1","event":{"type":"approval_expired","approval_id":"ap-1"}}"#
        );
        assert_eq!(
            serde_json::from_str::<GovernanceRecord>(&json).unwrap(),
            record
        );
        assert_eq!(record.event.name(), "approval_expired");
        assert_eq!(record.event.approval_id(), Some("ap-1"));
    }
}
