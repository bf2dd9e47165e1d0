//! What a detection does: a chain record, a metric, a log line and, for `action = "block"`, a
//! revocation of the identity until an admin restores it.
use std::sync::Arc;

use super::detectors::{Finding, Verdict};
use crate::{
    audit::{
        governance::{Actor, GovernanceEvent, GovernanceRecord},
        record::AuditRecord,
        AuditError, AuditWriter,
    },
    config::anomaly::DetectorAction,
    identity::Identity,
    metrics::anomaly::AnomalyMetrics,
    revocation::{Revocations, Revoked, MAX_REASON_CHARS},
};

/// Who revokes on a detector's behalf: the daemon itself.
pub const DAEMON_ACTOR_NAME: &str = "warden (anomaly detection)";

pub struct Reactor {
    pub audit: AuditWriter,
    pub revocations: Arc<Revocations>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Reactor {
    fn metrics(&self) -> &AnomalyMetrics {
        &self.metrics.anomaly
    }

    /// Acts on one verdict about `identity` (whose key is `selector`).
    pub fn react(
        &self,
        selector: &str,
        identity: &Identity,
        exchange_id: &str,
        verdict: Verdict,
        now_us: i64,
    ) {
        let finding = match verdict {
            Verdict::Suppressed(detector) => {
                self.metrics().suppressed(detector.as_str());
                return;
            }
            Verdict::Fired(finding) => finding,
        };
        let detector = finding.detector.as_str();
        let action = finding.action.as_str();
        self.metrics().alerted(detector, action);
        tracing::warn!(
            detector,
            action,
            selector,
            exchange_id,
            summary = %finding.summary,
            "anomaly detected"
        );
        let record = GovernanceRecord {
            at_us: now_us,
            exchange_id: Some(exchange_id.to_owned()),
            event: GovernanceEvent::Alert {
                detector: detector.to_owned(),
                selector: selector.to_owned(),
                action: action.to_owned(),
                summary: finding.summary.clone(),
                details: finding.details.clone(),
            },
        };
        if let Err(error) = self.commit(record) {
            tracing::error!(%error, detector, selector, "anomaly alert not recorded in the audit chain");
        }
        if finding.action == DetectorAction::Block {
            self.block(selector, identity, &finding);
        }
    }

    /// Revokes `selector`, unless a revocation already covers the identity.
    fn block(&self, selector: &str, identity: &Identity, finding: &Finding) {
        if let Some(existing) = self.revocations.revoked(identity) {
            tracing::info!(
                selector,
                revoked_as = %existing.stored.selector,
                "anomaly block: the identity is revoked already"
            );
            return;
        }
        let mut reason = format!("anomaly {}: {}", finding.detector.as_str(), finding.summary);
        if reason.chars().count() > MAX_REASON_CHARS {
            reason = reason.chars().take(MAX_REASON_CHARS).collect();
        }
        let record = |record| self.commit(record);
        match self
            .revocations
            .revoke(selector, Some(reason), daemon_actor(), record)
        {
            Ok(Revoked::Now(revocation)) => tracing::warn!(
                selector = %revocation.stored.selector,
                detector = finding.detector.as_str(),
                "identity revoked by anomaly detection: its requests are refused until `warden restore {}`",
                revocation.stored.selector
            ),
            Ok(Revoked::AlreadyInForce(_)) => {}
            Err(error) => tracing::error!(%error, selector, "anomaly block: revoking failed"),
        }
    }

    fn commit(&self, record: GovernanceRecord) -> Result<(), AuditError> {
        self.audit
            .commit_blocking(AuditRecord::Governance(record))
            .map(drop)
    }
}

/// The daemon, as the author of a revocation.
fn daemon_actor() -> Actor {
    // SAFETY: geteuid cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    Actor {
        uid,
        user: Some(DAEMON_ACTOR_NAME.to_owned()),
        pid: Some(std::process::id()),
        oidc: None,
    }
}
