//! The bench report: every figure per setup, the comparison table with its ratios, the targets,
//! printed on stdout and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::loadgen::{LoadResult, Protocol};
use crate::payload;
use crate::run::{Phase, Plan};
use crate::setups::{AuditCounts, SetupKind};
use crate::sinks::SinksReport;
use crate::upstream::UpstreamBehavior;

#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub machine: Machine,
    pub plan: Plan,
    pub upstream: UpstreamFacts,
    pub setups: BTreeMap<&'static str, SetupReport>,
    pub audit: Option<AuditReport>,
    pub table: Vec<Row>,
    pub targets: Vec<TargetCheck>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub cpu: String,
}

impl Machine {
    pub fn read() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let meminfo = read("/proc/meminfo");
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            cpu,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UpstreamFacts {
    pub latency_ms: f64,
    pub stream_events: usize,
    pub request_bytes: usize,
    pub response_bytes: usize,
}

/// Everything measured through one setup.
#[derive(Debug, Default, Serialize)]
pub struct SetupReport {
    /// Keyed `h1/chat_c1`, `h2/stream_c1`, ... (see [`Phase::key`]).
    pub runs: BTreeMap<String, LoadResult>,
    pub rss_idle_mib: Option<f64>,
    pub rss_open_streams_mib: Option<f64>,
    pub rss_after_mib: Option<f64>,
    pub open_streams: Option<LoadResult>,
    /// With `--sinks`: the sinks as each phase's load stopped, by phase.
    pub sinks: BTreeMap<String, SinksReport>,
}

#[derive(Debug, Serialize)]
pub struct AuditReport {
    /// Measured while 64 non-streamed requests were in flight over h1.
    pub records_per_sec: f64,
    pub exchanges_per_sec: f64,
    /// The daemon's user + system CPU time per exchange over the same window (its own rusage:
    /// steady on a noisy machine, where latencies are not).
    pub cpu_us_per_exchange: f64,
    /// Requests answered 200 through Warden, over every phase.
    pub requests_ok: u64,
    pub counts: AuditCounts,
    /// Answered requests without a complete exchange in the store.
    pub lost: i64,
}

/// One line of the comparison table. Latencies in µs, throughput in requests/s, memory in MiB.
#[derive(Debug, Serialize)]
pub struct Row {
    pub metric: String,
    pub unit: &'static str,
    pub direct: Option<f64>,
    pub warden: Option<f64>,
    pub mitmproxy: Option<f64>,
    /// warden − direct, for latencies.
    pub warden_added: Option<f64>,
    /// mitmproxy − direct, for latencies.
    pub mitmproxy_added: Option<f64>,
    pub warden_vs_direct: Option<f64>,
    pub warden_vs_mitmproxy: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: Option<f64>,
    pub met: bool,
}

impl Report {
    pub fn new(machine: Machine, command: String, plan: Plan, upstream: UpstreamBehavior) -> Self {
        Self {
            command,
            machine,
            plan,
            upstream: UpstreamFacts {
                latency_ms: upstream.latency.as_secs_f64() * 1000.0,
                stream_events: upstream.stream_events,
                request_bytes: payload::REQUEST_BYTES,
                response_bytes: payload::RESPONSE_BYTES,
            },
            setups: BTreeMap::new(),
            audit: None,
            table: Vec::new(),
            targets: Vec::new(),
        }
    }

    pub fn add_setup(&mut self, kind: SetupKind, setup: SetupReport, audit: Option<AuditReport>) {
        self.setups.insert(kind.label(), setup);
        if audit.is_some() {
            self.audit = audit;
        }
    }

