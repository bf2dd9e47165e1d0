//! The approval families: how many requests are held now, how approvals closed, webhook failures.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    /// approved, denied, expired, cancelled or interrupted: a fixed set.
    outcome: &'static str,
}

#[derive(Debug)]
pub struct ApprovalMetrics {
    pending: Gauge,
    closed: Family<ClosedLabels, Counter>,
    webhook_failures: Counter,
}

impl ApprovalMetrics {
    pub(super) fn register(registry: &mut Registry) -> ApprovalMetrics {
        let pending = Gauge::default();
        registry.register(
            "warden_approvals_pending",
            "Requests held now, waiting for a human decision",
            pending.clone(),
        );
        let closed = Family::default();
        registry.register(
            "warden_approval_decisions",
            "Approvals closed, by outcome (approved, denied, expired, cancelled, interrupted)",
            closed.clone(),
        );
        let webhook_failures = Counter::default();
        registry.register(
            "warden_approval_webhook_failures",
            "Approval webhook POSTs that failed or timed out",
            webhook_failures.clone(),
        );
        ApprovalMetrics {
            pending,
            closed,
            webhook_failures,
        }
    }

    pub fn set_pending(&self, held: usize) {
        self.pending.set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    pub fn closed(&self, outcome: &'static str) {
        self.closed.get_or_create(&ClosedLabels { outcome }).inc();
    }

    pub fn webhook_failed(&self) {
        self.webhook_failures.inc();
    }
}
