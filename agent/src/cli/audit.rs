//! `warden audit`: check the audit store's hash chain; open the store for the query commands.
use std::io;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::{
    audit::{audit_db_path, AuditError, AuditReader, VerifyReport},
    config::Config,
};

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of the audit store (root). Exits 1 naming the first record that was
    /// altered, deleted or reordered. Prints the head hash: keep it elsewhere to detect later
    /// removal of the newest records.
    Verify,
}

pub fn run(config: &Config, args: &AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify => verify(config),
    }
}

fn verify(config: &Config) -> anyhow::Result<()> {
    let reader = open_reader(config)?;
    match reader.verify() {
        Ok(report) => {
            println!("audit chain ok: {}", describe(&report));
            Ok(())
        }
        // main prints this as `warden: audit chain broken: …` and exits 1.
        Err(AuditError::ChainBroken { what, .. }) => bail!("audit chain broken: {what}"),
        Err(error) => Err(error.into()),
    }
}

/// `N records, seq A..B`, and where retention left the chain's start.
fn describe(report: &VerifyReport) -> String {
    let mut text = format!("{} records", report.records);
    if let (Some(first), Some(last)) = (report.first_seq, report.last_seq) {
        text.push_str(&format!(", seq {first}..{last}"));
    }
    if let Some(head) = &report.head_hash {
        text.push_str(&format!(", head {head}"));
    }
    if let Some(anchor) = report.anchor_seq {
        text.push_str(&format!(
            " (records through {anchor} were pruned by retention)"
        ));
    }
    text
}

/// The audit store of `config`, read-only.
pub fn open_reader(config: &Config) -> anyhow::Result<AuditReader> {
    let path = audit_db_path(&config.state_dir);
    // SQLite reports an unreadable file only as "unable to open database file": say why first.
    if let Err(error) = std::fs::File::open(&path) {
        if error.kind() == io::ErrorKind::PermissionDenied {
            bail!(
                "the audit store {} is root-only: run as root",
                path.display()
            );
        }
    }
    Ok(AuditReader::open(&path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_range_and_the_anchor() {
        let report = VerifyReport {
            records: 3,
            first_seq: Some(42),
            last_seq: Some(44),
            anchor_seq: Some(41),
            head_hash: Some("ab12".into()),
        };
        assert_eq!(
            describe(&report),
            "3 records, seq 42..44, head ab12 (records through 41 were pruned by retention)"
        );
        assert_eq!(describe(&VerifyReport::default()), "0 records");
    }
}