    /// Builds the table and checks the targets from what was measured.
    pub fn finish(&mut self) {
        let plan = self.plan;
        for protocol in [Protocol::H1, Protocol::H2] {
            let p = protocol.label();
            let chat = Phase::Chat.key(protocol, &plan);
            let busy = Phase::ChatConcurrent.key(protocol, &plan);
            let stream = Phase::Stream.key(protocol, &plan);
            let fresh = Phase::NewConnection.key(protocol, &plan);
            let c = plan.high_concurrency;
            self.latency_row(format!("{p} c=1 latency p50"), &chat, |s| s.latency.p50_us);
            self.latency_row(format!("{p} c=1 latency p99"), &chat, |s| s.latency.p99_us);
            self.latency_row(format!("{p} c={c} latency p50"), &busy, |s| {
                s.latency.p50_us
            });
            self.latency_row(format!("{p} c={c} latency p99"), &busy, |s| {
                s.latency.p99_us
            });
            let throughput = self.values(|setup| Some(setup.runs.get(&busy)?.throughput_rps));
            self.push_row(format!("{p} c={c} throughput"), "req/s", throughput, false);
            self.latency_row(format!("{p} first event p50"), &stream, |s| {
                s.first_event.map_or(f64::NAN, |f| f.p50_us)
            });
            self.latency_row(format!("{p} first event p99"), &stream, |s| {
                s.first_event.map_or(f64::NAN, |f| f.p99_us)
            });
            self.latency_row(format!("{p} new connection p50"), &fresh, |s| {
                s.latency.p50_us
            });
            self.latency_row(format!("{p} new connection p99"), &fresh, |s| {
                s.latency.p99_us
            });
        }
        let idle = self.values(|setup| setup.rss_idle_mib);
        self.push_row("RSS idle".to_owned(), "MiB", idle, false);
        let open = self.values(|setup| setup.rss_open_streams_mib);
        let n = plan.open_streams;
        self.push_row(format!("RSS with {n} open streams"), "MiB", open, false);
        let after = self.values(|setup| setup.rss_after_mib);
        self.push_row("RSS idle after the run".to_owned(), "MiB", after, false);
        let failed = self.values(|setup| {
            let runs = setup.runs.values().chain(setup.open_streams.as_ref());
            Some(runs.map(|run| run.errors as f64).sum())
        });
        self.push_row("failed requests".to_owned(), "req", failed, false);
        if let Some((records, cpu)) = self
            .audit
            .as_ref()
            .map(|audit| (audit.records_per_sec, audit.cpu_us_per_exchange))
        {
            let values = [None, Some(records), None];
            self.push_row("audit records written".to_owned(), "rec/s", values, false);
            let values = [None, Some(cpu), None];
            self.push_row(
                "CPU per exchange at h1 c=64".to_owned(),
                "µs",
                values,
                false,
            );
        }
        self.check_targets();
    }

    fn values(&self, value: impl Fn(&SetupReport) -> Option<f64>) -> [Option<f64>; 3] {
        SetupKind::ALL.map(|kind| self.setups.get(kind.label()).and_then(&value))
    }

    fn latency_row(&mut self, metric: String, key: &str, pick: impl Fn(&LoadResult) -> f64) {
        let values = self.values(|setup| setup.runs.get(key).map(&pick));
        self.push_row(metric, "µs", values, true);
    }

    fn push_row(
        &mut self,
        metric: String,
        unit: &'static str,
        values: [Option<f64>; 3],
        added: bool,
    ) {
        let [direct, warden, mitmproxy] = values;
        let minus = |a: Option<f64>, b: Option<f64>| Some(a? - b?).filter(|_| added);
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?).filter(|r| r.is_finite());
        self.table.push(Row {
            metric,
            unit,
            direct,
            warden,
            mitmproxy,
            warden_added: minus(warden, direct),
            mitmproxy_added: minus(mitmproxy, direct),
            warden_vs_direct: ratio(warden, direct),
            warden_vs_mitmproxy: ratio(warden, mitmproxy),
        });
    }

    fn row(&self, metric: &str) -> Option<&Row> {
        self.table.iter().find(|row| row.metric == metric)
    }

