//! Reads a daemon's audit store the way an operator does (`warden sessions …` and `warden audit
//! verify`, their JSON parsed), and sets up the agents whose exchanges the audit tests look up.

pub mod connections;
pub mod curl;
pub mod gated;
pub mod scripts;
pub mod sqlite;
pub mod time;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::agent_fixture::AgentFixture;
use crate::cgroup::CgroupGuard;
use crate::client::{Client, ClientOutput};
use crate::daemon::{Daemon, DaemonBuilder};
use crate::env::E2e;
use crate::fake_upstream::FakeUpstream;
use crate::hosts::HostsFile;
use crate::wait;

/// The API key every audit test's client sends: recognisable, so that a test can look for it.
pub const FAKE_KEY: &str = "sk-test-AUDITKEY-1234567890abcdef";
/// The part of [`FAKE_KEY`] that must never be stored or logged.
pub const KEY_SECRET: &str = "AUDITKEY";
/// The last four characters of [`FAKE_KEY`], which the authorization fingerprint keeps.
pub const KEY_LAST4: &str = "cdef";

/// The outcome `sessions list` shows for an exchange that has no response record.
pub const INCOMPLETE: &str = "incomplete";

/// How long a response record may take to be committed once the client is done.
pub const RECORD_TIMEOUT: Duration = Duration::from_secs(20);

/// The audit store, where the contract puts it: `state_dir/audit.db`.
pub fn db_path(daemon: &Daemon) -> PathBuf {
    daemon.state_dir().join("audit.db")
}

/// An agent cgroup selected by a daemon that sends api.openai.com to `upstream` (the usual
/// [`AgentFixture`], with an upstream configured by the test). `configure` adds to the daemon's
/// config; it gets the agent cgroup, already selected.
pub fn fixture(
    e2e: &E2e,
    name: &str,
    upstream: FakeUpstream,
    configure: impl FnOnce(DaemonBuilder, &CgroupGuard) -> DaemonBuilder,
) -> AgentFixture {
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let agent = CgroupGuard::new(name);
    let builder = Daemon::builder(e2e).select(&agent).upstream(&upstream);
    let daemon = configure(builder, &agent).start();
    AgentFixture {
        daemon,
        agent,
        hosts,
        upstream,
    }
}

/// `python -c SCRIPT` as the agent, with [`FAKE_KEY`] as `OPENAI_API_KEY`.
pub fn sdk_client(fx: &AgentFixture, python: &Path, script: &str) -> Client {
    fx.client([python.as_os_str(), OsStr::new("-c"), OsStr::new(script)])
        .env("OPENAI_API_KEY", FAKE_KEY)
}

/// Runs `warden sessions|audit … ARGS`; panics, showing the output, unless it succeeds.
fn cli_ok(daemon: &Daemon, subcommand: &str, args: &[&str]) -> ClientOutput {
    let out = daemon.cli(subcommand, args);
    assert!(
        out.status.success(),
        "`warden {subcommand} {}` failed\n{out}",
        args.join(" ")
    );
    out
}

/// `warden sessions list --json ARGS`: the exchanges, newest first.
pub fn list(daemon: &Daemon, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["list", "--json"];
    argv.extend_from_slice(args);
    let out = cli_ok(daemon, "sessions", &argv);
    match serde_json::from_str(out.stdout.trim()) {
        Ok(Value::Array(items)) => items,
        _ => panic!("`sessions list --json` did not print a JSON array\n{out}"),
    }
}

/// The `id` of each exchange, in order.
pub fn ids(exchanges: &[Value]) -> Vec<String> {
    exchanges
        .iter()
        .map(|e| {
            e["id"]
                .as_str()
                .unwrap_or_else(|| panic!("an exchange without a string id: {e}"))
                .to_owned()
        })
        .collect()
}

/// The ids `warden sessions list --json ARGS` returns, as a set.
pub fn list_ids(daemon: &Daemon, args: &[&str]) -> BTreeSet<String> {
    ids(&list(daemon, args)).into_iter().collect()
}

/// `warden sessions show ID --json`, unparsed (to search the text itself).
pub fn show_raw(daemon: &Daemon, id: &str) -> ClientOutput {
    cli_ok(daemon, "sessions", &["show", id, "--json"])
}

/// `warden sessions show ID --json`, parsed.
pub fn show(daemon: &Daemon, id: &str) -> Value {
    let out = show_raw(daemon, id);
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("`sessions show --json` printed unexpected JSON ({e})\n{out}"))
}

/// `warden sessions replay ID`: the timeline text.
pub fn replay(daemon: &Daemon, id: &str) -> String {
    cli_ok(daemon, "sessions", &["replay", id]).stdout
}

/// The timeline lines of a replay, `+1.234s text`: (offset in seconds, the text after it).
pub fn replay_lines(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix('+')?;
            let (number, after) = rest.split_once('s')?;
            let offset = number.parse().ok()?;
            Some((offset, after.trim().to_owned()))
        })
        .collect()
}

/// `warden sessions export ARGS --format jsonl`: one JSON object per line, oldest first.
pub fn export(daemon: &Daemon, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["export"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--format", "jsonl"]);
    let out = cli_ok(daemon, "sessions", &argv);
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| match serde_json::from_str(line) {
            Ok(value @ Value::Object(_)) => value,
            _ => panic!("an export line is not a JSON object: {line:?}\n{out}"),
        })
        .collect()
}

/// `warden audit verify`, whatever its result.
pub fn verify(daemon: &Daemon) -> ClientOutput {
    daemon.cli("audit", &["verify"])
}

