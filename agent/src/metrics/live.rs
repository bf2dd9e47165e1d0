//! Readings taken at each scrape instead of counted as they happen: selected cgroups, the kernel's
//! redirect counter, the audit queue depth and the audit store's failed writes.
use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use crate::{
    audit::AuditWriter,
    ebpf::{selection::Selection, Redirector},
};

/// One value read at scrape time.
pub type Reading = Box<dyn Fn() -> u64 + Send + Sync>;

/// Values by label read at scrape time: (label value, count).
pub type LabeledReading = Box<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// The sources of the scrape-time families.
pub struct LiveReadings {
    pub selected_cgroups: Reading,
    /// The kernel programs' count of redirected connects (a counter).
    pub ebpf_redirects: Reading,
    pub audit_queue_depth: Reading,
    /// 1 while the audit writer holds a journaled record the store refuses (new requests are
    /// refused meanwhile), else 0.
    pub audit_store_refusing: Reading,
    /// The audit store's failed transactions, by cause (a counter).
    pub audit_write_failures: LabeledReading,
}

impl LiveReadings {
    /// The daemon's: its selection, its programs' counters and its audit writer.
    pub fn of(selection: Arc<Selection>, redirector: Arc<Redirector>, audit: AuditWriter) -> Self {
        LiveReadings {
            selected_cgroups: Box::new(move || selection.selected().len() as u64),
            ebpf_redirects: Box::new(move || redirector.counters().redirected),
            audit_queue_depth: {
                let audit = audit.clone();
                Box::new(move || audit.queue_depth())
            },
            audit_store_refusing: {
                let audit = audit.clone();
                Box::new(move || u64::from(audit.store_failure().is_some()))
            },
            audit_write_failures: Box::new(move || {
                let failures = audit.failures_by_cause().into_iter();
                failures.map(|(cause, n)| (cause.as_str(), n)).collect()
            }),
        }
    }

    /// Readings that are always zero: for metrics without a daemon (tests, tools).
    pub fn zero() -> Self {
        LiveReadings {
            selected_cgroups: Box::new(|| 0),
            ebpf_redirects: Box::new(|| 0),
            audit_queue_depth: Box::new(|| 0),
            audit_store_refusing: Box::new(|| 0),
            audit_write_failures: Box::new(Vec::new),
        }
    }
}

impl std::fmt::Debug for LiveReadings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveReadings").finish_non_exhaustive()
    }
}

impl Collector for LiveReadings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges: [(&str, &str, &Reading); 3] = [
            (
                "warden_selected_cgroups",
                "Cgroups whose connects are redirected to Warden now.",
                &self.selected_cgroups,
            ),
            (
                "warden_audit_queue_depth",
                "Audit records waiting for the writer thread.",
                &self.audit_queue_depth,
            ),
            (
                "warden_audit_store_refusing",
                "1 while the audit store refuses a journaled request's record: the writer holds \
                 it, and new requests are refused 503.",
                &self.audit_store_refusing,
            ),
        ];
        for (name, help, reading) in gauges {
            let gauge = ConstGauge::new(reading());
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        let failures = (self.audit_write_failures)();
        let mut family = encoder.encode_descriptor(
            "warden_audit_write_failures",
            "Audit store transactions and request journal appends that failed, by cause \
             (disk_full, locked, corrupt, other); a request whose record fails is refused 503, \
             never forwarded",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (cause, count) in failures {
            let labels = [("cause", cause)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        let redirects = ConstCounter::new(self.ebpf_redirects.as_ref()());
        let metric = encoder.encode_descriptor(
            "warden_ebpf_redirects",
            "Connects the eBPF programs redirected to Warden since they were loaded.",
            None,
            redirects.metric_type(),
        )?;
        redirects.encode(metric)
    }
}
