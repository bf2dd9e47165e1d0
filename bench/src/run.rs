//! `warden-bench run`: starts the fake upstream, then each setup in turn, drives the load generator
//! through it phase by phase, measures memory and the audit store, and writes the report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use warden_tests::Client;

use crate::loadgen::{LoadResult, LoadSpec, Protocol, STREAMS_OPEN_MARKER};
use crate::report::{AuditReport, Machine, Report, SetupReport};
use crate::setups::{cpu_secs, rss_mib, AuditCounts, Setup, SetupKind, Tools, SETTLE};
use crate::upstream::{FakeUpstream, UpstreamBehavior};

/// How long each measurement runs; `--quick` shortens everything but the number of open streams.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Plan {
    pub warmup_secs: f64,
    pub measure_secs: f64,
    pub open_streams: usize,
    pub high_concurrency: usize,
}

impl Plan {
    pub fn new(quick: bool) -> Self {
        Self {
            warmup_secs: if quick { 0.5 } else { 2.0 },
            measure_secs: if quick { 2.0 } else { 10.0 },
            open_streams: 1000,
            high_concurrency: 64,
        }
    }
}

/// One measurement: a workload run through every setup and both protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Non-streamed chat, one request at a time on a kept-alive connection.
    Chat,
    /// Non-streamed chat, 64 requests in flight.
    ChatConcurrent,
    /// Streamed chat, one at a time: time to the first event.
    Stream,
    /// Non-streamed chat on a new connection (TCP + full TLS handshake) each time.
    NewConnection,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Chat,
        Phase::ChatConcurrent,
        Phase::Stream,
        Phase::NewConnection,
    ];

    /// The key of this phase's results in the report (`h1/chat_c1`, ...).
    pub fn key(self, protocol: Protocol, plan: &Plan) -> String {
        let name = match self {
            Phase::Chat => "chat_c1".to_owned(),
            Phase::ChatConcurrent => format!("chat_c{}", plan.high_concurrency),
            Phase::Stream => "stream_c1".to_owned(),
            Phase::NewConnection => "new_connection_c1".to_owned(),
        };
        format!("{}/{name}", protocol.label())
    }
}

pub struct Options {
    /// Setup labels to run; empty means all.
    pub only: Vec<String>,
    pub quick: bool,
    pub tools: Tools,
    pub out: PathBuf,
    pub upstream: UpstreamBehavior,
    pub command: String,
}

/// Stops early, with the reason, unless this process runs as root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the bench needs root: it loads eBPF programs and creates cgroups and mount namespaces"
        );
    }
    Ok(())
}

pub fn run(options: Options) -> Result<()> {
    require_root()?;
    for (what, path) in [
        ("warden", &options.tools.warden_bin),
        ("mitmdump", &options.tools.mitmdump),
    ] {
        if !path.is_file() {
            bail!(
                "{what} binary {} does not exist (run through `cargo xtask bench`)",
                path.display()
            );
        }
    }
    let known: Vec<&str> = SetupKind::ALL.iter().map(|kind| kind.label()).collect();
    if let Some(unknown) = options.only.iter().find(|o| !known.contains(&o.as_str())) {
        bail!("--only {unknown}: the setups are {}", known.join(", "));
    }
    let plan = Plan::new(options.quick);
    let upstream = FakeUpstream::start(options.upstream)?;
    let started = Instant::now();
    let mut report = Report::new(
        Machine::read(),
        options.command.clone(),
        plan,
        options.upstream,
    );
    for kind in SetupKind::ALL {
        if !options.only.is_empty() && !options.only.iter().any(|o| o == kind.label()) {
            continue;
        }
        eprintln!("== {}", kind.label());
        let setup = Setup::start(kind, &options.tools, &upstream)?;
        let (measured, audit) = measure_setup(&setup, &plan, &upstream)?;
        report.add_setup(kind, measured, audit);
    }
    report.finish();
    report.print();
    report.write(&options.out)?;
    eprintln!(
        "bench took {:.0} s; raw figures in {}",
        started.elapsed().as_secs_f64(),
        options.out.display()
    );
    Ok(())
}

