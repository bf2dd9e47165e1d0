//! `warden limits`: what each identity has used of each `[[limit]]` now, from the running daemon.
use clap::Args;

use crate::{
    admin::{client, AdminRequest},
    config::Config,
    identity::selector::IdentitySelector,
    identity_limits::report::CapUsage,
};

#[derive(Debug, Args)]
pub struct LimitsArgs {
    /// Only the identities this selector names, as the limits count them: `account:billing-*`,
    /// `unit:agent.service`, `user:alice`, `uid:1000`, …
    pub selector: Option<String>,
    /// Print JSON (one object per cap: limit, identity, cap, used, allowed, resets_at).
    #[arg(long)]
    pub json: bool,
}

pub fn limits(config: &Config, args: &LimitsArgs) -> anyhow::Result<()> {
    // Checked here too, for an error before anything is sent; the daemon checks again.
    let selector = args
        .selector
        .as_deref()
        .map(IdentitySelector::parse)
        .transpose()?
        .map(|s| s.to_string());
    let response = client::call(
        &config.admin_socket_path(),
        &AdminRequest::Limits { selector },
    )?;
    let rows: Vec<CapUsage> = serde_json::from_value(response.status.unwrap_or_default())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no usage against any [[limit]] yet (limits count an identity from its first request)"
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<32} {:<20} {:>14} {:>14} {:>6}  RESETS",
        "LIMIT", "IDENTITY", "CAP", "USED", "ALLOWED", "USE"
    );
    for row in &rows {
        let percent = match row.allowed > 0.0 {
            true => format!("{:.0}%", 100.0 * row.used / row.allowed),
            false => "-".into(),
        };
        println!(
            "{:<20} {:<32} {:<20} {:>14} {:>14} {:>6}  {}",
            row.limit,
            row.identity,
            row.cap,
            amount(&row.cap, row.used),
            amount(&row.cap, row.allowed),
            percent,
            row.resets_at.as_deref().unwrap_or("when one ends"),
        );
    }
    Ok(())
}

/// Dollars with cents to the micro-dollar; counts as integers.
fn amount(cap: &str, value: f64) -> String {
    match cap.ends_with("_usd") {
        true => format!("${value:.6}"),
        false => format!("{value:.0}"),
    }
}
