//! `cargo xtask`: the project's developer commands (toolchain setup, build, run, test), dispatched by clap.

mod build_cmd;
mod host_packages;
mod llvm_linkage;
mod process;
mod python;
mod run;
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
    /// Sets up the toolchain, installs curl and python3-venv with apt-get when missing, creates
    /// the Python venv target/e2e-venv with a pinned `openai` package, builds warden and the tests,
    /// then runs `cargo test -p warden -p warden-tests ARGS` with WARDEN_BIN and
    /// WARDEN_TEST_PYTHON set. Example: `cargo xtask test -- e2e -- --nocapture`.
    Test {
        /// Arguments passed to `cargo test` (put them after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = process::put_cargo_bin_on_path() {
        eprintln!("xtask: error: {err:#}");
        return ExitCode::FAILURE;
    }
    let outcome = match cli.command {
        Command::Setup => toolchain::setup(),
        Command::Build { release } => build_cmd::build(build_cmd::Profile::from_release(release)),
        Command::Run { debug, args } => run::run(build_cmd::Profile::from_release(!debug), &args),
        Command::Test { args } => test::test(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
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
}
