//! Credential custody's metrics: keys injected and requests refused, by credential name.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InjectionLabels {
    credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    /// Empty when no credential serves the identity.
    credential: String,
    /// `unserved` or `presented_key`.
    reason: &'static str,
}

/// Labels are credential names from the config (fixed for the daemon's life): bounded.
#[derive(Debug, Default)]
pub struct CredentialMetrics {
    injections: Family<InjectionLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
}

impl CredentialMetrics {
    pub fn register(registry: &mut Registry) -> CredentialMetrics {
        let metrics = CredentialMetrics::default();
        registry.register(
            "warden_credential_injections",
            "Requests sent upstream with a custodied key, by credential name",
            metrics.injections.clone(),
        );
        registry.register(
            "warden_credential_refusals",
            "Requests refused by credential custody (401), by credential name and reason (unserved, presented_key)",
            metrics.refusals.clone(),
        );
        metrics
    }

    pub fn injected(&self, credential: &str) {
        self.injections
            .get_or_create(&InjectionLabels {
                credential: credential.to_string(),
            })
            .inc();
    }

    pub fn refused(&self, credential: &str, reason: &'static str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                credential: credential.to_string(),
                reason,
            })
            .inc();
    }
}
