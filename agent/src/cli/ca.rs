//! `warden ca`: where Warden's CA certificate is.
use anyhow::bail;
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
        CaCommand::Path => {
            let path = tls::cert_path(&config.ca_dir());
            // A path printed for a file that does not exist would be trusted by nobody and fail
            // later, far from the cause.
            if !path.is_file() {
                bail!(
                    "no CA certificate at {}: the daemon creates it on its first start \
                     (`warden run` with this config)",
                    path.display()
                );
            }
            println!("{}", path.display());
        }
    }
    Ok(())
}