    fn check_targets(&mut self) {
        let c = self.plan.high_concurrency;
        let n = self.plan.open_streams;
        let mut checks = Vec::new();
        let mut at_most = |target: String, measured: Option<f64>, limit: f64| {
            checks.push((target, measured, measured.is_some_and(|m| m <= limit)));
        };
        // Issue "Speed: take the audit commit off the critical path…".
        let added = |metric: &str| self.row(metric).and_then(|r| r.warden_added);
        for p in ["h1", "h2"] {
            at_most(
                format!("{p} c=1 added p50 ≤ 100 µs"),
                added(&format!("{p} c=1 latency p50")),
                100.0,
            );
            at_most(
                format!("{p} c=1 added p99 ≤ 500 µs"),
                added(&format!("{p} c=1 latency p99")),
                500.0,
            );
        }
        at_most(
            "h1 first event added p50 ≤ 100 µs".to_owned(),
            added("h1 first event p50"),
            100.0,
        );
        at_most(
            "h1 new connection added p50 ≤ 400 µs".to_owned(),
            added("h1 new connection p50"),
            400.0,
        );
        let warden = |metric: &str| self.row(metric).and_then(|r| r.warden);
        at_most(
            format!("CPU per exchange at h1 c={c} ≤ 60 µs"),
            warden(&format!("CPU per exchange at h1 c={c}")),
            60.0,
        );
        at_most("RSS idle ≤ 64 MiB".to_owned(), warden("RSS idle"), 64.0);
        at_most(
            format!("RSS with {n} open streams ≤ 256 MiB"),
            warden(&format!("RSS with {n} open streams")),
            256.0,
        );
        let lost = self.audit.as_ref().map(|a| a.lost as f64);
        at_most("audit records lost = 0".to_owned(), lost, 0.0);
        let records = warden("audit records written");
        checks.push((
            "audit records written ≥ 40000/s".to_owned(),
            records,
            records.is_some_and(|r| r >= 40_000.0),
        ));
        for p in ["h1", "h2"] {
            let row = self.row(&format!("{p} c={c} throughput"));
            let vs_direct = row.and_then(|r| r.warden_vs_direct);
            let vs_mitm = row.and_then(|r| r.warden_vs_mitmproxy);
            checks.push((
                format!("{p} c={c} throughput ≥ 0.25 × direct"),
                vs_direct,
                vs_direct.is_some_and(|r| r >= 0.25),
            ));
            checks.push((
                format!("{p} c={c} throughput ≥ 30 × mitmproxy"),
                vs_mitm,
                vs_mitm.is_some_and(|r| r >= 30.0),
            ));
        }
        self.targets = checks
            .into_iter()
            .map(|(target, measured, met)| TargetCheck {
                target,
                measured,
                met,
            })
            .collect();
    }

    pub fn print(&self) {
        let m = &self.machine;
        println!(
            "\nWarden bench: {} cores, {:.0} GiB, Linux {}, {}",
            m.cores, m.memory_gib, m.kernel, m.cpu
        );
        println!(
            "upstream latency {} ms, {} streamed events, {} B requests, {} B responses; {} s per measurement after {} s warm-up\n",
            self.upstream.latency_ms,
            self.upstream.stream_events,
            self.upstream.request_bytes,
            self.upstream.response_bytes,
            self.plan.measure_secs,
            self.plan.warmup_secs
        );
        println!("{}", self.markdown_table());
        println!("targets:");
        for check in &self.targets {
            let verdict = if check.met { "met   " } else { "MISSED" };
            println!(
                "  {verdict} {} (measured {})",
                check.target,
                number(check.measured, 2)
            );
        }
        if let Some(audit) = &self.audit {
            println!(
                "audit: {} requests answered, {} exchanges recorded ({} complete), {} lost; {:.0} exchanges/s under load, {:.0} µs of the daemon's CPU each",
                audit.requests_ok,
                audit.counts.exchanges,
                audit.counts.complete_exchanges,
                audit.lost,
                audit.exchanges_per_sec,
                audit.cpu_us_per_exchange
            );
        }
        let phases = self.setups.values().flat_map(|setup| &setup.sinks);
        for (phase, sinks) in phases {
            println!(
                "sinks after {phase}: {} records behind ({}) as the load stopped, all delivered {:.2} s later",
                sinks.backlog_at_load_end,
                sinks.sinks.join(" + "),
                sinks.caught_up_after_secs,
            );
        }
    }

