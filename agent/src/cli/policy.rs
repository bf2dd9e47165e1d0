//! `warden policy`: check policy files before the daemon loads them.
use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::{Args, Subcommand};

use super::Cli;
use crate::policy::{self, Policy};

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file or directory: prints `ok: N rules in M files`, or every problem of
    /// every file as FILE:LINE: KEY: REASON and exits non-zero.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A policy file, or a directory whose `*.toml` files are checked together (rule names must be
    /// unique across them). Default: `[policy] dir` of the configuration.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &PolicyArgs) -> anyhow::Result<()> {
    match &args.command {
        PolicyCommand::Check(check) => run_check(cli, check),
    }
}

fn run_check(cli: &Cli, args: &CheckArgs) -> anyhow::Result<()> {
    // A path given on the command line needs no configuration, so a broken config cannot stop it.
    let (path, explicit) = match &args.path {
        Some(path) => (path.clone(), true),
        None => (cli.load_config()?.policy.dir, false),
    };
    let loaded = if path.is_dir() {
        policy::load_dir(&path)
    } else if path.exists() || explicit {
        policy::load_file(&path)
    } else {
        println!("ok: 0 rules in 0 files ({} does not exist)", path.display());
        return Ok(());
    };
    match loaded {
        Ok(policy) => {
            println!("{}", summary(&policy, &path));
            Ok(())
        }
        Err(error) => {
            let problems = error.problems();
            for problem in problems {
                eprintln!("{problem}");
            }
            bail!(
                "{} in {}",
                count(problems.len(), "problem", "problems"),
                path.display()
            )
        }
    }
}

fn summary(policy: &Policy, path: &Path) -> String {
    let rules = count(policy.rules.len(), "rule", "rules");
    let files = count(policy.files.len(), "file", "files");
    match policy.files.is_empty() {
        true => format!("ok: {rules} in {files} (no *.toml in {})", path.display()),
        false => format!("ok: {rules} in {files}"),
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
