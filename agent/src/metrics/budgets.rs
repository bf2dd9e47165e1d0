//! The `[[limit]]` family: requests refused by a limit, by limit and by which cap refused.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use crate::identity_limits::{ledger::Dimension, Refused};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    /// A `[[limit]]` name: the policy's own, so bounded by it.
    limit: String,
    /// The cap, or `unpriced`: a fixed set.
    cap: &'static str,
}

#[derive(Debug)]
pub struct BudgetMetrics {
    refused: Family<RefusedLabels, Counter>,
}

impl BudgetMetrics {
    pub(super) fn register(registry: &mut Registry) -> BudgetMetrics {
        let refused = Family::default();
        registry.register(
            "warden_limit_refusals",
            "Requests refused by a [[limit]] (429), by limit and cap (requests_per_minute, tokens_per_minute, tokens_per_day, cost_per_day, cost_per_month, concurrent_requests, unpriced)",
            refused.clone(),
        );
        BudgetMetrics { refused }
    }

    pub fn refused(&self, refused: &Refused) {
        let (limit, cap) = match refused {
            Refused::Over { limit, exceeded } => (limit, cap_name(exceeded.dimension)),
            Refused::Unpriced { limit, .. } => (limit, "unpriced"),
        };
        let labels = RefusedLabels {
            limit: limit.clone(),
            cap,
        };
        self.refused.get_or_create(&labels).inc();
    }
}

fn cap_name(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::RequestsPerMinute => "requests_per_minute",
        Dimension::TokensPerMinute => "tokens_per_minute",
        Dimension::TokensPerDay => "tokens_per_day",
        Dimension::CostPerDay => "cost_per_day",
        Dimension::CostPerMonth => "cost_per_month",
        Dimension::ConcurrentRequests => "concurrent_requests",
    }
}
