//! Just-in-time approval: the registry of requests held for a human decision, the decisions
//! (checked against the rule's approvers), duration grants, and closing what a restart left open.
//!
//! A held request is an awaited future (a oneshot receiver raced against the rule's timeout): a
//! thousand of them cost memory, not CPU. Whoever removes an approval from the registry first
//! closes it (a decision, the timeout, the client leaving, or shutdown), and writes its record.
pub mod admin;
pub mod authority;
mod grants;
mod hold;
pub mod recovery;
pub mod view;
mod webhook;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{broadcast, oneshot};

pub use grants::IdentityKey;
pub use hold::{HoldRequest, Resolution};
pub use view::{ApprovalState, ApprovalView};

use crate::{
    audit::{
        governance::{Decision, GovernanceEvent, GovernanceRecord, GrantRecord},
        record::{AuditRecord, IdentitySnapshot},
        AuditError, AuditReader, AuditWriter,
    },
    config::Config,
    ids::{new_id, now_us},
    metrics::Metrics,
    policy::model::Approver,
};
use authority::{Peer, Refused};

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("approval {0} is not pending (unknown, or already decided, expired or cancelled)")]
    NotPending(String),
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("a denial needs a reason (--reason TEXT): the requester sees it")]
    ReasonRequired,
    #[error("a duration (--for) only applies to an approval")]
    DurationOnDeny,
    #[error("the decision could not be recorded in the audit store, so it was not applied; the request was refused: {0}")]
    Unrecorded(AuditError),
}

/// One held request in the registry.
struct Pending {
    view: ApprovalView,
    approvers: Vec<Approver>,
    resolve: oneshot::Sender<Resolution>,
}

pub struct Approvals {
    audit: AuditWriter,
    audit_db: PathBuf,
    metrics: Arc<Metrics>,
    pending: Mutex<HashMap<String, Pending>>,
    grants: grants::Grants,
    /// Each new pending approval, for `warden approvals watch` and the console.
    announced: broadcast::Sender<ApprovalView>,
    /// Each approval as it closes (decided, expired, cancelled, interrupted), for the console.
    closed: broadcast::Sender<ApprovalView>,
    webhook: Option<webhook::Webhook>,
}

impl Approvals {
    pub fn new(config: &Config, audit: AuditWriter, metrics: Arc<Metrics>) -> Arc<Approvals> {
        let webhook = config.approvals.webhook.as_ref().map(|url| {
            webhook::Webhook::new(
                url.clone(),
                Duration::from_secs(config.approvals.webhook_timeout_secs),
            )
        });
        Arc::new(Approvals {
            audit,
            audit_db: crate::audit::audit_db_path(&config.state_dir),
            metrics,
            pending: Mutex::new(HashMap::new()),
            grants: grants::Grants::default(),
            announced: broadcast::channel(1024).0,
            closed: broadcast::channel(1024).0,
            webhook,
        })
    }

