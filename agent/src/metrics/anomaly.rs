//! The anomaly families: alerts by detector and action, repeats suppressed, exchanges judged and
//! dropped, and the baseline's size and load time.
use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    /// One of the seven detector names: a fixed set.
    detector: &'static str,
    /// `alert` or `block`.
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DetectorLabels {
    detector: &'static str,
}

/// Every label is a fixed word: bounded (identities are in the records, never in labels).
#[derive(Debug, Default)]
pub struct AnomalyMetrics {
    alerts: Family<AlertLabels, Counter>,
    suppressed: Family<DetectorLabels, Counter>,
    /// Exchanges the detectors judged.
    pub observed: Counter,
    /// Exchanges not judged because the anomaly queue was full (the request path never waits).
    pub dropped: Counter,
    /// Identities with a baseline.
    pub identities: Gauge,
    /// How long learning the baseline from the audit store took at start.
    pub baseline_load_seconds: Gauge<f64, AtomicU64>,
}

impl AnomalyMetrics {
    pub fn register(registry: &mut Registry) -> AnomalyMetrics {
        let metrics = AnomalyMetrics::default();
        registry.register(
            "warden_anomaly_alerts",
            "Anomaly alerts raised, by detector and action (block: the identity was revoked)",
            metrics.alerts.clone(),
        );
        registry.register(
            "warden_anomaly_suppressed",
            "Anomaly alerts not raised because the same detector fired for the same identity within [anomaly] suppress_secs",
            metrics.suppressed.clone(),
        );
        registry.register(
            "warden_anomaly_observed_exchanges",
            "Exchanges the anomaly detectors judged",
            metrics.observed.clone(),
        );
        registry.register(
            "warden_anomaly_dropped_exchanges",
            "Exchanges the anomaly detectors never saw because their queue was full",
            metrics.dropped.clone(),
        );
        registry.register(
            "warden_anomaly_baseline_identities",
            "Identities with an anomaly baseline",
            metrics.identities.clone(),
        );
        registry.register(
            "warden_anomaly_baseline_load_seconds",
            "How long learning the anomaly baseline from the audit store took at start",
            metrics.baseline_load_seconds.clone(),
        );
        metrics
    }

    pub fn alerted(&self, detector: &'static str, action: &'static str) {
        self.alerts
            .get_or_create(&AlertLabels { detector, action })
            .inc();
    }

    pub fn suppressed(&self, detector: &'static str) {
        self.suppressed
            .get_or_create(&DetectorLabels { detector })
            .inc();
    }
}