fn measure_setup(
    setup: &Setup,
    plan: &Plan,
    upstream: &FakeUpstream,
) -> Result<(SetupReport, Option<AuditReport>)> {
    let mut report = SetupReport::default();
    if let Some(pid) = setup.proxy_pid() {
        std::thread::sleep(SETTLE);
        report.rss_idle_mib = Some(rss_mib(pid)?);
    }
    let mut requests_ok = 0;
    let mut audit_rate = None;
    for protocol in [Protocol::H1, Protocol::H2] {
        for phase in Phase::ALL {
            let key = phase.key(protocol, plan);
            eprintln!("   {key}");
            let spec = spec_for(setup, plan, protocol, phase);
            let sample_audit = phase == Phase::ChatConcurrent && protocol == Protocol::H1;
            let result = match (sample_audit, setup.audit_db()) {
                (true, Some(db)) => {
                    let (result, rate) = run_sampling_audit(setup, spec, plan, &db)?;
                    audit_rate = Some(rate);
                    result
                }
                _ => run_loadgen(setup, spec, plan)?,
            };
            check_errors(setup, &key, &result)?;
            // The load just stopped: how far behind were the sinks?
            if let Some((daemon, sinks)) = setup.sinks() {
                report.sinks.insert(key.clone(), sinks.catch_up(daemon)?);
            }
            requests_ok += result.total_ok;
            report.runs.insert(key, result);
        }
    }
    if let Some(pid) = setup.proxy_pid() {
        let (rss, streams) = rss_with_open_streams(setup, plan, upstream, pid)?;
        check_errors(setup, "open streams", &streams)?;
        requests_ok += streams.total_ok;
        report.rss_open_streams_mib = Some(rss);
        report.open_streams = Some(streams);
        std::thread::sleep(SETTLE);
        report.rss_after_mib = Some(rss_mib(pid)?);
    }
    let audit = match (setup.audit_db(), audit_rate) {
        (Some(db), Some(rates)) => {
            let counts = wait_for_audit(&db, requests_ok)?;
            Some(AuditReport {
                records_per_sec: rates.records_per_sec,
                exchanges_per_sec: rates.exchanges_per_sec,
                cpu_us_per_exchange: rates.cpu_us_per_exchange,
                requests_ok,
                lost: requests_ok as i64 - counts.complete_exchanges as i64,
                counts,
            })
        }
        _ => None,
    };
    Ok((report, audit))
}

fn spec_for(setup: &Setup, plan: &Plan, protocol: Protocol, phase: Phase) -> LoadSpec {
    LoadSpec {
        connect: setup.connect_to(),
        server_name: "api.openai.com".to_owned(),
        ca_file: setup.ca_file(),
        protocol,
        concurrency: if phase == Phase::ChatConcurrent {
            plan.high_concurrency
        } else {
            1
        },
        stream: phase == Phase::Stream,
        new_connection_per_request: phase == Phase::NewConnection,
        warmup_secs: plan.warmup_secs,
        measure_secs: plan.measure_secs,
    }
}

