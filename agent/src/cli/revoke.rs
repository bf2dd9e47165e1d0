//! `warden revoke` and `warden restore`: cut an identity off from every intercepted host, list
//! what is cut off, and lift it, through the running daemon.
use anyhow::bail;
use clap::Args;

use crate::{
    admin::{
        client,
        revocations::{RevocationAnswer, RevocationEntry},
        AdminRequest,
    },
    config::Config,
    identity::selector::IdentitySelector,
    revocation::MAX_REASON_CHARS,
};

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The identities to cut off: an identity selector such as `account:billing-agent`,
    /// `unit:agent.service`, `uid:1000`, `exe:/usr/bin/python3*`, `cgroup:/agents/*`.
    #[arg(required_unless_present = "list", conflicts_with = "list")]
    pub selector: Option<String>,
    /// Why, for the audit chain and the listings.
    #[arg(long, value_name = "TEXT", conflicts_with = "list")]
    pub reason: Option<String>,
    /// Show the revocations in force instead.
    #[arg(long)]
    pub list: bool,
    /// With --list: print JSON.
    #[arg(long, conflicts_with_all = ["selector", "reason"])]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The selector exactly as it was revoked (`warden revoke --list` shows them).
    pub selector: String,
}

pub fn revoke(config: &Config, args: &RevokeArgs) -> anyhow::Result<()> {
    let Some(selector) = &args.selector else {
        return list(config, args.json);
    };
    // Checked here too, for an error before anything is sent; the daemon checks again.
    let selector = IdentitySelector::parse(selector)?.to_string();
    if let Some(reason) = &args.reason {
        let chars = reason.chars().count();
        if chars > MAX_REASON_CHARS {
            bail!("--reason is {chars} characters long; at most {MAX_REASON_CHARS} are allowed");
        }
    }
    let request = AdminRequest::Revoke {
        selector,
        reason: args.reason.clone(),
    };
    let answer = call(config, &request)?;
    let Some(entry) = answer.revoked else {
        bail!("the daemon's answer names no revocation");
    };
    if answer.already_in_force {
        println!(
            "{} is already revoked: in force since {}, by {}{}",
            entry.selector,
            entry.at,
            by(&entry),
            because(&entry)
        );
    } else {
        println!(
            "revoked {}: its requests to every intercepted host are refused and its exchanges in \
             flight cut{}",
            entry.selector,
            because(&entry)
        );
    }
    Ok(())
}

pub fn restore(config: &Config, args: &RestoreArgs) -> anyhow::Result<()> {
    let selector = IdentitySelector::parse(&args.selector)?.to_string();
    let answer = call(config, &AdminRequest::Restore { selector })?;
    let Some(entry) = answer.restored else {
        bail!("the daemon's answer names no revocation");
    };
    println!(
        "restored {}: revoked since {} by {}, its requests are served again",
        entry.selector,
        entry.at,
        by(&entry)
    );
    Ok(())
}

fn list(config: &Config, json: bool) -> anyhow::Result<()> {
    let answer = call(config, &AdminRequest::Revocations)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer.revocations)?);
        return Ok(());
    }
    if answer.revocations.is_empty() {
        println!("no revocation in force");
        return Ok(());
    }
    println!("{:<32} {:<28} {:<12} REASON", "SELECTOR", "SINCE", "BY");
    for entry in &answer.revocations {
        println!(
            "{:<32} {:<28} {:<12} {}",
            entry.selector,
            entry.at,
            by(entry),
            entry.reason.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

fn call(config: &Config, request: &AdminRequest) -> anyhow::Result<RevocationAnswer> {
    let response = client::call(&config.admin_socket_path(), request)?;
    Ok(serde_json::from_value(response.status.unwrap_or_default())?)
}

fn by(entry: &RevocationEntry) -> String {
    entry.by.name()
}

fn because(entry: &RevocationEntry) -> String {
    entry
        .reason
        .as_deref()
        .map(|reason| format!(" ({reason})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn revoke_takes_a_selector_or_list_and_restore_a_selector() {
        let cli =
            Cli::try_parse_from(["warden", "revoke", "uid:1000", "--reason", "leak"]).unwrap();
        let Command::Revoke(args) = cli.command else {
            panic!("not revoke")
        };
        assert_eq!(args.selector.as_deref(), Some("uid:1000"));
        assert_eq!(args.reason.as_deref(), Some("leak"));
        let cli = Cli::try_parse_from(["warden", "revoke", "--list", "--json"]).unwrap();
        assert!(matches!(cli.command, Command::Revoke(ref a) if a.list && a.json));
        assert!(Cli::try_parse_from(["warden", "revoke"]).is_err());
        assert!(Cli::try_parse_from(["warden", "revoke", "uid:1", "--list"]).is_err());
        assert!(Cli::try_parse_from(["warden", "revoke", "uid:1", "--json"]).is_err());
        let cli = Cli::try_parse_from(["warden", "restore", "account:x"]).unwrap();
        assert!(matches!(cli.command, Command::Restore(ref a) if a.selector == "account:x"));
    }
}
