//! The sink families (backlog, delivered, failures, last success, pruned before delivery), and the
//! last error each sink reported, for `warden status`.
use std::{
    collections::BTreeMap,
    sync::{atomic::AtomicU64, Mutex},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use serde::Serialize;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    /// A `[[sink]] name`: from the configuration, so bounded.
    sink: String,
}

/// One sink as `warden status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SinkStatus {
    pub name: String,
    pub kind: String,
    /// Records committed and not yet acknowledged by the receiver.
    pub backlog: u64,
    pub delivered: u64,
    /// Unix µs of the last acknowledged batch.
    pub last_success_us: Option<i64>,
    /// Why the last attempt failed; None once a batch went through again.
    pub last_error: Option<String>,
}

#[derive(Debug)]
pub struct SinkMetrics {
    backlog: Family<SinkLabels, Gauge>,
    delivered: Family<SinkLabels, Counter>,
    failures: Family<SinkLabels, Counter>,
    last_success: Family<SinkLabels, Gauge<f64, AtomicU64>>,
    pruned: Family<SinkLabels, Counter>,
    status: Mutex<BTreeMap<String, SinkStatus>>,
}

impl SinkMetrics {
    pub(super) fn register(registry: &mut Registry) -> SinkMetrics {
        let backlog = Family::default();
        registry.register(
            "warden_sink_backlog_records",
            "Audit records committed and not yet acknowledged by the sink's receiver (head seq - cursor)",
            backlog.clone(),
        );
        let delivered = Family::default();
        registry.register(
            "warden_sink_delivered_records",
            "Audit records the sink's receiver acknowledged (records its filter skipped included)",
            delivered.clone(),
        );
        let failures = Family::default();
        registry.register(
            "warden_sink_failures",
            "Failed delivery attempts of a sink (each retry counts)",
            failures.clone(),
        );
        let last_success = Family::default();
        registry.register(
            "warden_sink_last_success_timestamp_seconds",
            "Unix time of the sink's last acknowledged batch",
            last_success.clone(),
        );
        let pruned = Family::default();
        registry.register(
            "warden_sink_pruned_records",
            "Records retention deleted before the sink delivered them (never shipped)",
            pruned.clone(),
        );
        SinkMetrics {
            backlog,
            delivered,
            failures,
            last_success,
            pruned,
            status: Mutex::new(BTreeMap::new()),
        }
    }

    fn labels(name: &str) -> SinkLabels {
        SinkLabels {
            sink: name.to_owned(),
        }
    }

    /// Makes the sink's series and status exist from its start (a backlog of 0 is news too).
    pub fn started(&self, name: &str, kind: &str) {
        let labels = Self::labels(name);
        self.backlog.get_or_create(&labels).set(0);
        let _ = self.delivered.get_or_create(&labels);
        let _ = self.failures.get_or_create(&labels);
        let _ = self.pruned.get_or_create(&labels);
        self.with_status(name, |status| status.kind = kind.to_owned());
    }

    pub fn set_backlog(&self, name: &str, backlog: u64) {
        let value = i64::try_from(backlog).unwrap_or(i64::MAX);
        self.backlog.get_or_create(&Self::labels(name)).set(value);
        self.with_status(name, |status| status.backlog = backlog);
    }

    pub fn delivered(&self, name: &str, records: u64, at_us: i64) {
        let labels = Self::labels(name);
        self.delivered.get_or_create(&labels).inc_by(records);
        self.last_success
            .get_or_create(&labels)
            .set(at_us as f64 / 1e6);
        self.with_status(name, |status| {
            status.delivered += records;
            status.last_success_us = Some(at_us);
            status.last_error = None;
        });
    }

    pub fn failed(&self, name: &str, error: &str) {
        self.failures.get_or_create(&Self::labels(name)).inc();
        self.with_status(name, |status| status.last_error = Some(error.to_owned()));
    }

    pub fn pruned(&self, name: &str, records: u64) {
        self.pruned
            .get_or_create(&Self::labels(name))
            .inc_by(records);
    }

    /// Every sink, by name.
    pub fn status(&self) -> Vec<SinkStatus> {
        let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.values().cloned().collect()
    }

    fn with_status(&self, name: &str, change: impl FnOnce(&mut SinkStatus)) {
        // A panic elsewhere cannot leave a status half-written in a way that matters here.
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let entry = status.entry(name.to_owned()).or_insert_with(|| SinkStatus {
            name: name.to_owned(),
            ..SinkStatus::default()
        });
        change(entry);
    }
}