/// A request that fails through Warden or directly means the bench itself is broken, and the
/// figures would flatter it: stop. Failures through mitmproxy are its own; they are reported.
fn check_errors(setup: &Setup, what: &str, result: &LoadResult) -> Result<()> {
    if result.errors > 0 && matches!(setup, Setup::Mitmproxy(_)) {
        eprintln!(
            "   {what}: {} requests failed through mitmproxy (reported); first error: {}",
            result.errors,
            result.first_error.as_deref().unwrap_or("?")
        );
    } else if result.errors > 0 {
        bail!(
            "{what}: {} of {} requests failed; first error: {}",
            result.errors,
            result.errors + result.total_ok,
            result.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// `warden-bench COMMAND --spec JSON`, placed where `setup`'s clients run.
pub fn loadgen_client(
    setup: &Setup,
    command: &str,
    spec: &impl serde::Serialize,
    timeout: Duration,
) -> Result<Client> {
    let exe = std::env::current_exe().context("locating warden-bench")?;
    let spec = serde_json::to_string(spec)?;
    let argv = [
        exe.into_os_string(),
        command.into(),
        "--spec".into(),
        spec.into(),
    ];
    Ok(setup.place(Client::new(argv).timeout(timeout)))
}

fn run_loadgen(setup: &Setup, spec: LoadSpec, plan: &Plan) -> Result<LoadResult> {
    let timeout = Duration::from_secs_f64(plan.warmup_secs + plan.measure_secs + 60.0);
    let output = loadgen_client(setup, "loadgen", &spec, timeout)?.run();
    output.assert_success();
    Ok(serde_json::from_value(output.last_line_json())?)
}

/// What the audit store and the daemon's CPU did over a measured window.
#[derive(Debug, Clone, Copy)]
struct WindowRates {
    records_per_sec: f64,
    exchanges_per_sec: f64,
    /// The daemon's user + system CPU over the window, per exchange recorded in it.
    cpu_us_per_exchange: f64,
}

/// Runs a load while counting the audit store, and reading the daemon's CPU time, at the start and
/// end of the measured window.
fn run_sampling_audit(
    setup: &Setup,
    spec: LoadSpec,
    plan: &Plan,
    db: &std::path::Path,
) -> Result<(LoadResult, WindowRates)> {
    let pid = setup.proxy_pid().context("a Warden setup has a daemon")?;
    let timeout = Duration::from_secs_f64(plan.warmup_secs + plan.measure_secs + 60.0);
    let running = loadgen_client(setup, "loadgen", &spec, timeout)?.spawn();
    std::thread::sleep(Duration::from_secs_f64(plan.warmup_secs));
    let (before, cpu_before, from) = (AuditCounts::read(db)?, cpu_secs(pid)?, Instant::now());
    std::thread::sleep(Duration::from_secs_f64(plan.measure_secs));
    let (after, cpu_after, to) = (AuditCounts::read(db)?, cpu_secs(pid)?, Instant::now());
    let output = running.wait();
    output.assert_success();
    let secs = (to - from).as_secs_f64();
    let exchanges = (after.exchanges - before.exchanges) as f64;
    let rates = WindowRates {
        records_per_sec: (after.records - before.records) as f64 / secs,
        exchanges_per_sec: exchanges / secs,
        cpu_us_per_exchange: (cpu_after - cpu_before) * 1e6 / exchanges.max(1.0),
    };
    Ok((serde_json::from_value(output.last_line_json())?, rates))
}

/// Opens `plan.open_streams` streams that the upstream holds after their first event, reads the
/// proxy's RSS while they are all open, then lets them finish.
fn rss_with_open_streams(
    setup: &Setup,
    plan: &Plan,
    upstream: &FakeUpstream,
    pid: u32,
) -> Result<(f64, LoadResult)> {
    eprintln!("   {} open streams", plan.open_streams);
    let mut spec = spec_for(setup, plan, Protocol::H1, Phase::Stream);
    spec.concurrency = plan.open_streams;
    upstream.hold_streams();
    let mut running =
        loadgen_client(setup, "open-streams", &spec, Duration::from_secs(240))?.spawn();
    let opened = running.wait_for_stdout_line(Duration::from_secs(180), |line| {
        line.starts_with(STREAMS_OPEN_MARKER)
    });
    let rss = match opened {
        Some(_) => {
            std::thread::sleep(SETTLE);
            let held = upstream.streams_held();
            if held != plan.open_streams {
                upstream.release_streams();
                bail!(
                    "{held} streams held at the upstream, expected {}",
                    plan.open_streams
                );
            }
            rss_mib(pid)
        }
        None => Err(anyhow::anyhow!("the streams did not all open")),
    };
    upstream.release_streams();
    let output = running.wait();
    let rss = rss.with_context(|| format!("{output}"))?;
    output.assert_success();
    Ok((rss, serde_json::from_value(output.last_line_json())?))
}

/// Waits for the audit writer to catch up with `requests_ok` complete exchanges (or gives up after
/// a while and reports what is there: the report then shows records lost).
fn wait_for_audit(db: &std::path::Path, requests_ok: u64) -> Result<AuditCounts> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = AuditCounts::read(db)?;
        if counts.complete_exchanges >= requests_ok || Instant::now() > deadline {
            return Ok(counts);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
