//! `warden-bench`: Warden's cost against a direct connection and against mitmproxy, measured in one
//! run on loopback, and its soak (`soak`). Run them through `cargo xtask bench` and `cargo xtask
//! soak`, which build and install what they need.

mod loadgen;
mod mitm;
mod payload;
mod report;
mod run;
mod setups;
mod sinks;
mod soak;
mod stats;
mod upstream;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "warden-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every setup (direct, warden, mitmproxy) through every phase and writes the report.
    ///
    /// Needs root: Warden's eBPF redirect, cgroups and a private mount namespace for the clients'
    /// /etc/hosts. Every connection stays on 127.0.0.1.
    Run {
        /// Shorter measurements (2 s each after 0.5 s of warm-up instead of 10 s after 2 s).
        #[arg(long)]
        quick: bool,
        /// The `warden` binary to measure (a release build).
        #[arg(long, env = "WARDEN_BIN")]
        warden_bin: PathBuf,
        /// mitmproxy's `mitmdump`.
        #[arg(long)]
        mitmdump: PathBuf,
        /// Where the raw figures go, as JSON.
        #[arg(long, default_value = "target/bench/report.json")]
        out: PathBuf,
        /// The upstream's delay before each response's headers, in milliseconds.
        #[arg(long, default_value_t = 0)]
        upstream_latency_ms: u64,
        /// Content events in each streamed response.
        #[arg(long, default_value_t = 20)]
        stream_events: usize,
        /// Warden holds the API key (a `[[credential]]` serving the load generator): the agent's
        /// key is replaced on every request, as on a host with credential custody.
        #[arg(long)]
        custody: bool,
        /// Warden ships its audit trail meanwhile, to a JSONL file and as signed webhook
        /// batches to a receiver on 127.0.0.1; the report says how far behind the sinks were
        /// when the heaviest load stopped. Compare with a run without it.
        #[arg(long)]
        sinks: bool,
        /// Only these setups (direct, warden, mitmproxy); ratios need all three.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// How the report says it was produced.
        #[arg(long, default_value = "cargo xtask bench")]
        command_line: String,
    },
    /// Sends a fixed number of mixed requests through Warden and checks that nothing grows.
    ///
    /// Plain, streamed, masked, denied and client-aborted chat requests (4:2:2:1:1), half over
    /// HTTP/1.1 and half over HTTP/2, through the eBPF redirect; the daemon's RSS, open
    /// descriptors and audit queue depth are sampled throughout and must stay within 10% of
    /// their level after warm-up; afterwards every request must be on record with its outcome,
    /// and the audit chain must verify. Needs root. Exits non-zero when any of that fails.
    Soak {
        /// Requests to send in all.
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        /// Requests in flight from each of the two load generators (h1, h2).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Time between two samples of the daemon, in milliseconds.
        #[arg(long, default_value_t = 250)]
        sample_ms: u64,
        /// Content events in each streamed response.
        #[arg(long, default_value_t = 20)]
        stream_events: usize,
        /// The `warden` binary to soak (a release build).
        #[arg(long, env = "WARDEN_BIN")]
        warden_bin: PathBuf,
        /// Where the figures and every sample go, as JSON.
        #[arg(long, default_value = "target/soak/report.json")]
        out: PathBuf,
        /// How the report says it was produced.
        #[arg(long, default_value = "cargo xtask soak")]
        command_line: String,
    },
    /// One soak load generator (started by `soak`): prints its result as JSON on the last line.
    #[command(hide = true)]
    SoakLoad {
        #[arg(long)]
        spec: String,
    },
    /// One load-generator run (started by `run`): prints its result as JSON on the last line.
    #[command(hide = true)]
    Loadgen {
        #[arg(long)]
        spec: String,
    },
    /// Opens streams and holds them (started by `run` for the memory figure).
    #[command(hide = true)]
    OpenStreams {
        #[arg(long)]
        spec: String,
    },
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Run {
            quick,
            warden_bin,
            mitmdump,
            out,
            upstream_latency_ms,
            stream_events,
            command_line,
            custody,
            sinks,
            only,
        } => run::run(run::Options {
            only,
            quick,
            tools: setups::Tools {
                warden_bin,
                mitmdump,
                custody,
                sinks,
            },
            out,
            upstream: upstream::UpstreamBehavior {
                latency: Duration::from_millis(upstream_latency_ms),
                stream_events,
            },
            command: command_line,
        }),
        Command::Soak {
            requests,
            concurrency,
            sample_ms,
            stream_events,
            warden_bin,
            out,
            command_line,
        } => soak::run(soak::Options {
            warden_bin,
            out,
            requests,
            concurrency,
            sample_every: Duration::from_millis(sample_ms),
            stream_events,
            command: command_line,
        }),
        Command::SoakLoad { spec } => print_result(&spec, soak::load::run),
        Command::Loadgen { spec } => print_result(&spec, loadgen::run),
        Command::OpenStreams { spec } => print_result(&spec, loadgen::open_streams),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("warden-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_result<Spec: serde::de::DeserializeOwned, Outcome: serde::Serialize>(
    spec: &str,
    run: fn(Spec) -> anyhow::Result<Outcome>,
) -> anyhow::Result<()> {
    let spec = serde_json::from_str(spec)?;
    let result = run(spec)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