    /// The comparison table as Markdown (it goes into README.md as printed).
    pub fn markdown_table(&self) -> String {
        let mut out = String::from(
            "| metric | unit | direct | warden | mitmproxy | warden added | mitmproxy added | warden/direct | warden/mitmproxy |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for row in &self.table {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                row.metric,
                row.unit,
                number(row.direct, 0),
                number(row.warden, 0),
                number(row.mitmproxy, 0),
                number(row.warden_added, 0),
                number(row.mitmproxy_added, 0),
                ratio(row.warden_vs_direct),
                ratio(row.warden_vs_mitmproxy),
            ));
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

fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "–".to_owned(),
    }
}

fn ratio(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.2}×"),
        _ => "–".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;
    use std::time::Duration;

    fn run(p50_us: f64, p99_us: f64, throughput_rps: f64) -> LoadResult {
        let latency = LatencySummary {
            p50_us,
            p99_us,
            ..LatencySummary::default()
        };
        LoadResult {
            measured_ok: 100,
            measured_secs: 1.0,
            throughput_rps,
            latency,
            first_event: Some(latency),
            total_ok: 100,
            errors: 0,
            first_error: None,
        }
    }

    fn setup(p50_us: f64, p99_us: f64, throughput_rps: f64) -> SetupReport {
        let plan = Plan::new(true);
        let mut report = SetupReport::default();
        for protocol in [Protocol::H1, Protocol::H2] {
            for phase in Phase::ALL {
                report.runs.insert(
                    phase.key(protocol, &plan),
                    run(p50_us, p99_us, throughput_rps),
                );
            }
        }
        report
    }

    fn report() -> Report {
        let machine = Machine {
            cores: 2,
            memory_gib: 1.0,
            kernel: "test".into(),
            cpu: "test".into(),
        };
        let upstream = UpstreamBehavior {
            latency: Duration::ZERO,
            stream_events: 20,
        };
        let mut report = Report::new(machine, "test".into(), Plan::new(true), upstream);
        report.add_setup(SetupKind::Direct, setup(100.0, 200.0, 10_000.0), None);
        report.add_setup(SetupKind::Warden, setup(220.0, 900.0, 7_000.0), None);
        report.add_setup(SetupKind::Mitmproxy, setup(1_100.0, 3_000.0, 500.0), None);
        report.finish();
        report
    }

    #[test]
    fn latency_rows_show_what_each_setup_adds_and_the_ratios() {
        let report = report();
        let row = report.row("h1 c=1 latency p50").expect("the row exists");
        assert_eq!(row.warden_added, Some(120.0));
        assert_eq!(row.mitmproxy_added, Some(1_000.0));
        assert_eq!(row.warden_vs_direct, Some(2.2));
        assert_eq!(row.warden_vs_mitmproxy, Some(0.2));
    }

    #[test]
    fn throughput_has_ratios_and_no_added_column() {
        let report = report();
        let row = report.row("h2 c=64 throughput").expect("the row exists");
        assert_eq!(row.warden_added, None);
        assert_eq!(row.warden_vs_direct, Some(0.7));
        assert_eq!(row.warden_vs_mitmproxy, Some(14.0));
    }

    #[test]
    fn targets_are_judged_on_the_added_figures_and_ratios() {
        let report = report();
        let verdict = |target: &str| {
            let check = report.targets.iter().find(|c| c.target == target);
            check.unwrap_or_else(|| panic!("no target {target}")).met
        };
        assert!(!verdict("h1 c=1 added p50 ≤ 100 µs"), "120 µs added");
        assert!(!verdict("h1 c=1 added p99 ≤ 500 µs"), "700 µs added");
        assert!(verdict("h1 c=64 throughput ≥ 0.25 × direct"), "0.7×");
        assert!(!verdict("h1 c=64 throughput ≥ 30 × mitmproxy"), "14×");
        // Nothing measured is never a target met.
        assert!(!verdict("RSS idle ≤ 64 MiB"));
        assert!(!verdict("audit records lost = 0"));
    }
}