/// Panics unless `warden audit verify` exits 0 and says the chain is ok.
pub fn assert_verifies(daemon: &Daemon) -> ClientOutput {
    let out = verify(daemon);
    assert!(
        out.status.success() && out.stdout.contains("audit chain ok"),
        "`warden audit verify` should pass\n{out}"
    );
    out
}

fn finished(exchange: &Value) -> bool {
    exchange["outcome"]
        .as_str()
        .is_some_and(|o| o != INCOMPLETE)
}

/// Waits until the store lists exactly `n` exchanges, all with a response record; returns them
/// (newest first). Panics if there are more than `n`.
pub fn wait_for_finished(daemon: &Daemon, n: usize) -> Vec<Value> {
    wait::until(
        &format!("{n} finished exchange(s) in the audit store"),
        RECORD_TIMEOUT,
        || {
            let exchanges = list(daemon, &["--limit", "1000"]);
            assert!(
                exchanges.len() <= n,
                "expected {n} exchange(s), the store lists {}: {exchanges:#?}",
                exchanges.len()
            );
            (exchanges.len() == n && exchanges.iter().all(finished)).then_some(exchanges)
        },
    )
}

/// Waits for the one exchange not in `known` to finish; returns its `sessions list` object and
/// adds its id to `known`. Panics if more than one new exchange shows up.
pub fn wait_for_new_exchange(daemon: &Daemon, known: &mut BTreeSet<String>) -> Value {
    let exchange = wait::until("a new finished exchange", RECORD_TIMEOUT, || {
        let new: Vec<Value> = list(daemon, &["--limit", "1000"])
            .into_iter()
            .filter(|e| e["id"].as_str().is_some_and(|id| !known.contains(id)))
            .collect();
        assert!(new.len() <= 1, "expected one new exchange: {new:#?}");
        new.into_iter().find(finished)
    });
    known.insert(ids(std::slice::from_ref(&exchange)).remove(0));
    exchange
}

/// The value of request header `name` (case-insensitive) in a `sessions show` object.
pub fn request_header<'a>(detail: &'a Value, name: &str) -> Option<&'a str> {
    detail["request"]["headers"]
        .as_array()?
        .iter()
        .find(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .and_then(|pair| pair[1].as_str())
}

/// Asserts the authorization header was recorded as a fingerprint of [`FAKE_KEY`]: its last four
/// characters, never the key.
pub fn assert_authorization_fingerprint(detail: &Value) {
    let fingerprint = request_header(detail, "authorization")
        .unwrap_or_else(|| panic!("no authorization header recorded: {detail:#}"));
    assert!(
        !fingerprint.contains(KEY_SECRET) && !fingerprint.contains(FAKE_KEY),
        "the authorization header holds the key: {fingerprint:?}"
    );
    assert!(
        fingerprint.contains(KEY_LAST4),
        "the fingerprint keeps the key's last 4 characters ({KEY_LAST4}): {fingerprint:?}"
    );
}

/// Asserts [`KEY_SECRET`] appears in none of the store's files (database, WAL, shared memory) and
/// not in the daemon's log.
pub fn assert_key_not_stored(daemon: &Daemon) {
    for path in sqlite::store_files(&db_path(daemon)) {
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        assert!(
            !contains(&bytes, KEY_SECRET.as_bytes()),
            "the API key is stored in {}",
            path.display()
        );
    }
    assert!(
        !daemon.log_text().contains(KEY_SECRET),
        "the API key is in the daemon log"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The identity an exchange was recorded with (`request.identity` of `sessions show`) is process
/// `pid` running `exe` as root in `cgroup`.
pub fn assert_identity(detail: &Value, pid: u32, exe: &Path, cgroup: &str) {
    let identity = &detail["request"]["identity"];
    let expect = |field: &str, wanted: Value| {
        assert_eq!(
            identity[field], wanted,
            "request.identity.{field} in\n{detail:#}"
        );
    };
    expect("pid", pid.into());
    expect("exe", exe.display().to_string().into());
    expect("uid", 0.into());
    expect("user", "root".into());
    expect("cgroup", cgroup.into());
}

/// A copy of the daemon's trust bundle that any user can read (the daemon's tempdir is 0700).
pub fn world_readable_copy(bundle: &Path) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("creating a tempdir for the trust bundle");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .expect("making the tempdir traversable");
    let copy = dir.path().join("trust-bundle.pem");
    fs::copy(bundle, &copy).expect("copying the trust bundle");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o644))
        .expect("making the trust bundle readable");
    (dir, copy)
}

/// The first whole number in `text` after `after` (so `record 42 was altered` names 42).
pub fn first_number_after(text: &str, after: &str) -> Option<u64> {
    let start = text.find(after).map_or(0, |i| i + after.len());
    text[start..]
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|token| token.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replay_timeline_lines() {
        let text = "+0.000s request POST /v1/chat/completions model=gpt-4o\n  Say hello\n\
                    +0.105s  Alpha\n+0.210s   Bravo\n+1.234s outcome ok (usage 9/2/11)\n";
        let lines = replay_lines(text);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1], (0.105, "Alpha".to_owned()));
        assert_eq!(lines[2].1, "Bravo");
        assert!(lines[3].1.starts_with("outcome ok"));
    }

    #[test]
    fn finds_the_record_a_message_names() {
        let text = "audit chain broken: record 43 is missing (the chain goes from 42 to 44)";
        assert_eq!(first_number_after(text, "broken"), Some(43));
        let text = "audit chain broken: record 7 (request of exchange ex-01h9) was altered";
        assert_eq!(first_number_after(text, "broken"), Some(7));
        assert_eq!(first_number_after("no numbers", "broken"), None);
    }
}
