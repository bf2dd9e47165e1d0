//! `warden sessions`: list, show, replay and export the exchanges in the audit store.
mod prompt;
mod show;
mod table;
mod text;
pub mod timeline;
mod trail;
mod verdict;

use std::{
    io::{self, Write},
    path::PathBuf,
};

use anyhow::{anyhow, bail};
use clap::{builder::PossibleValuesParser, Args, Subcommand, ValueEnum};

use super::{audit::open_reader, time_arg::parse_time_arg_now};
use crate::{
    audit::{record::Outcome, AuditError, AuditReader, ExchangeFilter},
    config::Config,
    identity::selector::IdentitySelector,
};

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(subcommand)]
    pub command: SessionsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List recorded exchanges, newest first (root: reads the audit store).
    List(ListArgs),
    /// Print one exchange whole: identity, connection, request with its prompt, response with its
    /// text, tool calls, usage, timings and outcome.
    Show(ShowArgs),
    /// Replay one exchange as a timeline: the request, each streamed delta at its time offset,
    /// then the outcome.
    Replay(ReplayArgs),
    /// Write exchanges as JSON lines, oldest first, one object per exchange (for SIEM ingestion).
    Export(ExportArgs),
}

/// Which exchanges: every filter given must match.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only exchanges started at or after T: an RFC 3339 time (2026-11-20T22:10:14Z), a date
    /// (2026-11-20, UTC) or a duration ago (90s, 15m, 2h, 7d, 2w).
    #[arg(long, value_name = "T", value_parser = parse_time_arg_now)]
    pub since: Option<i64>,
    /// Only exchanges started before T (same forms as --since).
    #[arg(long, value_name = "T", value_parser = parse_time_arg_now)]
    pub until: Option<i64>,
    /// Only exchanges of this identity, in policy selector syntax: account:GLOB, unit:GLOB,
    /// user:GLOB, uid:N, cgroup:GLOB, exe:GLOB, pid:N, sa:GLOB.
    #[arg(long, value_name = "SELECTOR", value_parser = parse_identity)]
    pub identity: Option<IdentitySelector>,
    /// Only exchanges whose model matches this glob (`*`, `?`; case-sensitive), e.g. 'gpt-4o*'.
    #[arg(long, value_name = "GLOB")]
    pub model: Option<String>,
    /// Only exchanges with this endpoint kind.
    #[arg(long, value_parser = PossibleValuesParser::new(ENDPOINTS))]
    pub endpoint: Option<String>,
    /// Only exchanges with this outcome (`incomplete`: no response record).
    #[arg(long, value_parser = PossibleValuesParser::new(outcomes()))]
    pub outcome: Option<String>,
}

pub const ENDPOINTS: [&str; 8] = [
    "chat.completions",
    "responses",
    "embeddings",
    "completions",
    "files",
    "batches",
    "models",
    "other",
];

pub fn outcomes() -> Vec<&'static str> {
    let mut outcomes: Vec<&str> = Outcome::ALL
        .iter()
        .map(|outcome| outcome.as_str())
        .collect();
    outcomes.push("incomplete");
    outcomes
}

fn parse_identity(text: &str) -> Result<IdentitySelector, String> {
    IdentitySelector::parse(text).map_err(|error| error.to_string())
}

impl FilterArgs {
    fn to_filter(&self, limit: Option<usize>) -> ExchangeFilter {
        ExchangeFilter {
            since_us: self.since,
            until_us: self.until,
            identity: self.identity.clone(),
            model: self.model.clone(),
            endpoint: self.endpoint.clone(),
            outcome: self.outcome.clone(),
            limit,
        }
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most N exchanges (the newest).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Print a JSON array with one object per exchange instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The exchange id (the `id` in `sessions list --json`).
    pub id: String,
    /// Print the exchange as one JSON object, every recorded field included.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The exchange id (the `id` in `sessions list --json`).
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most N exchanges (the oldest matching); all by default.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line, each the `sessions show --json` object.
    Jsonl,
}

pub fn run(config: &Config, args: &SessionsArgs) -> anyhow::Result<()> {
    match &args.command {
        SessionsCommand::List(args) => list(config, args),
        SessionsCommand::Show(args) => show(config, args),
        SessionsCommand::Replay(args) => replay(config, args),
        SessionsCommand::Export(args) => export(config, args),
    }
}

fn list(config: &Config, args: &ListArgs) -> anyhow::Result<()> {
    let reader = open_reader(config)?;
    let summaries = reader.list(&args.filter.to_filter(Some(args.limit)))?;
    if args.json {
        return print_json(serde_json::to_string_pretty(&summaries)?);
    }
    if summaries.is_empty() {
        eprintln!("no exchanges match");
        return Ok(());
    }
    print(&table::render(&summaries))
}

fn show(config: &Config, args: &ShowArgs) -> anyhow::Result<()> {
    let reader = open_reader(config)?;
    let detail = reader
        .exchange(&args.id)?
        .ok_or_else(|| anyhow!("no exchange {}", args.id))?;
    if args.json {
        return print_json(serde_json::to_string_pretty(&detail)?);
    }
    let mut text = show::render(
        &detail.id,
        &detail.outcome,
        &detail.request,
        detail.response.as_ref(),
        detail.connection.as_ref(),
    );
    text.push_str(&trail::render(&detail.governance));
    print(&text)
}

fn replay(config: &Config, args: &ReplayArgs) -> anyhow::Result<()> {
    let reader = open_reader(config)?;
    let detail = reader
        .exchange(&args.id)?
        .ok_or_else(|| anyhow!("no exchange {}", args.id))?;
    print(&timeline::render(&detail.request, detail.response.as_ref()))
}

fn export(config: &Config, args: &ExportArgs) -> anyhow::Result<()> {
    let reader = open_reader(config)?;
    let filter = args.filter.to_filter(args.limit);
    match args.format {
        ExportFormat::Jsonl => export_jsonl(&reader, &filter),
    }
}

fn export_jsonl(reader: &AuditReader, filter: &ExchangeFilter) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    // The store's callback can only fail with an AuditError: a write failure stops the walk with
    // one, and is kept here to be reported as what it is.
    let mut write_error: Option<io::Error> = None;
    let walked = reader.for_each_exchange(filter, |detail| {
        let written = serde_json::to_string(&detail)
            .map_err(io::Error::from)
            .and_then(|json| writeln!(out, "{}", text::json_terminal_safe(json)));
        written.map_err(|error| {
            let stop = AuditError::Io {
                path: PathBuf::from("<stdout>"),
                source: io::Error::from(error.kind()),
            };
            write_error = Some(error);
            stop
        })
    });
    match write_error {
        Some(error) => finish_output(Err(error)),
        None => {
            walked?;
            finish_output(out.flush())
        }
    }
}

/// Print JSON to stdout, escaped so it cannot drive a terminal it is printed on.
fn print_json(json: String) -> anyhow::Result<()> {
    print(&format!("{}\n", text::json_terminal_safe(json)))
}

/// Print to stdout; a reader that went away (`| head`) is not an error.
fn print(text: &str) -> anyhow::Result<()> {
    finish_output(io::stdout().lock().write_all(text.as_bytes()))
}

fn finish_output(written: io::Result<()>) -> anyhow::Result<()> {
    match written {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => bail!("writing to stdout: {error}"),
        Ok(()) => Ok(()),
    }
}
