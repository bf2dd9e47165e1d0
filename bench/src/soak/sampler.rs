//! Samples the daemon while the soak runs, on a thread of its own: RSS and open descriptors from
//! /proc, the audit writer's queue depth and the exchanges finished so far from its /metrics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use warden_tests::prometheus::Exposition;

use crate::setups::rss_mib;

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub at_secs: f64,
    /// Exchanges the daemon had finished (`warden_exchanges_total`, every series).
    pub exchanges: u64,
    pub rss_mib: f64,
    /// Entries in /proc/PID/fd.
    pub fds: u64,
    /// `warden_audit_queue_depth`: records waiting for the audit writer.
    pub audit_queue: u64,
    /// The machine's 1-minute load average (/proc/loadavg): how busy the host was meanwhile.
    pub load_1m: f64,
}

/// Where the samples come from.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub pid: u32,
    pub metrics: SocketAddr,
}

impl Probe {
    pub fn sample(&self, started: Instant) -> Result<Sample> {
        let exposition = self.scrape()?;
        let exchanges = exposition
            .series("warden_exchanges_total")
            .iter()
            .map(|s| s.value)
            .sum::<f64>();
        let audit_queue = exposition
            .value("warden_audit_queue_depth", &[])
            .context("no warden_audit_queue_depth in /metrics")?;
        let fd_dir = format!("/proc/{}/fd", self.pid);
        let fds = std::fs::read_dir(&fd_dir)
            .with_context(|| format!("listing {fd_dir}"))?
            .count() as u64;
        Ok(Sample {
            at_secs: started.elapsed().as_secs_f64(),
            exchanges: exchanges as u64,
            rss_mib: rss_mib(self.pid)?,
            fds,
            audit_queue: audit_queue as u64,
            load_1m: load_1m()?,
        })
    }

    /// `GET /metrics` over HTTP/1.0, so the answer ends with the connection (no chunking).
    fn scrape(&self) -> Result<Exposition> {
        let mut tcp = TcpStream::connect_timeout(&self.metrics, SCRAPE_TIMEOUT)
            .with_context(|| format!("connecting to the metrics endpoint {}", self.metrics))?;
        tcp.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
        tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut answer = String::new();
        tcp.read_to_string(&mut answer)
            .context("reading /metrics")?;
        let Some((head, body)) = answer.split_once("\r\n\r\n") else {
            bail!("/metrics answered without a header end");
        };
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            bail!("/metrics answered {}", head.lines().next().unwrap_or(""));
        }
        Ok(Exposition::parse(body))
    }
}

fn load_1m() -> Result<f64> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    loadavg
        .split_whitespace()
        .next()
        .and_then(|first| first.parse().ok())
        .with_context(|| format!("/proc/loadavg reads {loadavg:?}"))
}

/// A running sampler. [`Sampler::finish`] stops it and hands over its samples.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Result<Vec<Sample>>>,
}

impl Sampler {
    /// Samples every `every` until finished; prints a progress line to stderr every 5 s or so.
    pub fn start(probe: Probe, every: Duration, requests: u64) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            let mut reported = Instant::now();
            loop {
                let sample = probe.sample(started)?;
                if reported.elapsed() >= Duration::from_secs(5) {
                    reported = Instant::now();
                    eprintln!(
                        "   {:>6.0} s  {:>7} of {requests} exchanges  RSS {:.1} MiB  {} fds  audit queue {}  load {:.2}",
                        sample.at_secs, sample.exchanges, sample.rss_mib, sample.fds, sample.audit_queue, sample.load_1m
                    );
                }
                samples.push(sample);
                // The wait between samples, and the stop signal.
                match stopped.recv_timeout(every) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return Ok(samples),
                }
            }
        });
        Self { stop, thread }
    }

    pub fn finish(self) -> Result<Vec<Sample>> {
        let _ = self.stop.send(());
        match self.thread.join() {
            Ok(samples) => samples,
            Err(_) => bail!("the sampler thread panicked"),
        }
    }
}
