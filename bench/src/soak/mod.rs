//! `warden-bench soak`: a fixed number of mixed requests (plain, streamed, masked, denied, client
//! aborts) through Warden's real redirect, the daemon's RSS, descriptors and audit queue sampled
//! all along, then the audit store checked against what was sent.

mod flatness;
pub mod load;
mod mix;
mod records;
mod report;
mod sampler;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::loadgen::{LoadSpec, Protocol};
use crate::report::Machine;
use crate::run::{loadgen_client, require_root};
use crate::setups::Setup;
use crate::upstream::{FakeUpstream, UpstreamBehavior};
use load::{SoakLoadResult, SoakSpec};
use mix::Kind;
use report::{HostLoad, SoakPlan, SoakReport, UpstreamCheck};
use sampler::{Probe, Sampler};

/// The whole soak must end within this, or it is stopped (a request hanging is a failure).
const LOAD_TIMEOUT: Duration = Duration::from_secs(1800);

pub struct Options {
    pub warden_bin: PathBuf,
    pub out: PathBuf,
    pub requests: u64,
    /// Requests in flight from each of the two load generators (h1 and h2).
    pub concurrency: usize,
    pub sample_every: Duration,
    pub stream_events: usize,
    pub command: String,
}

/// Runs the soak and writes its report; an error when a figure is not flat, a request failed or
/// a record is missing (the report says which).
pub fn run(options: Options) -> Result<()> {
    require_root()?;
    if !options.warden_bin.is_file() {
        bail!(
            "warden binary {} does not exist (run through `cargo xtask soak`)",
            options.warden_bin.display()
        );
    }
    if options.requests < 100 || options.concurrency == 0 {
        bail!("the soak needs at least 100 requests and a concurrency of 1 or more");
    }
    let started = Instant::now();
    let behavior = UpstreamBehavior {
        latency: Duration::ZERO,
        stream_events: options.stream_events,
    };
    let upstream = FakeUpstream::start(behavior)?;
    // With credential custody, as a governed host runs (and as the bench measures).
    let setup = Setup::warden(&options.warden_bin, true, None, &upstream);
    let daemon = setup.daemon().context("the soak runs Warden")?;
    let metrics: SocketAddr = daemon
        .metrics_url()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .context("reading the daemon's metrics address")?;
    let probe = Probe {
        pid: daemon.warden_pid(),
        metrics,
    };
    eprintln!(
        "== soak: {} requests, {} in flight over h1 and {} over h2",
        options.requests, options.concurrency, options.concurrency
    );
    let sampler = Sampler::start(probe, options.sample_every, options.requests);
    let loads = drive(&setup, &options);
    // A sampler that fails has usually lost the daemon: its log says why.
    let samples = sampler.finish().map_err(|err| {
        let log = daemon.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        anyhow!("sampling the daemon: {err:#}\nthe daemon's log ends with:\n{tail}")
    })?;
    let loads = loads?;
    let sent: u64 = loads.iter().map(SoakLoadResult::sent).sum();
    eprintln!("== load done: {sent} requests sent; checking the audit store");

    let mix: BTreeMap<Kind, u64> = Kind::ALL
        .into_iter()
        .map(|kind| (kind, kind.count_in(0, options.requests)))
        .collect();
    let mut outcomes_expected = BTreeMap::new();
    for (kind, count) in &mix {
        *outcomes_expected
            .entry(kind.recorded_outcome().to_owned())
            .or_insert(0) += count;
    }
    let records = records::check(daemon, &options.warden_bin, sent, outcomes_expected)?;
    let forwarded = mix
        .iter()
        .filter(|(kind, _)| kind.forwarded())
        .map(|(_, count)| count)
        .sum();
    let upstream_check = UpstreamCheck {
        received: upstream.requests_received(),
        expected: forwarded,
        unmasked: upstream.unmasked_received(),
    };
    // Requests in flight can have records waiting at any moment: the queue may hold about as many
    // as there are requests in flight on top of its 10%.
    let in_flight = (2 * options.concurrency) as f64;
    let figures = vec![
        flatness::judge("RSS", "MiB", &samples, sent, 0.0, |s| s.rss_mib),
        flatness::judge("open fds", "fds", &samples, sent, 0.0, |s| s.fds as f64),
        flatness::judge("audit queue", "records", &samples, sent, in_flight, |s| {
            s.audit_queue as f64
        }),
    ];
    let mut report = SoakReport {
        command: options.command.clone(),
        machine: Machine::read(),
        plan: SoakPlan {
            requests: options.requests,
            concurrency_per_protocol: options.concurrency,
            sample_every_ms: options.sample_every.as_millis() as u64,
            stream_events: options.stream_events,
            mix,
        },
        took_secs: started.elapsed().as_secs_f64(),
        host_load: HostLoad::of(&samples),
        figures,
        loads,
        records,
        upstream: upstream_check,
        failures: Vec::new(),
        samples,
    };
    report.judge();
    report.print();
    report.write(&options.out)?;
    eprintln!(
        "soak took {:.0} s; figures and samples in {}",
        report.took_secs,
        options.out.display()
    );
    if !report.failures.is_empty() {
        bail!("the soak failed: {}", report.failures.join("; "));
    }
    Ok(())
}

/// Runs the two load generators at once, h1 and h2, each with half of the requests.
fn drive(setup: &Setup, options: &Options) -> Result<Vec<SoakLoadResult>> {
    let h1_count = options.requests.div_ceil(2);
    let parts = [
        (Protocol::H1, 0, h1_count),
        (Protocol::H2, h1_count, options.requests - h1_count),
    ];
    let mut running = Vec::new();
    for (protocol, first, count) in parts {
        let spec = SoakSpec {
            target: LoadSpec {
                connect: setup.connect_to(),
                server_name: "api.openai.com".to_owned(),
                ca_file: setup.ca_file(),
                protocol,
                concurrency: options.concurrency,
                stream: false,
                new_connection_per_request: false,
                warmup_secs: 0.0,
                measure_secs: 0.0,
            },
            first,
            count,
        };
        running.push(loadgen_client(setup, "soak-load", &spec, LOAD_TIMEOUT)?.spawn());
    }
    running
        .into_iter()
        .map(|client| {
            let output = client.wait();
            if !output.status.success() {
                bail!("a soak load generator failed\n{output}");
            }
            let last = output.stdout.lines().last().unwrap_or_default();
            serde_json::from_str(last)
                .with_context(|| format!("reading a soak load generator's result\n{output}"))
        })
        .collect()
}
