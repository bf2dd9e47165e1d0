//! Holding one request: record the pending approval, announce it, and wait (without polling) for
//! a decision, the rule's timeout, or the client to leave.
use std::{sync::Arc, time::Duration};

use tokio::sync::oneshot;

use super::{ApprovalState, ApprovalView, Approvals, Pending};
use crate::{
    audit::{
        governance::{GovernanceEvent, GovernanceRecord, GrantRecord},
        record::{AuditRecord, IdentitySnapshot},
        AuditError,
    },
    ids::{new_id, now_us},
    policy::model::Approver,
};

/// What the approve stage asks to hold.
pub struct HoldRequest {
    pub exchange_id: String,
    pub identity: IdentitySnapshot,
    pub rule: String,
    pub approvers: Vec<Approver>,
    pub timeout: Duration,
    pub model: Option<String>,
    pub endpoint: String,
    pub excerpt: String,
}

/// How a held request's approval closed.
#[derive(Debug)]
pub enum Resolution {
    Approved {
        grant: Option<GrantRecord>,
    },
    Denied {
        reason: Option<String>,
    },
    Expired,
    /// The daemon is stopping.
    Interrupted,
    /// A decision was taken but could not be recorded: fail closed.
    Unrecorded,
}

/// Closes the approval as cancelled if the held request is dropped before it is resolved (hyper
/// drops the handler when the client leaves).
struct CancelOnDrop {
    approvals: Arc<Approvals>,
    id: String,
    exchange_id: String,
    armed: bool,
    /// Registered: until then, a drop (while the request record is being committed) cancels too.
    registered: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        // Taken by someone else (a decision, the timeout, shutdown): they close it.
        if !self.armed {
            return;
        }
        let taken = match self.registered {
            true => match self.approvals.take(&self.id) {
                Some(pending) => Some(pending.view),
                None => return,
            },
            false => None,
        };
        // Drop is synchronous: submit (the writer commits it in order, without waiting here).
        self.approvals
            .audit
            .submit(AuditRecord::Governance(GovernanceRecord {
                at_us: now_us(),
                exchange_id: Some(self.exchange_id.clone()),
                event: GovernanceEvent::ApprovalCancelled {
                    approval_id: self.id.clone(),
                },
            }));
        match taken {
            Some(view) => self.approvals.closed(view, ApprovalState::Cancelled),
            None => self.approvals.metrics.approvals.closed("cancelled"),
        }
        tracing::info!(
            approval_id = self.id,
            exchange_id = self.exchange_id,
            "approval cancelled: the held request ended first (the client left, or its identity was revoked)"
        );
    }
}

impl Approvals {
    /// Records the pending approval (before holding: fail closed if it cannot be), announces it,
    /// and waits for it to close.
    pub async fn hold(self: &Arc<Self>, request: HoldRequest) -> Result<Resolution, AuditError> {
        let id = new_id("ap");
        let created = now_us();
        let expires = created.saturating_add(request.timeout.as_micros() as i64);
        let record = GovernanceRecord {
            at_us: created,
            exchange_id: Some(request.exchange_id.clone()),
            event: GovernanceEvent::ApprovalRequested {
                approval_id: id.clone(),
                identity: Box::new(request.identity.clone()),
                rule: request.rule.clone(),
                model: request.model.clone(),
                endpoint: request.endpoint.clone(),
                excerpt: request.excerpt.clone(),
                expires_at_us: expires,
            },
        };
        // Armed before the commit: a client leaving while it is written still cancels it.
        let mut guard = CancelOnDrop {
            approvals: self.clone(),
            id: id.clone(),
            exchange_id: request.exchange_id.clone(),
            armed: true,
            registered: false,
        };
        if let Err(error) = self.audit.commit(AuditRecord::Governance(record)).await {
            guard.armed = false;
            return Err(error);
        }

        let view = ApprovalView {
            id: id.clone(),
            exchange_id: Some(request.exchange_id.clone()),
            state: ApprovalState::Pending,
            requester: request.identity,
            rule: request.rule,
            approvers: request.approvers.iter().map(ToString::to_string).collect(),
            model: request.model,
            endpoint: request.endpoint,
            excerpt: request.excerpt,
            created_at_us: created,
            expires_at_us: expires,
            closed_at_us: None,
            decided_by: None,
            reason: None,
            grant: None,
        };
        let (resolve, mut resolved) = oneshot::channel();
        self.insert(Pending {
            view: view.clone(),
            approvers: request.approvers,
            resolve,
        });
        guard.registered = true;
        self.announce(view);

        let resolution = tokio::select! {
            resolution = &mut resolved => resolution.unwrap_or(Resolution::Unrecorded),
            () = tokio::time::sleep(request.timeout) => match self.take(&id) {
                Some(pending) => {
                    self.expire(&id, &request.exchange_id).await;
                    self.closed(pending.view, ApprovalState::Expired);
                    Resolution::Expired
                }
                // A decision took it first and is being recorded: its answer is on the way.
                None => resolved.await.unwrap_or(Resolution::Unrecorded),
            },
        };
        guard.armed = false;
        Ok(resolution)
    }

    async fn expire(&self, id: &str, exchange_id: &str) {
        let record = GovernanceRecord {
            at_us: now_us(),
            exchange_id: Some(exchange_id.to_string()),
            event: GovernanceEvent::ApprovalExpired {
                approval_id: id.to_string(),
            },
        };
        if let Err(error) = self.audit.commit(AuditRecord::Governance(record)).await {
            tracing::error!(%error, approval_id = id, "approval expiry not recorded");
        }
        tracing::info!(
            approval_id = id,
            exchange_id,
            "approval expired: nobody decided in time"
        );
    }

    /// The WARN line, the watchers and the webhook learn of a new pending approval.
    fn announce(&self, view: ApprovalView) {
        tracing::warn!(
            approval_id = view.id,
            exchange_id = view.exchange_id.as_deref(),
            rule = view.rule,
            approvers = ?view.approvers,
            model = view.model.as_deref(),
            endpoint = view.endpoint,
            requester_uid = view.requester.uid,
            requester_user = view.requester.user.as_deref(),
            account = view.requester.account.as_deref(),
            unit = view.requester.unit.as_deref(),
            exe = view.requester.exe.as_deref(),
            expires_at_us = view.expires_at_us,
            "request held for approval"
        );
        if let Some(webhook) = &self.webhook {
            webhook.notify(&view, self.metrics.clone());
        }
        // No watcher is not an error.
        let _ = self.announced.send(view);
    }
}
