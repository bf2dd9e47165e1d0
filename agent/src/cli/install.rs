//! `warden install`: set this host (or an image root) up as a hardened systemd service, printing
//! one line per step.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::Cli;
use crate::install::{self, InstallOptions, Step, Steps};

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Install into this directory (an image being built) instead of the live system: every path
    /// is put under DIR, the files still name the live paths, and no command is run.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Enable the service without starting it.
    #[arg(long)]
    pub no_start: bool,
}

pub fn run(cli: &Cli, args: &InstallArgs) -> anyhow::Result<()> {
    let root = super::install_root(args.root.as_deref(), args.dry_run)?;
    let binary = std::env::current_exe().context("finding the running warden binary")?;
    let options = InstallOptions {
        root,
        dry_run: args.dry_run,
        start: !args.no_start,
        config: cli.config.as_deref().map(std::path::absolute).transpose()?,
        binary,
    };
    let mut print = |step: &Step| println!("{step}");
    let mut steps = Steps::new(args.dry_run, &mut print);
    install::install(&options, &mut steps)?;
    println!("{}", super::summary(&steps, "installed"));
    Ok(())
}
