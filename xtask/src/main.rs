//! `cargo xtask`: the project's developer commands (toolchain setup, build, run, test, bench, soak), dispatched by clap.

mod bench;
mod build_cmd;
mod fuzz;
mod go_client;
mod host_packages;
mod llvm_linkage;
mod node;
mod process;
mod python;
mod run;
mod soak;
mod test;
mod toolchain;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer commands for Warden. Every command first makes the eBPF toolchain ready, so a fresh
/// machine needs no manual step.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the eBPF toolchain ready, idempotently.
    ///
    /// Checks, and installs when missing: the rustup `nightly` toolchain, its `rust-src` component,
    /// and bpf-linker 0.13.0 built against the nightly's own libLLVM (reinstalled with --force when
    /// it is missing, another version, or linked to another LLVM). Prints one line per step.
    Setup,

    /// Set up the toolchain, then `cargo build -p warden` (agent/build.rs embeds the eBPF object).
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },

    /// Set up, build (release unless --debug), then run `warden run ARGS...` in the foreground.
    ///
    /// The daemon needs root (it loads eBPF programs): run as root or through `sudo -E`.
    /// Warden reads /etc/warden/warden.toml or its defaults unless ARGS say otherwise.
    /// The exit code is warden's.
    Run {
        /// Use the debug build instead of the release build.
        #[arg(long)]
        debug: bool,

        /// Arguments passed to `warden run` (put them after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },

    /// The project's one test command (README and CI run it). Needs root (sudo -E).
    ///
    /// Sets up the toolchain, installs the host packages the tests use (curl, python3-venv, node
    /// and npm, golang, systemd-container, ...) with apt-get when missing, creates the Python venv
    /// target/e2e-venv with a pinned `openai` package, installs the pinned `openai` npm package
    /// into target/e2e-node, builds the Go client (tests/clients/go) into target/e2e-go, builds
    /// warden and the tests, then runs `cargo test -p warden -p warden-tests -p warden-bench ARGS`
    /// with WARDEN_BIN, WARDEN_TEST_PYTHON, WARDEN_TEST_NODE, WARDEN_TEST_NODE_MODULES and
    /// WARDEN_TEST_GO_CLIENT set. Example: `cargo xtask test -- e2e -- --nocapture`.
    Test {
        /// Arguments passed to `cargo test` (put them after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },

    /// Measure Warden's cost against a direct connection and against mitmproxy. Needs root (sudo -E).
    ///
    /// Sets up the toolchain and host packages, creates the Python venv target/bench-venv with
    /// mitmproxy 11.0.2 pinned, and builds warden and warden-bench in release.
    ///
    /// Then `warden-bench run` puts a fake OpenAI upstream on loopback and reaches it three ways:
    /// direct, through Warden (eBPF redirect, TLS interception, audit) and through mitmdump. Each
    /// is measured over HTTP/1.1 and HTTP/2: chat latency and throughput (1 and 64 in flight),
    /// time to the first streamed event, new connections with full handshakes, memory with 1000
    /// open streams, and Warden's audit write rate. It prints a table and writes the raw figures
    /// to target/bench/report.json.
    ///
    /// Last, the criterion micro-benchmarks run (sse, masking, tls_leaf, policy; results under
    /// target/criterion). The audit bench is left out because it builds a store of a million
    /// records and takes many minutes: run it with `cargo bench -p warden --bench audit`.
    ///
    /// Full mode measures each case for 10 s after 2 s of warm-up (warden-bench alone takes
    /// about 6 to 8 minutes). --quick measures 2 s after 0.5 s with short criterion times and
    /// aims to finish within 3 minutes after the builds. Figures are only comparable on an
    /// otherwise idle machine. Example: `cargo xtask bench --quick -- --upstream-latency-ms 50`.
    Bench {
        /// Short measurements: a smoke run with rough figures.
        #[arg(long)]
        quick: bool,

        /// Arguments passed to `warden-bench run` (put them after `--`), e.g. `--only direct,warden`,
        /// `--upstream-latency-ms N`, `--stream-events N`, `--sinks` (Warden ships its audit
        /// trail to a file and a webhook while it is measured).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },

    /// Run the cargo-fuzz targets in fuzz/ on nightly, one after another (installs cargo-fuzz
    /// with `cargo install --locked` when it is missing).
    ///
    /// Each target starts from its committed seeds (fuzz/corpus/TARGET, only read) and keeps what
    /// it finds in fuzz/target/corpus/TARGET. A crash stops the run with the input saved under
    /// fuzz/artifacts/TARGET/. `cargo xtask test` replays the committed seeds on stable. Example:
    /// `cargo xtask fuzz --secs 600 sse -- -max_len=65536`.
    Fuzz {
        /// How long each target runs, in seconds.
        #[arg(long, default_value_t = 60)]
        secs: u64,

        /// Only this target (a file stem of fuzz/fuzz_targets/); all of them when omitted.
        target: Option<String>,

        /// Arguments passed to libFuzzer (put them after `--`).
        #[arg(last = true)]
        libfuzzer_args: Vec<String>,
    },

    /// Soak Warden: 100,000 mixed requests through the real redirect, checking nothing grows and
    /// nothing goes unrecorded. Needs root (sudo -E).
    ///
    /// Builds warden and warden-bench in release, then `warden-bench soak` starts Warden (custody,
    /// the bench policy, /metrics on loopback) in front of a fake OpenAI upstream and sends, from a
    /// selected cgroup to api.openai.com:443 (loopback by a hosts file in a private mount
    /// namespace, redirected by eBPF), plain, streamed, masked, denied and client-aborted chat
    /// requests (4:2:2:1:1), half over HTTP/1.1 and half over HTTP/2, 16 in flight on each.
    ///
    /// Every 250 ms it samples the daemon's RSS and open descriptors (/proc) and the audit
    /// writer's queue depth (`warden_audit_queue_depth`). Each must stay flat: its median while
    /// the last quarter of the requests finish may exceed its median while requests 10% to 25%
    /// finish (after warm-up) by at most 10% (the queue also by one record per request in flight).
    /// Afterwards every request must be on record once with the outcome its kind calls for,
    /// `warden audit verify` must pass, and the upstream must have received every request but the
    /// denied ones, none unmasked. It prints a table and writes every figure and sample to
    /// target/soak/report.json; the exit is non-zero when any check fails.
    ///
    /// About a minute after the builds on 2 cores. Examples: `cargo xtask soak --requests 5000`
    /// for a quick check, `cargo xtask soak -- --concurrency 8 --sample-ms 100`.
    Soak {
        /// Requests to send in all (default 100,000; at least 100).
        #[arg(long)]
        requests: Option<u64>,

        /// Arguments passed to `warden-bench soak` (put them after `--`): `--concurrency N`,
        /// `--sample-ms N`, `--stream-events N`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    forget_cargo_run_env();
    if let Err(err) = process::put_cargo_bin_on_path() {
        eprintln!("xtask: error: {err:#}");
        return ExitCode::FAILURE;
    }
    let outcome = match cli.command {
        Command::Setup => toolchain::setup(),
        Command::Build { release } => build_cmd::build(build_cmd::Profile::from_release(release)),
        Command::Run { debug, args } => run::run(build_cmd::Profile::from_release(!debug), &args),
        Command::Test { args } => test::test(&args),
        Command::Bench { quick, args } => bench::bench(quick, &args),
        Command::Fuzz {
            secs,
            target,
            libfuzzer_args,
        } => fuzz::fuzz(secs, target.as_deref(), &libfuzzer_args),
        Command::Soak { requests, args } => soak::soak(requests, &args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo run` (behind the `cargo xtask` alias) hands us xtask's own CARGO_MANIFEST_* and
/// CARGO_PKG_*, and every cargo we start would pass them on. Build scripts that watch them (ring's
/// does) then see a changed environment whenever `cargo xtask` and plain cargo take turns in one
/// target dir, and ring with everything above it (rustls, rcgen, warden) rebuilds each time.
fn forget_cargo_run_env() {
    let inherited: Vec<_> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_str().is_some_and(is_cargo_run_crate_var))
        .collect();
    for name in inherited {
        // Single-threaded at this point (called first thing in main), so mutating the environment is sound.
        std::env::remove_var(name);
    }
}

/// The variables cargo sets to describe the crate it runs, as opposed to cargo's own settings.
fn is_cargo_run_crate_var(name: &str) -> bool {
    name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_MANIFEST_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_args_after_double_dash_are_passed_verbatim() {
        let cli = Cli::try_parse_from(["xtask", "test", "--", "e2e", "--", "--nocapture"])
            .expect("parses");
        match cli.command {
            Command::Test { args } => assert_eq!(args, ["e2e", "--", "--nocapture"]),
            _ => panic!("wrong subcommand"),
        }
    }

    #[test]
    fn run_args_keep_their_flags() {
        let cli =
            Cli::try_parse_from(["xtask", "run", "--", "--config", "/tmp/w.toml"]).expect("parses");
        match cli.command {
            Command::Run { debug, args } => {
                assert!(!debug);
                assert_eq!(args, ["--config", "/tmp/w.toml"]);
            }
            _ => panic!("wrong subcommand"),
        }
    }

    #[test]
    fn only_the_run_crate_description_is_forgotten() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
        ] {
            assert!(is_cargo_run_crate_var(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_TERM_COLOR",
            "PATH",
        ] {
            assert!(!is_cargo_run_crate_var(name), "{name}");
        }
    }

    #[test]
    fn bench_takes_quick_and_passes_the_rest_to_warden_bench() {
        let cli = Cli::try_parse_from([
            "xtask",
            "bench",
            "--quick",
            "--",
            "--only",
            "direct,warden",
            "--stream-events",
            "5",
        ])
        .expect("parses");
        match cli.command {
            Command::Bench { quick, args } => {
                assert!(quick);
                assert_eq!(args, ["--only", "direct,warden", "--stream-events", "5"]);
            }
            _ => panic!("wrong subcommand"),
        }
        let cli = Cli::try_parse_from(["xtask", "bench"]).expect("parses");
        match cli.command {
            Command::Bench { quick, args } => {
                assert!(!quick);
                assert!(args.is_empty());
            }
            _ => panic!("wrong subcommand"),
        }
    }

    #[test]
    fn fuzz_takes_secs_a_target_and_libfuzzer_args() {
        let cli =
            Cli::try_parse_from(["xtask", "fuzz", "--secs", "600", "sse", "--", "-max_len=9"])
                .expect("parses");
        match cli.command {
            Command::Fuzz {
                secs,
                target,
                libfuzzer_args,
            } => {
                assert_eq!(secs, 600);
                assert_eq!(target.as_deref(), Some("sse"));
                assert_eq!(libfuzzer_args, ["-max_len=9"]);
            }
            _ => panic!("wrong subcommand"),
        }
        let cli = Cli::try_parse_from(["xtask", "fuzz"]).expect("parses");
        match cli.command {
            Command::Fuzz {
                secs,
                target,
                libfuzzer_args,
            } => {
                assert_eq!(secs, 60);
                assert!(target.is_none() && libfuzzer_args.is_empty());
            }
            _ => panic!("wrong subcommand"),
        }
    }
}
