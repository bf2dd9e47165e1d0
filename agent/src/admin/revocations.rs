//! The revocation operations: revoke, restore and list — root's alone on the admin socket (the
//! server checks), an admin's over the HTTPS API.
//!
//! Their answers travel in the response's free-form `status` field as a [`RevocationAnswer`].
use serde::{Deserialize, Serialize};

use super::AdminResponse;
use crate::{
    audit::{
        format_timestamp_us,
        governance::{Actor, GovernanceRecord},
        record::AuditRecord,
        AuditError,
    },
    proxy::ProxyContext,
    revocation::{Revocation, Revoked},
};

/// One revocation in force, as the CLI shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RevocationEntry {
    pub selector: String,
    pub by: Actor,
    pub reason: Option<String>,
    pub at_us: i64,
    /// `at_us` as RFC 3339, UTC.
    pub at: String,
}

impl From<&Revocation> for RevocationEntry {
    fn from(revocation: &Revocation) -> Self {
        let stored = &revocation.stored;
        RevocationEntry {
            selector: stored.selector.clone(),
            by: stored.by.clone(),
            reason: stored.reason.clone(),
            at_us: stored.at_us,
            at: format_timestamp_us(stored.at_us),
        }
    }
}

/// What a revocation operation answers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RevocationAnswer {
    /// Revoke: the revocation now in force; `already_in_force` if it was before this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<RevocationEntry>,
    #[serde(default)]
    pub already_in_force: bool,
    /// Restore: the revocation lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<RevocationEntry>,
    /// List: every revocation in force, oldest first.
    #[serde(default)]
    pub revocations: Vec<RevocationEntry>,
}

pub fn revoke(
    context: &ProxyContext,
    actor: &Actor,
    selector: &str,
    reason: Option<String>,
) -> AdminResponse {
    let record = |record| commit(context, record);
    match context
        .revocations
        .revoke(selector, reason, actor.clone(), record)
    {
        Ok(Revoked::Now(revocation)) => {
            tracing::warn!(
                selector = %revocation.stored.selector,
                by_uid = actor.uid,
                by_user = actor.user.as_deref(),
                reason = revocation.stored.reason.as_deref(),
                "identity revoked: its requests are refused and its exchanges in flight cut"
            );
            answer(RevocationAnswer {
                revoked: Some(revocation.as_ref().into()),
                ..RevocationAnswer::default()
            })
        }
        Ok(Revoked::AlreadyInForce(revocation)) => answer(RevocationAnswer {
            revoked: Some(revocation.as_ref().into()),
            already_in_force: true,
            ..RevocationAnswer::default()
        }),
        Err(error) => refused(error.to_string()),
    }
}

pub fn restore(context: &ProxyContext, actor: &Actor, selector: &str) -> AdminResponse {
    let record = |record| commit(context, record);
    match context.revocations.restore(selector, actor.clone(), record) {
        Ok(revocation) => {
            tracing::warn!(
                selector = %revocation.stored.selector,
                by_uid = actor.uid,
                by_user = actor.user.as_deref(),
                "revocation lifted: the identity's requests are served again"
            );
            answer(RevocationAnswer {
                restored: Some(revocation.as_ref().into()),
                ..RevocationAnswer::default()
            })
        }
        Err(error) => refused(error.to_string()),
    }
}

pub fn list(context: &ProxyContext) -> AdminResponse {
    let revocations = context.revocations.list();
    answer(RevocationAnswer {
        revocations: revocations.iter().map(|r| r.as_ref().into()).collect(),
        ..RevocationAnswer::default()
    })
}

/// The socket admits approvers too (`[admin] group`); revocation stays root's whatever it admits.
pub fn root_only(actor: &Actor, operation: &str) -> Option<AdminResponse> {
    (actor.uid != 0).then(|| refused(format!("`warden {operation}` is for root only")))
}

/// Commits a governance record durably. Answers run on a blocking thread (see server.rs), where
/// waiting for the writer's acknowledgement is allowed.
fn commit(context: &ProxyContext, record: GovernanceRecord) -> Result<(), AuditError> {
    context
        .audit
        .commit_blocking(AuditRecord::Governance(record))
        .map(drop)
}

fn answer(answer: RevocationAnswer) -> AdminResponse {
    AdminResponse {
        ok: true,
        error: None,
        status: serde_json::to_value(answer).ok(),
    }
}

fn refused(error: String) -> AdminResponse {
    AdminResponse {
        ok: false,
        error: Some(error),
        status: None,
    }
}
