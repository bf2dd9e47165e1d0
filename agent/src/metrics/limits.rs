//! The metrics of `[limits]`: connections refused over a cap, connections open, the request-body
//! memory budget, and HTTP/2 connections Warden closed for abuse or idleness.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    /// `process`, `cgroup` or `daemon`.
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    /// `idle` or `client_resets`.
    reason: &'static str,
}

/// Every label is a fixed word: bounded.
#[derive(Debug, Default)]
pub struct LimitMetrics {
    over_limit: Family<LimitLabels, Counter>,
    /// Open redirected connections (kept by the connection caps).
    pub open_connections: Gauge,
    /// Bytes of request bodies held in memory now.
    pub body_budget_used: Gauge,
    /// Requests refused because their body would pass the budget.
    pub body_budget_refusals: Counter,
    http2_closed: Family<ReasonLabels, Counter>,
}

impl LimitMetrics {
    pub fn register(registry: &mut Registry) -> LimitMetrics {
        let metrics = LimitMetrics::default();
        registry.register(
            "warden_connections_over_limit",
            "Connections reset at once because their process, their cgroup or the daemon held as many as [limits] allows, by limit",
            metrics.over_limit.clone(),
        );
        registry.register(
            "warden_open_connections",
            "Redirected connections open now",
            metrics.open_connections.clone(),
        );
        registry.register(
            "warden_body_budget_used_bytes",
            "Bytes of request bodies held in memory now ([limits] body_memory_budget_bytes)",
            metrics.body_budget_used.clone(),
        );
        registry.register(
            "warden_body_budget_refusals",
            "Requests answered 503 because buffering their body would pass [limits] body_memory_budget_bytes",
            metrics.body_budget_refusals.clone(),
        );
        registry.register(
            "warden_http2_connections_closed",
            "HTTP/2 connections Warden closed itself, by reason (idle, client_resets)",
            metrics.http2_closed.clone(),
        );
        metrics
    }

    pub fn over_limit(&self, limit: &'static str) {
        self.over_limit.get_or_create(&LimitLabels { limit }).inc();
    }

    pub fn http2_closed(&self, reason: &'static str) {
        self.http2_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}
