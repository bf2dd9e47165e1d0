//! `--sinks`: Warden ships its audit trail while it is measured, to a JSONL file and as signed
//! webhook batches to a receiver on 127.0.0.1, and the report says whether the sinks kept up.
//!
//! The receiver shares the machine with Warden and the load generator, so it does as little as a
//! receiver can: it reads each batch and answers 204 (the tests check signatures and contents).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use warden_tests::prometheus::Exposition;
use warden_tests::sinks::{secret_file, sink_toml, AcknowledgingReceiver};
use warden_tests::Daemon;

const SECRET: &str = "bench-webhook-secret";
const SINKS: [&str; 2] = ["bench-file", "bench-webhook"];

/// The receiver and the files the sinks use; dropping it stops the receiver and removes them.
pub struct BenchSinks {
    receiver: AcknowledgingReceiver,
    dir: tempfile::TempDir,
}

/// How far behind the sinks were when the heaviest load stopped, and how long they took to
/// deliver the rest.
#[derive(Debug, Clone, Serialize)]
pub struct SinksReport {
    pub sinks: Vec<&'static str>,
    /// Records not yet delivered, summed over the sinks, as the load stopped.
    pub backlog_at_load_end: u64,
    pub caught_up_after_secs: f64,
    /// Records each sink delivered by then.
    pub delivered: Vec<u64>,
}

impl BenchSinks {
    pub fn start() -> Result<Self> {
        Ok(Self {
            receiver: AcknowledgingReceiver::start(),
            dir: tempfile::Builder::new()
                .prefix("warden-bench-sinks-")
                .tempdir()
                .context("a directory for the sinks")?,
        })
    }

    /// The `[[sink]]` tables for the daemon's config: every event class, bodies left out.
    pub fn config_toml(&self) -> String {
        let secret = secret_file(self.dir.path(), "webhook.key", SECRET);
        let file = sink_toml(
            SINKS[0],
            "file",
            &format!("path = {:?}", self.dir.path().join("audit.jsonl")),
        );
        let webhook = sink_toml(
            SINKS[1],
            "webhook",
            &format!("url = {:?}\nsecret_file = {secret:?}", self.receiver.url()),
        );
        format!("{file}{webhook}")
    }

    /// Reads the sinks' backlog now (the load just stopped), then waits until both delivered
    /// everything committed.
    pub fn catch_up(&self, daemon: &Daemon) -> Result<SinksReport> {
        let stopped = Instant::now();
        let backlog_at_load_end = backlog(daemon)?;
        let deadline = stopped + Duration::from_secs(60);
        let mut behind = backlog_at_load_end;
        while behind > 0 {
            std::thread::sleep(Duration::from_millis(20));
            behind = backlog(daemon)?;
            if Instant::now() > deadline {
                bail!("the sinks were still behind a minute after the load stopped");
            }
        }
        let caught_up_after_secs = match backlog_at_load_end {
            0 => 0.0,
            _ => stopped.elapsed().as_secs_f64(),
        };
        let metrics = Exposition::scrape(&daemon.metrics_url());
        let delivered = SINKS
            .iter()
            .map(|sink| {
                metrics
                    .value("warden_sink_delivered_records_total", &[("sink", sink)])
                    .map_or(0, |v| v as u64)
            })
            .collect();
        Ok(SinksReport {
            sinks: SINKS.to_vec(),
            backlog_at_load_end,
            caught_up_after_secs,
            delivered,
        })
    }
}

fn backlog(daemon: &Daemon) -> Result<u64> {
    let metrics = Exposition::scrape(&daemon.metrics_url());
    SINKS
        .iter()
        .map(|sink| {
            metrics
                .value("warden_sink_backlog_records", &[("sink", sink)])
                .map(|v| v as u64)
                .with_context(|| format!("no warden_sink_backlog_records for sink {sink}"))
        })
        .sum()
}
