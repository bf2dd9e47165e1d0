//! Revocation, end to end with the official openai Python SDK in a selected cgroup: `warden
//! revoke` cuts a stream in flight (the SDK raises) and records it, refuses the identity's new
//! requests with 403 `identity_revoked`, persists across a daemon restart, is listed by `warden
//! revoke --list`, is a chain record naming who and why, and `warden restore` lifts it.
//!
//! Mid-stream is made deterministic by the upstream's gate: the stream sends its first event and
//! holds the rest until the test opens the gate, which it does only after the client has ended.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::{self, sqlite};
use warden_tests::daemon::Account;
use warden_tests::fake_upstream::{FakeUpstreamBuilder, GATE_SAFETY_TIMEOUT};
use warden_tests::{
    require_kernel, require_python, sdk_scripts, wait, AgentFixture, ClientOutput, FakeUpstream,
};

const ACCOUNT: &str = "billing-agent";
const SELECTOR: &str = "account:billing-agent";

/// A streamed chat completion that reports its first event, then reads on; it prints whether the
/// stream completed or which exception ended it, and what arrived before.
const STREAM_UNTIL_CUT: &str = r#"
import json, os
from openai import OpenAI

client = OpenAI(api_key="sk-test", max_retries=0)
out = {"pid": os.getpid(), "exe": os.readlink("/proc/self/exe"), "chunks": 0}
try:
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
    )
    for chunk in stream:
        if out["chunks"] == 0:
            print("warden-test-first-event", flush=True)
        out["chunks"] += 1
    out["completed"] = True
except Exception as e:
    out["completed"] = False
    out["error"] = type(e).__module__ + "." + type(e).__name__
    out["message"] = str(e)
print(json.dumps(out))
"#;

/// One non-streamed chat completion; prints its content, or the SDK's status error.
const CHAT_OR_ERROR: &str = r#"
import json, os
import openai
from openai import OpenAI

client = OpenAI(api_key="sk-test", max_retries=0)
out = {"pid": os.getpid(), "exe": os.readlink("/proc/self/exe")}
try:
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    out.update(ok=True, content=r.choices[0].message.content)
except openai.APIStatusError as e:
    out.update(
        ok=False, error=type(e).__name__, status=e.status_code, code=e.code, type=e.type,
        message=e.message, should_retry=e.response.headers.get("x-should-retry"),
    )
print(json.dumps(out))
"#;

struct Agent {
    fx: AgentFixture,
    python: PathBuf,
}

impl Agent {
    /// The agent cgroup is the account `billing-agent`.
    fn start(name: &str, upstream: FakeUpstreamBuilder) -> Option<Self> {
        let e2e = require_kernel()?;
        let python = require_python()?;
        let fx = audit::fixture(&e2e, name, upstream.start(), |daemon, agent| {
            daemon.account(Account::cgroup(ACCOUNT, agent.path()))
        });
        Some(Agent { fx, python })
    }

    fn chat(&self) -> Value {
        let out = self.python_client(CHAT_OR_ERROR).run();
        out.assert_success();
        out.json()
    }

    fn python_client(&self, script: &str) -> warden_tests::Client {
        self.fx
            .client([self.python.as_os_str(), "-c".as_ref(), script.as_ref()])
    }

    /// `warden SUBCOMMAND ARGS`, which must succeed; its stdout.
    fn cli_ok(&self, subcommand: &str, args: &[&str]) -> String {
        let out = self.fx.daemon.cli(subcommand, args);
        assert!(
            out.status.success(),
            "`warden {subcommand} {args:?}` failed\n{out}"
        );
        out.stdout
    }

    /// `warden SUBCOMMAND ARGS`, which must fail; its stderr.
    fn cli_err(&self, subcommand: &str, args: &[&str]) -> String {
        let out = self.fx.daemon.cli(subcommand, args);
        assert!(
            !out.status.success(),
            "`warden {subcommand} {args:?}` should fail\n{out}"
        );
        out.stderr
    }

    fn listed(&self) -> Vec<Value> {
        let text = self.cli_ok("revoke", &["--list", "--json"]);
        match serde_json::from_str(text.trim()) {
            Ok(Value::Array(items)) => items,
            _ => panic!("`revoke --list --json` did not print a JSON array: {text}"),
        }
    }

