//! `warden policy`: check policy files, and try them on a request before the daemon enforces them.
use std::{
    fmt::Write as _,
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::Cli;
use crate::{
    audit::record::IdentitySnapshot,
    identity::selector::IdentitySelector,
    openai::{
        endpoint::EndpointKind,
        request::{normalized_body, RequestFields},
    },
    policy::{self, active::CompiledPolicy, check::check_request, Policy, PolicyError},
};

#[path = "policy_report.rs"]
mod report;
pub use report::{evaluate, TestReport};

/// `policy test` input errors exit with this code, like clap's usage errors.
const BAD_INPUT: i32 = 2;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file or directory: prints `ok: N rules in M files`, or every problem of
    /// every file as FILE:LINE: KEY: REASON and exits non-zero.
    Check(CheckArgs),
    /// Evaluate a request body against the policy as the daemon would: prints the decision, every
    /// matching rule, the mask counts and the masked body. Exits 0 whatever the decision, and 2
    /// when an input (policy, request, options) is invalid.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A policy file, or a directory whose `*.toml` files are checked together (rule names must be
    /// unique across them). Default: `[policy] dir` of the configuration.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The request's JSON body (what the agent would POST); `-` reads it from stdin.
    #[arg(long, value_name = "FILE.json")]
    pub request: PathBuf,
    /// The API the request calls: chat.completions, responses, embeddings, completions, files,
    /// batches, models or other.
    #[arg(long, value_name = "E", default_value = "chat.completions")]
    pub endpoint: EndpointKind,
    /// The caller, one field per flag: account:NAME, unit:NAME, user:NAME, uid:N, cgroup:PATH,
    /// exe:PATH, pid:N, sa:NAMESPACE/NAME. Fields not given are unknown (uid is then 4294967295,
    /// which no `uid:` selector of a real user matches).
    #[arg(long = "identity", value_name = "SEL")]
    pub identity: Vec<IdentitySelector>,
    /// Evaluate as if the body named this model (it replaces the body's `model`).
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// The TLS server name the request goes to.
    #[arg(long, value_name = "HOST", default_value = "api.openai.com")]
    pub host: String,
    /// A policy file or directory. Default: `[policy] dir` of the configuration.
    #[arg(long, value_name = "PATH")]
    pub policy: Option<PathBuf>,
    /// Print one JSON object: decision, rule, message, matched, masked, body.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &PolicyArgs) -> anyhow::Result<()> {
    match &args.command {
        PolicyCommand::Check(check) => run_check(cli, check),
        PolicyCommand::Test(test) => match run_test(cli, test) {
            Ok(output) => {
                print!("{output}");
                Ok(())
            }
            Err(error) => {
                // main maps every error to exit 1; bad input is 2 here, as for usage errors.
                eprintln!("warden: policy test: {error}");
                std::process::exit(BAD_INPUT)
            }
        },
    }
}

fn run_check(cli: &Cli, args: &CheckArgs) -> anyhow::Result<()> {
    // A path given on the command line needs no configuration, so a broken config cannot stop it.
    let (path, may_be_absent) = match &args.path {
        Some(path) => (path.clone(), false),
        None => {
            let config = cli.load_config()?;
            (config.policy.dir, !config.policy.dir_configured)
        }
    };
    if may_be_absent && !path.exists() {
        // The daemon starts without a policy here, so this is not an error; it is said plainly.
        println!(
            "no policy: {} does not exist (the built-in default; no config file sets [policy] dir), \
             so no request is checked against any rule",
            path.display()
        );
        return Ok(());
    }
    // The configured directory is a directory even when it is absent (and then an error).
    let loaded = match args.path.is_some() {
        true => load_policy(&path),
        false => policy::load_dir(&path),
    };
    match loaded {
        Ok(policy) => {
            println!("{}", summary(&policy, &path));
            Ok(())
        }
        Err(error) => {
            let problems = error.problems();
            for problem in problems {
                eprintln!("{problem}");
            }
            bail!(
                "{} in {}",
                count(problems.len(), "problem", "problems"),
                path.display()
            )
        }
    }
}

/// A directory is loaded whole; anything else as one file (a missing file is an error).
fn load_policy(path: &Path) -> Result<Policy, PolicyError> {
    match path.is_dir() {
        true => policy::load_dir(path),
        false => policy::load_file(path),
    }
}

fn summary(policy: &Policy, path: &Path) -> String {
    let rules = count(policy.rules.len(), "rule", "rules");
    let files = count(policy.files.len(), "file", "files");
    match policy.files.is_empty() {
        true => format!("ok: {rules} in {files} (no *.toml in {})", path.display()),
        false => format!("ok: {rules} in {files}"),
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("{0}")]
    Config(String),
    /// Every problem on its own line (FILE:LINE: KEY: REASON), then how many, as `check` prints.
    #[error("{}", policy_problems(.path, .problems))]
    Policy {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("--request {source_name}: {reason}")]
    Request { source_name: String, reason: String },
    #[error("--identity {given}: {reason}")]
    Identity { given: String, reason: String },
}

fn policy_problems(path: &Path, problems: &[String]) -> String {
    let mut text: String = problems.iter().map(|p| format!("{p}\n")).collect();
    let _ = write!(
        text,
        "{} in {}",
        count(problems.len(), "problem", "problems"),
        path.display()
    );
    text
}

