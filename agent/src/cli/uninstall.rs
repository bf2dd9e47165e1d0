//! `warden uninstall`: reverse `warden install`, printing one line per step; the configuration
//! and the state (audit store, CA) are kept unless `--purge`.
use std::path::PathBuf;

use clap::Args;

use super::Cli;
use crate::install::{self, Step, Steps, UninstallOptions};

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Uninstall from this directory (an image) instead of the live system; no command is run.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove /etc/warden and the state directory: the audit store and the CA.
    #[arg(long)]
    pub purge: bool,
}

pub fn run(cli: &Cli, args: &UninstallArgs) -> anyhow::Result<()> {
    let root = super::install_root(args.root.as_deref(), args.dry_run)?;
    let options = UninstallOptions {
        root,
        dry_run: args.dry_run,
        purge: args.purge,
        config: cli.config.clone(),
    };
    let mut print = |step: &Step| println!("{step}");
    let mut steps = Steps::new(args.dry_run, &mut print);
    install::uninstall(&options, &mut steps)?;
    println!("{}", super::summary(&steps, "uninstalled"));
    Ok(())
}