    /// The grant in force for this identity under `rule`, if an approver gave one.
    pub fn grant_for(&self, identity: &IdentitySnapshot, rule: &str) -> Option<String> {
        self.grants.find(&IdentityKey::of(identity), rule, now_us())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalView> {
        self.announced.subscribe()
    }

    pub fn subscribe_closed(&self) -> broadcast::Receiver<ApprovalView> {
        self.closed.subscribe()
    }

    /// Counts an approval closed as `state` and tells the console; its record is the caller's.
    fn closed(&self, mut view: ApprovalView, state: ApprovalState) {
        self.metrics.approvals.closed(state.as_str());
        view.state = state;
        view.closed_at_us.get_or_insert_with(now_us);
        // No watcher is not an error.
        let _ = self.closed.send(view);
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, pending: Pending) {
        let mut registry = self.registry();
        registry.insert(pending.view.id.clone(), pending);
        self.metrics.approvals.set_pending(registry.len());
    }

    /// Removes approval `id`; whoever gets it closes it.
    fn take(&self, id: &str) -> Option<Pending> {
        let mut registry = self.registry();
        let taken = registry.remove(id);
        self.metrics.approvals.set_pending(registry.len());
        taken
    }

    /// The pending approvals `peer` may see (root and the API's readers: all; others: those
    /// naming them), oldest first.
    pub fn pending_for(&self, peer: &Peer) -> Vec<ApprovalView> {
        let mut list: Vec<ApprovalView> = self
            .registry()
            .values()
            .filter(|p| peer.sees_everything() || peer.is_named(&p.approvers))
            .map(|p| p.view.clone())
            .collect();
        list.sort_by_key(|view| view.created_at_us);
        list
    }

    /// Every approval on record (the chain), the pending ones as the registry has them. Root
    /// sees all; another peer the pending ones naming it and the ones it decided.
    pub fn all_for(&self, peer: &Peer) -> Result<Vec<ApprovalView>, AuditError> {
        let pending = self.pending_for(peer);
        let reader = AuditReader::open(&self.audit_db)?;
        let chain = view::views_from_chain(&reader.governance_since(0)?);
        Ok(chain
            .into_iter()
            .filter_map(|v| {
                if let Some(held) = pending.iter().find(|p| p.id == v.id) {
                    return Some(held.clone());
                }
                let decided_by_peer = v
                    .decided_by
                    .as_ref()
                    .is_some_and(|by| peer.is_same_actor(by));
                let visible = peer.sees_everything() || decided_by_peer;
                (v.state != ApprovalState::Pending && visible).then_some(v)
            })
            .collect())
    }

    /// Decides approval `id` as `peer`: checked against the rule's approvers, recorded in the
    /// chain, then applied (the held request forwards or is refused).
    pub async fn decide(
        &self,
        peer: &Peer,
        id: &str,
        decision: Decision,
        reason: Option<String>,
        grant_for: Option<Duration>,
    ) -> Result<ApprovalView, DecideError> {
        let reason = reason.filter(|r| !r.trim().is_empty());
        match decision {
            Decision::Deny if reason.is_none() => return Err(DecideError::ReasonRequired),
            Decision::Deny if grant_for.is_some() => return Err(DecideError::DurationOnDeny),
            _ => {}
        }
        let pending = {
            let mut registry = self.registry();
            let entry = registry
                .get(id)
                .ok_or_else(|| DecideError::NotPending(id.to_string()))?;
            peer.may_decide(id, &entry.view.requester, &entry.approvers)?;
            let taken = registry.remove(id);
            self.metrics.approvals.set_pending(registry.len());
            taken.ok_or_else(|| DecideError::NotPending(id.to_string()))?
        };
        let now = now_us();
        let grant = grant_for.map(|duration| GrantRecord {
            grant_id: new_id("gr"),
            expires_at_us: now.saturating_add(duration.as_micros() as i64),
        });
        let record = GovernanceRecord {
            at_us: now,
            exchange_id: pending.view.exchange_id.clone(),
            event: GovernanceEvent::ApprovalDecided {
                approval_id: id.to_string(),
                decision,
                by: peer.actor.clone(),
                reason: reason.clone(),
                grant: grant.clone(),
            },
        };
        if let Err(error) = self.audit.commit(AuditRecord::Governance(record)).await {
            tracing::error!(%error, approval_id = id, "approval decision not recorded; refusing the held request");
            let _ = pending.resolve.send(Resolution::Unrecorded);
            return Err(DecideError::Unrecorded(error));
        }
        if let Some(grant) = &grant {
            self.grants.insert(
                grant.grant_id.clone(),
                IdentityKey::of(&pending.view.requester),
                pending.view.rule.clone(),
                grant.expires_at_us,
            );
        }
        let mut view = pending.view;
        view.closed_at_us = Some(now);
        view.decided_by = Some(peer.actor.clone());
        view.reason = reason.clone();
        view.grant = grant.clone();
        let (state, resolution) = match decision {
            Decision::Approve => (ApprovalState::Approved, Resolution::Approved { grant }),
            Decision::Deny => (ApprovalState::Denied, Resolution::Denied { reason }),
        };
        view.state = state;
        self.closed(view.clone(), state);
        tracing::info!(
            approval_id = id,
            exchange_id = view.exchange_id.as_deref(),
            decision = view.state.as_str(),
            by_uid = peer.actor.uid,
            by_user = peer.actor.user.as_deref(),
            grant_id = view.grant.as_ref().map(|g| g.grant_id.as_str()),
            "approval decided"
        );
        // The held request may have left meanwhile; the decision stays on record either way.
        let _ = pending.resolve.send(resolution);
        Ok(view)
    }

    /// At shutdown: every held request is refused, its approval closed as interrupted.
    pub async fn interrupt_all(&self) {
        let all: Vec<Pending> = {
            let mut registry = self.registry();
            let all = registry.drain().map(|(_, p)| p).collect();
            self.metrics.approvals.set_pending(0);
            all
        };
        for pending in all {
            let record = GovernanceRecord {
                at_us: now_us(),
                exchange_id: pending.view.exchange_id.clone(),
                event: GovernanceEvent::ApprovalInterrupted {
                    approval_id: pending.view.id.clone(),
                },
            };
            if let Err(error) = self.audit.commit(AuditRecord::Governance(record)).await {
                tracing::error!(%error, approval_id = pending.view.id, "approval interruption not recorded");
            }
            self.closed(pending.view, ApprovalState::Interrupted);
            let _ = pending.resolve.send(Resolution::Interrupted);
        }
    }
}
