//! `warden ca`: where Warden's CA certificate is.
use clap::{Args, Subcommand};

use crate::{config::Config, tls};

#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the path of the CA certificate (PEM) that agents must trust, e.g. via SSL_CERT_FILE.
    /// The daemon creates it on first start.
    Path,
}

pub fn run(config: &Config, args: &CaArgs) -> anyhow::Result<()> {
    match args.command {
        CaCommand::Path => println!("{}", tls::cert_path(&config.ca_dir()).display()),
    }
    Ok(())
}
