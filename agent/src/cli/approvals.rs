//! `warden approvals`: list, show, approve, deny and watch requests held for a human decision.
//! Approvers need not be root: with `[admin] group` the daemon admits that group's members and
//! checks each decision against the rule's approvers.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::{
    admin::{client::AdminClientError, AdminRequest},
    approvals::{
        admin::{ApprovalsRequest, ApprovalsResponse},
        ApprovalView,
    },
    audit::{format_timestamp_us, governance::Decision},
    config::Config,
};

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    pub command: ApprovalsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// The requests waiting for a decision (that you may decide, unless you are root).
    List(ListArgs),
    /// One approval: who asked, for what, and how it closed.
    Show(ShowArgs),
    /// Let a held request go on, once or (--for) for a duration.
    Approve(ApproveArgs),
    /// Refuse a held request: the agent gets 403 approval_denied with your reason.
    Deny(DenyArgs),
    /// Print each new held request as it arrives, until interrupted.
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also the approvals already closed (approved, denied, expired, cancelled, interrupted).
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    pub id: String,
    /// Approve this identity under this rule for a duration (e.g. 30m, 1h): later matching
    /// requests pass without holding, each recorded with the grant's id.
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub for_duration: Option<Duration>,
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct DenyArgs {
    pub id: String,
    /// Why: the agent's error message carries it.
    #[arg(long, value_name = "TEXT", required = true)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config: &Config, args: &ApprovalsArgs) -> anyhow::Result<()> {
    let socket = config.admin_socket_path();
    match &args.command {
        ApprovalsCommand::List(list) => {
            let answer = call(&socket, ApprovalsRequest::List { all: list.all })?;
            print_list(&answer.approvals, list.json)
        }
        ApprovalsCommand::Show(show) => {
            let answer = call(
                &socket,
                ApprovalsRequest::Show {
                    id: show.id.clone(),
                },
            )?;
            for view in &answer.approvals {
                match show.json {
                    true => println!("{}", serde_json::to_string_pretty(view)?),
                    false => print!("{}", detail(view)),
                }
            }
            Ok(())
        }
        ApprovalsCommand::Approve(approve) => {
            let for_secs = approve.for_duration.map(|d| d.as_secs().max(1));
            let answer = call(
                &socket,
                ApprovalsRequest::Decide {
                    id: approve.id.clone(),
                    decision: Decision::Approve,
                    reason: approve.reason.clone(),
                    for_secs,
                },
            )?;
            for view in &answer.approvals {
                match &view.grant {
                    Some(grant) => println!(
                        "approved {} (grant {} until {})",
                        view.id,
                        grant.grant_id,
                        format_timestamp_us(grant.expires_at_us)
                    ),
                    None => println!("approved {}", view.id),
                }
            }
            Ok(())
        }
        ApprovalsCommand::Deny(deny) => {
            if deny.reason.trim().is_empty() {
                bail!("--reason must say why: the agent's error carries it");
            }
            let answer = call(
                &socket,
                ApprovalsRequest::Decide {
                    id: deny.id.clone(),
                    decision: Decision::Deny,
                    reason: Some(deny.reason.clone()),
                    for_secs: None,
                },
            )?;
            for view in &answer.approvals {
                println!("denied {}", view.id);
            }
            Ok(())
        }
        ApprovalsCommand::Watch(watch) => self::watch(&socket, watch.json),
    }
}

fn connect(socket: &Path, request: ApprovalsRequest) -> anyhow::Result<BufReader<UnixStream>> {
    let mut stream = UnixStream::connect(socket).map_err(|source| AdminClientError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    let mut line = serde_json::to_vec(&AdminRequest::Approvals { request })?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .context("talking to the Warden daemon")?;
    Ok(BufReader::new(stream))
}

fn read_answer(reader: &mut BufReader<UnixStream>) -> anyhow::Result<Option<ApprovalsResponse>> {
    let mut line = String::new();
    if reader
        .read_line(&mut line)
        .context("talking to the Warden daemon")?
        == 0
    {
        return Ok(None);
    }
    let answer: ApprovalsResponse =
        serde_json::from_str(&line).context("the Warden daemon sent an unreadable response")?;
    if !answer.ok {
        bail!(
            "the Warden daemon refused: {}",
            answer.error.unwrap_or_default()
        );
    }
    Ok(Some(answer))
}

fn call(socket: &Path, request: ApprovalsRequest) -> anyhow::Result<ApprovalsResponse> {
    let mut reader = connect(socket, request)?;
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))?;
    read_answer(&mut reader)?.context("the Warden daemon closed the connection without answering")
}

fn watch(socket: &Path, json: bool) -> anyhow::Result<()> {
    let mut reader = connect(socket, ApprovalsRequest::Watch)?;
    if !json {
        println!("watching for requests held for approval (Ctrl-C to stop)");
    }
    while let Some(answer) = read_answer(&mut reader)? {
        for view in &answer.approvals {
            match json {
                true => println!("{}", serde_json::to_string(view)?),
                false => print!("{}", detail(view)),
            }
        }
        std::io::stdout().flush()?;
    }
    bail!("the Warden daemon closed the connection (stopped?)")
}

fn requester(view: &ApprovalView) -> String {
    let r = &view.requester;
    let who = r
        .account
        .clone()
        .or_else(|| r.unit.clone())
        .unwrap_or_else(|| r.user.clone().unwrap_or_else(|| format!("uid {}", r.uid)));
    format!(
        "{who} ({}, pid {})",
        r.exe.as_deref().unwrap_or(&r.comm),
        r.pid
    )
}

fn print_list(list: &[ApprovalView], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no approvals");
        return Ok(());
    }
    println!(
        "{:<36} {:<11} {:<24} {:<14} {:<20} REQUESTER",
        "ID", "STATE", "RULE", "MODEL", "EXPIRES"
    );
    for view in list {
        println!(
            "{:<36} {:<11} {:<24} {:<14} {:<20} {}",
            view.id,
            view.state.as_str(),
            view.rule,
            view.model.as_deref().unwrap_or("-"),
            format_timestamp_us(view.expires_at_us),
            requester(view)
        );
    }
    Ok(())
}

fn detail(view: &ApprovalView) -> String {
    let mut text = format!(
        "approval   {}\nstate      {}\nexchange   {}\nrequester  {}\nuid        {}\nrule       {}\napprovers  {}\nmodel      {}\nendpoint   {}\nrequested  {}\nexpires    {}\nprompt     {}\n",
        view.id,
        view.state.as_str(),
        view.exchange_id.as_deref().unwrap_or("-"),
        requester(view),
        view.requester.uid,
        view.rule,
        match view.approvers.is_empty() {
            true => "-".to_string(),
            false => view.approvers.join(", "),
        },
        view.model.as_deref().unwrap_or("-"),
        view.endpoint,
        format_timestamp_us(view.created_at_us),
        format_timestamp_us(view.expires_at_us),
        view.excerpt,
    );
    if let Some(by) = &view.decided_by {
        text.push_str(&format!("decided by {}\n", by.describe()));
    }
    if let Some(reason) = &view.reason {
        text.push_str(&format!("reason     {reason}\n"));
    }
    if let Some(grant) = &view.grant {
        text.push_str(&format!(
            "grant      {} until {}\n",
            grant.grant_id,
            format_timestamp_us(grant.expires_at_us)
        ));
    }
    if let Some(closed) = view.closed_at_us {
        text.push_str(&format!("closed     {}\n", format_timestamp_us(closed)));
    }
    text.push('\n');
    text
}