    /// The chain's governance records, as an investigator reads them with sqlite3.
    fn governance(&self) -> Vec<Value> {
        let db = audit::db_path(&self.fx.daemon);
        let rows = sqlite::query(
            &db,
            "SELECT body FROM records WHERE kind = 'governance' ORDER BY seq",
        );
        rows.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

fn assert_revoked_refusal(printed: &Value) {
    assert_eq!(printed["ok"], false, "{printed:#}");
    assert_eq!(printed["error"], "PermissionDeniedError", "{printed:#}");
    assert_eq!(printed["status"], 403, "{printed:#}");
    assert_eq!(printed["code"], "identity_revoked", "{printed:#}");
    assert_eq!(printed["should_retry"], "false", "{printed:#}");
}

fn assert_root(actor: &Value) {
    assert_eq!(actor["uid"], 0, "{actor}");
    assert_eq!(actor["user"], "root", "{actor}");
}

#[test]
fn revoking_cuts_a_stream_in_flight_and_records_who_and_why() {
    let Some(agent) = Agent::start("revoke-stream", FakeUpstream::builder().gate_after(1)) else {
        return;
    };
    let upstream = &agent.fx.upstream;
    // Its deadline comes before the gate's safety timeout: a stream the upstream released by
    // itself cannot pass for one that Warden cut.
    let deadline = GATE_SAFETY_TIMEOUT - Duration::from_secs(5);
    let mut client = agent
        .python_client(STREAM_UNTIL_CUT)
        .timeout(deadline)
        .spawn();
    let first = client.wait_for_stdout_line(deadline, |l| l == sdk_scripts::FIRST_EVENT_LINE);
    let held = wait::within(deadline, || (upstream.held_at_gate() > 0).then_some(()));
    if first.is_none() || held.is_none() {
        upstream.open_gate();
        panic!("the stream never got going\n{}", client.wait());
    }

    let said = agent.cli_ok("revoke", &[SELECTOR, "--reason", "incident 42: key leaked"]);
    assert!(said.contains("revoked account:billing-agent"), "{said}");
    let out: ClientOutput = client.wait();
    upstream.open_gate();
    out.assert_success();
    let printed = out.last_line_json();
    assert_eq!(
        printed["completed"], false,
        "the stream went on after the revocation\n{out}"
    );
    assert!(
        printed["chunks"].as_u64().is_some_and(|n| n >= 1),
        "{printed:#}"
    );
    let error = printed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("RemoteProtocolError") || error.contains("APIConnectionError"),
        "the SDK saw the stream cut: {printed:#}"
    );
    let pid = printed["pid"].as_u64().expect("a pid") as u32;
    let line = agent.fx.daemon.wait_for_exchange(pid);
    let logged = line.str("error").unwrap_or_default();
    assert!(
        logged.contains("identity revoked (account:billing-agent by root: incident 42"),
        "{line}"
    );

    // On record: outcome revoked, with the events that had arrived and the revocation's reason.
    let exchanges = audit::wait_for_finished(&agent.fx.daemon, 1);
    assert_eq!(exchanges[0]["outcome"], "revoked", "{:#}", exchanges[0]);
    let id = exchanges[0]["id"].as_str().expect("an id");
    let detail = audit::show(&agent.fx.daemon, id);
    let response = &detail["response"];
    assert_eq!(response["outcome"], "revoked", "{detail:#}");
    assert_eq!(response["status"], 200, "{detail:#}");
    assert!(
        response["events"].as_array().is_some_and(|e| !e.is_empty()),
        "what arrived before the cut is recorded: {detail:#}"
    );
    assert!(
        response["reason"]
            .as_str()
            .is_some_and(|r| r.contains("incident 42")),
        "{detail:#}"
    );

    // The chain names who revoked what, and why.
    let governance = agent.governance();
    assert_eq!(governance.len(), 1, "{governance:#?}");
    let event = &governance[0]["event"];
    assert_eq!(event["type"], "revoked", "{event}");
    assert_eq!(event["selector"], SELECTOR, "{event}");
    assert_eq!(event["reason"], "incident 42: key leaked", "{event}");
    assert_root(&event["by"]);
    audit::assert_verifies(&agent.fx.daemon);
}

#[test]
fn a_revoked_identity_is_refused_across_a_restart_until_restored() {
    let Some(mut agent) = Agent::start("revoke-refuse", FakeUpstream::builder()) else {
        return;
    };
    // Another identity's revocation leaves this one alone.
    agent.cli_ok("revoke", &["account:research-agent"]);
    let served = agent.chat();
    assert_eq!(served["ok"], true, "{served:#}");

    let said = agent.cli_ok("revoke", &[SELECTOR, "--reason", "incident 43"]);
    assert!(said.contains("revoked account:billing-agent"), "{said}");
    let forwarded = agent.fx.upstream.requests().len();
    let refused = agent.chat();
    assert_revoked_refusal(&refused);
    assert_eq!(
        agent.fx.upstream.requests().len(),
        forwarded,
        "a revoked identity's request must not reach the upstream"
    );

    // Twice: the first revocation, its author and reason, stand.
    let again = agent.cli_ok("revoke", &[SELECTOR, "--reason", "another"]);
    assert!(
        again.contains("already revoked") && again.contains("incident 43"),
        "{again}"
    );
    let text = agent.cli_ok("revoke", &["--list"]);
    assert!(
        text.contains(SELECTOR) && text.contains("incident 43"),
        "{text}"
    );
    let listed = agent.listed();
    let selectors: Vec<&str> = listed
        .iter()
        .filter_map(|r| r["selector"].as_str())
        .collect();
    assert_eq!(
        selectors,
        ["account:research-agent", SELECTOR],
        "{listed:#?}"
    );
    assert_eq!(listed[1]["reason"], "incident 43");
    assert_root(&listed[1]["by"]);

    // A restart: the list is read back from the state directory.
    agent.fx.daemon.stop(libc::SIGTERM);
    let file = agent.fx.daemon.state_dir().join("revocations.json");
    let mode = std::fs::metadata(&file).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "{}", file.display());
    agent.fx.daemon.restart();
    assert_eq!(agent.listed().len(), 2);
    assert_revoked_refusal(&agent.chat());

