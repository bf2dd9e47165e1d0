//! After a restart: every approval the chain shows requested but never closed was pending when
//! the daemon stopped; it is closed as interrupted. Duration grants still in force are restored.
use super::{grants::IdentityKey, ApprovalState, Approvals};
use crate::{
    audit::{
        governance::{GovernanceEvent, GovernanceRecord},
        record::AuditRecord,
        AuditError, AuditReader,
    },
    ids::now_us,
};

/// What recovery did, for the start-up log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub interrupted: usize,
    pub grants: usize,
}

impl Approvals {
    pub async fn recover(&self) -> Result<Recovered, AuditError> {
        let db = self.audit_db.clone();
        let records = tokio::task::spawn_blocking(move || {
            AuditReader::open(&db).and_then(|reader| reader.governance_since(0))
        })
        .await
        .unwrap_or_else(|error| {
            Err(AuditError::Io {
                path: self.audit_db.clone(),
                source: std::io::Error::other(error),
            })
        })?;
        let mut recovered = Recovered::default();
        let now = now_us();
        for view in super::view::views_from_chain(&records) {
            match (view.state, &view.grant) {
                (ApprovalState::Pending, _) => {
                    let record = GovernanceRecord {
                        at_us: now_us(),
                        exchange_id: view.exchange_id.clone(),
                        event: GovernanceEvent::ApprovalInterrupted {
                            approval_id: view.id.clone(),
                        },
                    };
                    self.audit.commit(AuditRecord::Governance(record)).await?;
                    self.metrics.approvals.closed("interrupted");
                    tracing::warn!(
                        approval_id = view.id,
                        exchange_id = view.exchange_id.as_deref(),
                        "approval left pending by the previous run closed as interrupted"
                    );
                    recovered.interrupted += 1;
                }
                (ApprovalState::Approved, Some(grant)) if grant.expires_at_us > now => {
                    self.grants.insert(
                        grant.grant_id.clone(),
                        IdentityKey::of(&view.requester),
                        view.rule.clone(),
                        grant.expires_at_us,
                    );
                    recovered.grants += 1;
                }
                _ => {}
            }
        }
        Ok(recovered)
    }
}
