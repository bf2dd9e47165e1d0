//! An approval as the CLI shows it: built from the registry while pending, or from the chain's
//! governance records once closed.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::{
    governance::{Actor, Decision, GovernanceEvent, GovernanceRecord, GrantRecord},
    record::IdentitySnapshot,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
    Interrupted,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Cancelled => "cancelled",
            ApprovalState::Interrupted => "interrupted",
        }
    }
}

/// One approval: who asked and for what, and (once closed) how it closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    pub id: String,
    pub exchange_id: Option<String>,
    pub state: ApprovalState,
    pub requester: IdentitySnapshot,
    pub rule: String,
    /// Who may decide (`user:NAME`, `group:NAME`); empty when read back from the chain.
    pub approvers: Vec<String>,
    pub model: Option<String>,
    pub endpoint: String,
    /// The prompt's beginning, masked as forwarded.
    pub excerpt: String,
    pub created_at_us: i64,
    pub expires_at_us: i64,
    pub closed_at_us: Option<i64>,
    pub decided_by: Option<Actor>,
    pub reason: Option<String>,
    pub grant: Option<GrantRecord>,
}

/// Folds governance records (oldest first) into the approvals they describe, oldest first.
pub fn views_from_chain(records: &[GovernanceRecord]) -> Vec<ApprovalView> {
    let mut views: BTreeMap<String, ApprovalView> = BTreeMap::new();
    for record in records {
        let at = record.at_us;
        match &record.event {
            GovernanceEvent::ApprovalRequested {
                approval_id,
                identity,
                rule,
                model,
                endpoint,
                excerpt,
                expires_at_us,
            } => {
                views.insert(
                    approval_id.clone(),
                    ApprovalView {
                        id: approval_id.clone(),
                        exchange_id: record.exchange_id.clone(),
                        state: ApprovalState::Pending,
                        requester: (**identity).clone(),
                        rule: rule.clone(),
                        approvers: Vec::new(),
                        model: model.clone(),
                        endpoint: endpoint.clone(),
                        excerpt: excerpt.clone(),
                        created_at_us: at,
                        expires_at_us: *expires_at_us,
                        closed_at_us: None,
                        decided_by: None,
                        reason: None,
                        grant: None,
                    },
                );
            }
            event => {
                let Some(view) = event.approval_id().and_then(|id| views.get_mut(id)) else {
                    continue;
                };
                view.closed_at_us = Some(at);
                view.state = match event {
                    GovernanceEvent::ApprovalDecided {
                        decision,
                        by,
                        reason,
                        grant,
                        ..
                    } => {
                        view.decided_by = Some(by.clone());
                        view.reason = reason.clone();
                        view.grant = grant.clone();
                        match decision {
                            Decision::Approve => ApprovalState::Approved,
                            Decision::Deny => ApprovalState::Denied,
                        }
                    }
                    GovernanceEvent::ApprovalCancelled { .. } => ApprovalState::Cancelled,
                    GovernanceEvent::ApprovalExpired { .. } => ApprovalState::Expired,
                    _ => ApprovalState::Interrupted,
                };
            }
        }
    }
    let mut list: Vec<ApprovalView> = views.into_values().collect();
    list.sort_by_key(|view| view.created_at_us);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_us: i64, event: GovernanceEvent) -> GovernanceRecord {
        GovernanceRecord {
            at_us,
            exchange_id: Some("ex-1".into()),
            event,
        }
    }

    fn requested(id: &str) -> GovernanceEvent {
        GovernanceEvent::ApprovalRequested {
            approval_id: id.into(),
            identity: Box::default(),
            rule: "review".into(),
            model: Some("gpt-4o".into()),
            endpoint: "chat.completions".into(),
            excerpt: "hi".into(),
            expires_at_us: 100,
        }
    }

    #[test]
    fn the_chain_folds_into_approvals_with_how_they_closed() {
        let by = Actor {
            uid: 1000,
            user: Some("alice".into()),
            pid: None,
            oidc: None,
        };
        let records = [
            record(1, requested("ap-1")),
            record(2, requested("ap-2")),
            record(3, requested("ap-3")),
            record(
                4,
                GovernanceEvent::ApprovalDecided {
                    approval_id: "ap-1".into(),
                    decision: Decision::Deny,
                    by: by.clone(),
                    reason: Some("no".into()),
                    grant: None,
                },
            ),
            record(
                5,
                GovernanceEvent::ApprovalCancelled {
                    approval_id: "ap-2".into(),
                },
            ),
        ];
        let views = views_from_chain(&records);
        let states: Vec<(&str, ApprovalState)> =
            views.iter().map(|v| (v.id.as_str(), v.state)).collect();
        assert_eq!(
            states,
            [
                ("ap-1", ApprovalState::Denied),
                ("ap-2", ApprovalState::Cancelled),
                ("ap-3", ApprovalState::Pending)
            ]
        );
        assert_eq!(views[0].decided_by, Some(by));
        assert_eq!(views[0].reason.as_deref(), Some("no"));
        assert_eq!(views[0].closed_at_us, Some(4));
        assert_eq!(views[2].closed_at_us, None);
    }
}
