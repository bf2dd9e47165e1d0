//! The soak's report: the flatness table, the requests by kind, the audit and upstream checks and
//! the failures they add up to, printed on stdout and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::flatness::Flatness;
use super::load::SoakLoadResult;
use super::mix::Kind;
use super::records::RecordsCheck;
use super::sampler::Sample;
use crate::report::Machine;

/// What the soak was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct SoakPlan {
    pub requests: u64,
    /// Requests in flight from each load generator (one over h1, one over h2).
    pub concurrency_per_protocol: usize,
    pub sample_every_ms: u64,
    pub stream_events: usize,
    /// Requests of each kind, over both load generators.
    pub mix: BTreeMap<Kind, u64>,
}

/// What reached the fake upstream.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UpstreamCheck {
    pub received: u64,
    /// Every request but the denied ones, once.
    pub expected: u64,
    /// Requests that arrived with the e-mail address the masked ones carry: masking failed.
    pub unmasked: u64,
}

/// The machine's 1-minute load average over the samples: the soak's figures depend on it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HostLoad {
    pub mean_1m: f64,
    pub max_1m: f64,
}

impl HostLoad {
    pub fn of(samples: &[Sample]) -> Self {
        let loads = samples.iter().map(|s| s.load_1m);
        Self {
            mean_1m: loads.clone().sum::<f64>() / samples.len().max(1) as f64,
            max_1m: loads.fold(0.0, f64::max),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub command: String,
    pub machine: Machine,
    pub plan: SoakPlan,
    pub took_secs: f64,
    pub host_load: HostLoad,
    pub figures: Vec<Flatness>,
    pub loads: Vec<SoakLoadResult>,
    pub records: RecordsCheck,
    pub upstream: UpstreamCheck,
    /// Empty when the soak passed.
    pub failures: Vec<String>,
    pub samples: Vec<Sample>,
}

impl SoakReport {
    /// Fills `failures` from the figures and checks.
    pub fn judge(&mut self) {
        let mut failures = Vec::new();
        for figure in &self.figures {
            if figure.flat {
                continue;
            }
            failures.push(match (figure.baseline, figure.end, figure.limit) {
                (Some(baseline), Some(end), Some(limit)) => format!(
                    "{} is not flat: {end:.1} {unit} at the end against {baseline:.1} after warm-up (limit {limit:.1})",
                    figure.figure,
                    unit = figure.unit
                ),
                _ => format!(
                    "{}: too few samples to judge ({} in the baseline window, {} at the end); send more requests",
                    figure.figure, figure.baseline_samples, figure.end_samples
                ),
            });
        }
        for load in &self.loads {
            for (kind, result) in &load.kinds {
                if result.errors > 0 {
                    failures.push(format!(
                        "{} of {} {} requests over {} failed; first: {}",
                        result.errors,
                        result.errors + result.total_ok,
                        kind.label(),
                        load.protocol.label(),
                        result.first_error.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
        let records = &self.records;
        if records.missing != 0 || records.counts.exchanges != records.sent {
            failures.push(format!(
                "{} requests sent, {} exchanges on record ({} finished)",
                records.sent, records.counts.exchanges, records.counts.complete_exchanges
            ));
        }
        if records.outcomes_expected != records.outcomes_recorded {
            failures.push(format!(
                "outcomes on record {:?}, expected {:?}",
                records.outcomes_recorded, records.outcomes_expected
            ));
        }
        if !records.chain_verified {
            failures.push(format!(
                "`warden audit verify` failed: {}",
                records.verify_output
            ));
        }
        let upstream = self.upstream;
        if upstream.received != upstream.expected {
            failures.push(format!(
                "the upstream received {} requests, expected {}",
                upstream.received, upstream.expected
            ));
        }
        if upstream.unmasked > 0 {
            failures.push(format!(
                "{} requests reached the upstream unmasked",
                upstream.unmasked
            ));
        }
        self.failures = failures;
    }

    pub fn print(&self) {
        let m = &self.machine;
        println!(
            "\nWarden soak: {} requests in {:.0} s; {} cores, {:.0} GiB, Linux {}, {}; load average (1 min) {:.1} mean, {:.1} max\n",
            self.plan.requests,
            self.took_secs,
            m.cores,
            m.memory_gib,
            m.kernel,
            m.cpu,
            self.host_load.mean_1m,
            self.host_load.max_1m
        );
        println!("{}", self.flatness_table());
        println!("{}", self.requests_table());
        let r = &self.records;
        println!(
            "audit: {} requests sent, {} exchanges on record ({} finished), {} missing; outcomes {:?}; chain {} ({:.0} s: {})",
            r.sent,
            r.counts.exchanges,
            r.counts.complete_exchanges,
            r.missing,
            r.outcomes_recorded,
            if r.chain_verified { "verified" } else { "NOT VERIFIED" },
            r.verify_secs,
            r.verify_output
        );
        println!(
            "upstream: {} requests received (expected {}), {} unmasked",
            self.upstream.received, self.upstream.expected, self.upstream.unmasked
        );
        if self.failures.is_empty() {
            println!("soak passed");
        } else {
            println!("soak FAILED:");
            for failure in &self.failures {
                println!("  - {failure}");
            }
        }
    }

    /// The flatness figures as Markdown (it goes into README.md as printed).
    pub fn flatness_table(&self) -> String {
        let mut out = String::from(
            "| figure | after warm-up (10–25%) | end (75–100%) | change | limit | flat |\n\
             |---|---:|---:|---:|---:|---|\n",
        );
        for f in &self.figures {
            let value =
                |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1} {}", f.unit));
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                f.figure,
                value(f.baseline),
                value(f.end),
                f.change_pct.map_or("–".to_owned(), |c| format!("{c:+.1}%")),
                value(f.limit),
                if f.flat { "yes" } else { "NO" }
            ));
        }
        out
    }

    /// Requests by kind and protocol: how many, failures, latency.
    pub fn requests_table(&self) -> String {
        let mut out = String::from(
            "| requests | protocol | sent | failed | p50 µs | p99 µs |\n|---|---|---:|---:|---:|---:|\n",
        );
        for load in &self.loads {
            for (kind, r) in &load.kinds {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {:.0} | {:.0} |\n",
                    kind.label(),
                    load.protocol.label(),
                    r.total_ok + r.errors,
                    r.errors,
                    r.latency.p50_us,
                    r.latency.p99_us
                ));
            }
        }
        out
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }
}
