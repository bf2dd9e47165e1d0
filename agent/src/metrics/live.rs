//! Readings taken at each scrape instead of counted as they happen: selected cgroups, the kernel's
//! redirect counter and the audit queue depth.
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

/// The sources of the scrape-time families.
pub struct LiveReadings {
    pub selected_cgroups: Reading,
    /// The kernel programs' count of redirected connects (a counter).
    pub ebpf_redirects: Reading,
    pub audit_queue_depth: Reading,
}

impl LiveReadings {
    /// The daemon's: its selection, its programs' counters and its audit writer.
    pub fn of(selection: Arc<Selection>, redirector: Arc<Redirector>, audit: AuditWriter) -> Self {
        LiveReadings {
            selected_cgroups: Box::new(move || selection.selected().len() as u64),
            ebpf_redirects: Box::new(move || redirector.counters().redirected),
            audit_queue_depth: Box::new(move || audit.queue_depth()),
        }
    }

    /// Readings that are always zero: for metrics without a daemon (tests, tools).
    pub fn zero() -> Self {
        LiveReadings {
            selected_cgroups: Box::new(|| 0),
            ebpf_redirects: Box::new(|| 0),
            audit_queue_depth: Box::new(|| 0),
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
        let gauges: [(&str, &str, &Reading); 2] = [
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
        ];
        for (name, help, reading) in gauges {
            let gauge = ConstGauge::new(reading());
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
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