    let said = agent.cli_ok("restore", &[SELECTOR]);
    assert!(said.contains("restored account:billing-agent"), "{said}");
    let served = agent.chat();
    assert_eq!(served["ok"], true, "{served:#}");
    assert_eq!(served["content"], agent.fx.upstream.reply());

    // Clear errors: restoring what is not in force, selectors that are not selectors.
    let error = agent.cli_err("restore", &[SELECTOR]);
    assert!(
        error.contains("no revocation of account:billing-agent is in force"),
        "{error}"
    );
    let error = agent.cli_err("revoke", &["team:billing"]);
    assert!(
        error.contains("unknown identity selector prefix \"team\""),
        "{error}"
    );
    let error = agent.cli_err("revoke", &["uid:alice"]);
    assert!(error.contains("takes a number"), "{error}");

    // Every refusal is on record as revoked; the chain holds who did what; verify passes.
    let revoked = audit::list(&agent.fx.daemon, &["--outcome", "revoked"]);
    assert_eq!(revoked.len(), 2, "{revoked:#?}");
    let ok = audit::list(&agent.fx.daemon, &["--outcome", "ok"]);
    assert_eq!(ok.len(), 2, "{ok:#?}");
    let events: Vec<(String, String)> = agent
        .governance()
        .iter()
        .map(|r| {
            assert_root(&r["event"]["by"]);
            let field = |k: &str| r["event"][k].as_str().unwrap_or_default().to_owned();
            (field("type"), field("selector"))
        })
        .collect();
    let expected = [
        ("revoked", "account:research-agent"),
        ("revoked", SELECTOR),
        ("restored", SELECTOR),
    ];
    assert_eq!(
        events,
        expected.map(|(t, s)| (t.to_owned(), s.to_owned())),
        "a second revoke of the same selector adds no record"
    );
    audit::assert_verifies(&agent.fx.daemon);
}

#[test]
fn revoking_ends_a_request_still_waiting_for_its_answer() {
    // The upstream answers long after the client's deadline: only the revocation can end it.
    let upstream = FakeUpstream::builder().response_delay(Duration::from_secs(60));
    let Some(agent) = Agent::start("revoke-waiting", upstream) else {
        return;
    };
    let client = agent
        .python_client(CHAT_OR_ERROR)
        .timeout(Duration::from_secs(20))
        .spawn();
    wait::until(
        "the request to reach the upstream",
        Duration::from_secs(15),
        || (agent.fx.upstream.requests().len() == 1).then_some(()),
    );
    agent.cli_ok("revoke", &[SELECTOR, "--reason", "incident 44"]);
    let out = client.wait();
    out.assert_success();
    assert_revoked_refusal(&out.json());

    let exchanges = audit::wait_for_finished(&agent.fx.daemon, 1);
    assert_eq!(exchanges[0]["outcome"], "revoked", "{:#}", exchanges[0]);
    audit::assert_verifies(&agent.fx.daemon);
}

#[test]
fn revoking_resets_an_http2_stream_in_flight() {
    let Some(agent) = Agent::start("revoke-h2", FakeUpstream::builder().gate_after(1)) else {
        return;
    };
    let upstream = &agent.fx.upstream;
    let deadline = GATE_SAFETY_TIMEOUT - Duration::from_secs(5);
    let mut argv = audit::curl::stream_chat("gpt-4o", "Say hello", deadline.as_secs() as u32);
    argv.push("--http2".to_owned());
    let mut curl = agent.fx.client(argv).timeout(deadline).spawn();
    let first = curl.wait_for_stdout_line(deadline, |l| l.starts_with("data:"));
    if first.is_none() {
        upstream.open_gate();
        panic!("the stream never got going\n{}", curl.wait());
    }
    agent.cli_ok("revoke", &[SELECTOR]);
    let out = curl.wait();
    upstream.open_gate();
    // 92: "HTTP/2 stream was not closed cleanly": the stream was reset, not ended.
    assert_eq!(out.code(), Some(92), "{out}");
    assert!(out.stderr.contains("HTTP/2 stream"), "{out}");
    let exchanges = audit::wait_for_finished(&agent.fx.daemon, 1);
    assert_eq!(exchanges[0]["outcome"], "revoked", "{:#}", exchanges[0]);
}
