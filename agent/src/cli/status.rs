//! `warden status`: what the running daemon selects, has attached, and has counted.
use clap::Args;

use crate::{
    admin::{client, AdminRequest},
    config::Config,
};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print nothing: exit 0 if the daemon answers, non-zero (with the reason) if not. The drop-in
    /// `warden install` writes for a selected unit runs it before the unit starts.
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
}

pub fn run(config: &Config, args: &StatusArgs) -> anyhow::Result<()> {
    let response = client::call(&config.admin_socket_path(), &AdminRequest::Status)?;
    let status = response.status.unwrap_or_default();
    if args.quiet {
        return Ok(());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let field = |name: &str| status.get(name).cloned().unwrap_or_default();
    println!("daemon pid      {}", field("pid"));
    println!("listening on    {}", join(&field("listen")));
    let ports = field("intercept_ports");
    println!(
        "intercepts      ports {} (TLS only: {}) hosts {}",
        ports
            .as_str()
            .map_or_else(|| join(&ports), ToString::to_string),
        join(&field("tls_ports")),
        join(&field("intercept_hosts"))
    );
    println!(
        "cgroup2 mount   {}",
        field("cgroup2_mount").as_str().unwrap_or("?")
    );
    let attachment = field("attachment");
    let fail_mode = attachment["fail_mode"].as_str().unwrap_or("?");
    let pinned = attachment["pinned"].as_bool().unwrap_or(false);
    println!(
        "fail mode       {fail_mode}: {}",
        if pinned {
            "programs pinned; they stay attached if the daemon stops (connects are refused)"
        } else {
            "programs not pinned; they detach when the daemon stops (agents go direct)"
        }
    );
    println!(
        "pin dir         {}{}",
        attachment["pin_dir"].as_str().unwrap_or("?"),
        if attachment["adopted"].as_bool().unwrap_or(false) {
            " (re-adopted at start)"
        } else {
            ""
        }
    );
    println!("programs");
    for program in field("programs").as_array().into_iter().flatten() {
        println!(
            "  {:<20} id {}",
            program["name"].as_str().unwrap_or("?"),
            program["id"]
        );
    }
    println!("selected cgroups");
    let selected = field("selected");
    let selected = selected.as_array().cloned().unwrap_or_default();
    if selected.is_empty() {
        println!("  (none: configure [select] or use `warden exec`)");
    }
    for cgroup in selected {
        println!(
            "  {:<48} id {:<10} {}",
            cgroup["path"].as_str().unwrap_or("?"),
            cgroup["id"],
            cgroup["source"].as_str().unwrap_or("?")
        );
    }
    let policy = field("policy");
    let dir = policy["dir"].as_str().unwrap_or("?");
    match policy["loaded"].as_bool() {
        Some(true) => println!(
            "policy          {} rules in {} files from {dir}",
            policy["rules"], policy["files"]
        ),
        _ => println!(
            "policy          NONE LOADED: {}; no request is checked against any rule",
            policy["reason"].as_str().unwrap_or("unknown")
        ),
    }
    print_credentials(&field("credentials"));
    match field("api").as_str() {
        Some(url) => println!("api             {url}"),
        None => println!("api             off ([api] listen is not set)"),
    }
    print_sinks(&field("sinks"));
    println!("counters");
    if let Some(counters) = field("counters").as_object() {
        for (name, value) in counters {
            println!("  {name:<20} {value}");
        }
    }
    Ok(())
}

/// Credential custody: each credential's name, host, source and key fingerprint (never the key).
fn print_credentials(credentials: &serde_json::Value) {
    let entries = credentials["credentials"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if entries.is_empty() {
        println!("credentials     none: agents present their own keys");
        return;
    }
    println!(
        "credentials     presented keys: {}",
        credentials["presented"].as_str().unwrap_or("?")
    );
    for entry in entries {
        println!(
            "  {:<20} {:<24} {:<28} {} ({})",
            entry["name"].as_str().unwrap_or("?"),
            entry["host"].as_str().unwrap_or("?"),
            entry["fingerprint"].as_str().unwrap_or("?"),
            entry["source"].as_str().unwrap_or("?"),
            join(&entry["identity"]),
        );
    }
}

/// Each sink's backlog (records not yet acknowledged) and, while it fails, why.
fn print_sinks(sinks: &serde_json::Value) {
    let sinks = sinks.as_array().cloned().unwrap_or_default();
    if sinks.is_empty() {
        println!("sinks           none ([[sink]] ships the audit records)");
        return;
    }
    println!("sinks");
    for sink in sinks {
        println!(
            "  {:<20} {:<11} backlog {:<8} delivered {:<10} {}",
            sink["name"].as_str().unwrap_or("?"),
            sink["kind"].as_str().unwrap_or("?"),
            sink["backlog"],
            sink["delivered"],
            match sink["last_error"].as_str() {
                Some(error) => format!("FAILING: {error}"),
                None => "ok".to_owned(),
            }
        );
    }
}

fn join(value: &serde_json::Value) -> String {
    let items: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        .collect();
    items.join(", ")
}