/// Loads and compiles the policy, evaluates the request, and renders the report.
fn run_test(cli: &Cli, args: &TestArgs) -> Result<String, TestError> {
    let (path, may_be_absent) = match &args.policy {
        Some(path) => (path.clone(), false),
        None => {
            let config = cli
                .load_config()
                .map_err(|error| TestError::Config(describe(&error)))?;
            (config.policy.dir, !config.policy.dir_configured)
        }
    };
    let policy_error = |problems: Vec<String>| TestError::Policy {
        path: path.clone(),
        problems,
    };
    // The absent built-in default means no rules, as in the daemon; a path given or configured
    // must exist.
    let policy = if may_be_absent && !path.exists() {
        eprintln!("note: {} does not exist: no rules apply", path.display());
        Policy::default()
    } else {
        load_policy(&path).map_err(|error| {
            policy_error(error.problems().iter().map(|p| p.to_string()).collect())
        })?
    };
    let compiled =
        CompiledPolicy::compile(policy).map_err(|error| policy_error(vec![error.to_string()]))?;
    let caller = caller_identity(&args.identity)?;
    let bytes = read_request(&args.request)?;
    let body = parse_request(&bytes, &source_name(&args.request), args.model.as_deref())?;
    // The daemon's intake: a body a rule must read but cannot (duplicated or mistyped fields) is
    // judged without it, and refused with 400 unless the policy refuses it anyway.
    if compiled.policy.reads_bodies() {
        if let Err(why) = normalized_body(&bytes) {
            let checked = check_request(
                &compiled,
                &caller,
                &args.host,
                args.endpoint,
                &RequestFields::default(),
                None,
            );
            if checked.refusal.is_none() {
                return Err(TestError::Request {
                    source_name: source_name(&args.request),
                    reason: format!("the daemon refuses this body with 400 invalid_body: it cannot inspect it ({why}), and a policy rule must inspect it"),
                });
            }
            return Ok(render(&report::report(checked, body), args.json));
        }
    }
    let report = evaluate(&compiled, &caller, &args.host, args.endpoint, body);
    Ok(render(&report, args.json))
}

fn render(report: &TestReport, json: bool) -> String {
    match json {
        true => format!(
            "{}\n",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        false => report.render_text(),
    }
}

/// The error and its causes on one line, skipping causes whose text is already there.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain().map(ToString::to_string) {
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

fn source_name(path: &Path) -> String {
    match path == Path::new("-") {
        true => "stdin".to_string(),
        false => path.display().to_string(),
    }
}

fn read_request(path: &Path) -> Result<Vec<u8>, TestError> {
    let mut bytes = Vec::new();
    let read = match path == Path::new("-") {
        true => std::io::stdin().read_to_end(&mut bytes).map(|_| ()),
        false => std::fs::read(path).map(|read| bytes = read),
    };
    read.map_err(|error| TestError::Request {
        source_name: source_name(path),
        reason: format!("cannot read: {error}"),
    })?;
    Ok(bytes)
}

/// The caller the `--identity` fields describe. Each field is a value, not a pattern, and may be
/// given once.
pub fn caller_identity(fields: &[IdentitySelector]) -> Result<IdentitySnapshot, TestError> {
    let mut caller = IdentitySnapshot {
        // (uid_t)-1 is never a user's uid: an unspecified uid matches no `uid:` selector.
        uid: u32::MAX,
        ..IdentitySnapshot::default()
    };
    let mut seen = Vec::new();
    for field in fields {
        let error = |reason: &str| TestError::Identity {
            given: field.to_string(),
            reason: reason.to_string(),
        };
        if seen.contains(&field.prefix()) {
            return Err(error(&format!(
                "{}: is given more than once; a caller has one",
                field.prefix()
            )));
        }
        seen.push(field.prefix());
        let value = |slot: &mut Option<String>, glob: &crate::identity::selector::Glob| {
            let literal = glob.literal().ok_or_else(|| {
                error("describes the caller, so it is a value, not a pattern: no * or ?")
            })?;
            *slot = Some(literal.to_string());
            Ok::<(), TestError>(())
        };
        match field {
            IdentitySelector::Account(glob) => value(&mut caller.account, glob)?,
            IdentitySelector::Unit(glob) => value(&mut caller.unit, glob)?,
            IdentitySelector::User(glob) => value(&mut caller.user, glob)?,
            IdentitySelector::Cgroup(glob) => value(&mut caller.cgroup, glob)?,
            IdentitySelector::Exe(glob) => value(&mut caller.exe, glob)?,
            IdentitySelector::ServiceAccount(glob) => value(&mut caller.k8s_sa, glob)?,
            IdentitySelector::Uid(uid) => caller.uid = *uid,
            IdentitySelector::Pid(pid) => caller.pid = *pid,
        }
    }
    Ok(caller)
}

/// The request body as JSON, with `model` replaced when `--model` is given.
pub fn parse_request(
    bytes: &[u8],
    source_name: &str,
    model: Option<&str>,
) -> Result<Value, TestError> {
    let error = |reason: String| TestError::Request {
        source_name: source_name.to_string(),
        reason,
    };
    let mut body: Value =
        serde_json::from_slice(bytes).map_err(|e| error(format!("not valid JSON: {e}")))?;
    let Value::Object(fields) = &mut body else {
        return Err(error(format!(
            "expected a JSON object (an OpenAI request body), found {}",
            json_kind(&body)
        )));
    };
    if let Some(model) = model {
        fields.insert("model".to_string(), Value::String(model.to_string()));
    }
    Ok(body)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
