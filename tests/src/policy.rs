//! Support for the policy tests: rules as TOML, an agent that calls the official SDK under a policy,
//! and what a policy decision looks like to the SDK, to the fake upstream and in the audit store.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::agent_fixture::AgentFixture;
use crate::audit;
use crate::cgroup::CgroupGuard;
use crate::client::{Client, ClientOutput};
use crate::daemon::DaemonBuilder;
use crate::env::{require_kernel, require_python};
use crate::fake_upstream::FakeUpstream;

/// The `type` of every policy refusal's OpenAI-shaped error.
pub const POLICY_VIOLATION: &str = "policy_violation";

/// How long a reload may take to apply once a file changed or SIGHUP was sent.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// The environment variable that hands [`SDK_CHAT`] its request. Not an argument: Warden records
/// each caller's command line, and the request may hold values a test expects to find nowhere.
pub const REQUEST_ENV: &str = "WARDEN_TEST_REQUEST";

/// A chat completion through the official SDK: `python -c SDK_CHAT` with the JSON object in
/// [`REQUEST_ENV`] as the keyword arguments of `client.chat.completions.create`. Prints one JSON
/// object: pid, exe, `attempts` (HTTP requests the SDK sent, retries included), and either
/// `content` or `error` (the exception's class, status, message, parsed body, attributes, the
/// `x-should-retry` header and the raw body text). The key is `OPENAI_API_KEY` when set, read by
/// the SDK itself as an agent's would be (else `sk-test`); `WARDEN_TEST_TIMEOUT` (seconds), when
/// set, is the client's timeout with no retries: a client that gives up.
pub const SDK_CHAT: &str = r#"
import json, os
import openai
from openai import OpenAI, DefaultHttpxClient

attempts = []
http_client = DefaultHttpxClient(event_hooks={"request": [lambda r: attempts.append(str(r.url))]})
options = {"http_client": http_client}
if "OPENAI_API_KEY" not in os.environ:
    options["api_key"] = "sk-test"
if "WARDEN_TEST_TIMEOUT" in os.environ:
    options["timeout"] = float(os.environ["WARDEN_TEST_TIMEOUT"])
    options["max_retries"] = 0
client = OpenAI(**options)
out = {"pid": os.getpid(), "exe": os.readlink("/proc/self/exe")}
try:
    r = client.chat.completions.create(**json.loads(os.environ["WARDEN_TEST_REQUEST"]))
    out["content"] = r.choices[0].message.content
except openai.APIStatusError as e:
    out["error"] = {
        "class": type(e).__name__, "status": e.status_code, "message": e.message,
        "body": e.body, "code": e.code, "type": e.type, "param": e.param,
        "should_retry": e.response.headers.get("x-should-retry"),
        "raw": e.response.text,
    }
except openai.APIError as e:
    out["error"] = {"class": type(e).__name__, "message": str(e)}
out["attempts"] = len(attempts)
print(json.dumps(out))
"#;

/// A `deny` rule; `match_toml` is the body of its `[rule.match]` table (empty: no table).
pub fn deny_rule(name: &str, message: &str, match_toml: &str) -> String {
    rule(
        name,
        &format!("action = \"deny\"\nmessage = {message:?}\n"),
        match_toml,
    )
}

/// An `approve` rule (approvers `group:secops`, timeout 10m).
pub fn approve_rule(name: &str, match_toml: &str) -> String {
    rule(
        name,
        "action = \"approve\"\napprovers = [\"group:secops\"]\ntimeout = \"10m\"\n",
        match_toml,
    )
}

/// A `mask` rule for `direction` with these built-in recognizers and the default replacement.
pub fn mask_rule(name: &str, direction: &str, recognizers: &[&str]) -> String {
    let recognizers: Vec<String> = recognizers.iter().map(|r| format!("{r:?}")).collect();
    rule(
        name,
        &format!(
            "action = \"mask\"\ndirection = {direction:?}\nrecognizers = [{}]\n",
            recognizers.join(", ")
        ),
        "",
    )
}

fn rule(name: &str, body: &str, match_toml: &str) -> String {
    let mut text = format!("[[rule]]\nname = {name:?}\n{body}");
    if !match_toml.trim().is_empty() {
        text.push_str("[rule.match]\n");
        text.push_str(match_toml.trim());
        text.push('\n');
    }
    text.push('\n');
    text
}

/// The keyword arguments of a one-message chat completion.
pub fn chat_request(model: &str, prompt: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": prompt }] })
}

/// An agent cgroup selected by a daemon that runs under a policy, and the SDK's python.
#[derive(Debug)]
pub struct PolicyAgent {
    pub fx: AgentFixture,
    pub python: PathBuf,
}

impl PolicyAgent {
    /// `None` (the test is skipped) where end-to-end tests cannot run. `configure` adds policy
    /// files (and anything else) to the daemon; it gets the agent cgroup, already selected.
    pub fn start(
        name: &str,
        configure: impl FnOnce(DaemonBuilder, &CgroupGuard) -> DaemonBuilder,
    ) -> Option<Self> {
        Self::with_upstream(name, FakeUpstream::start(), configure)
    }

    pub fn with_upstream(
        name: &str,
        upstream: FakeUpstream,
        configure: impl FnOnce(DaemonBuilder, &CgroupGuard) -> DaemonBuilder,
    ) -> Option<Self> {
        let e2e = require_kernel()?;
        let python = require_python()?;
        let fx = audit::fixture(&e2e, name, upstream, configure);
        Some(Self { fx, python })
    }

    fn sdk(&self, request: &Value) -> Client {
        Client::new([
            self.python.as_os_str(),
            OsStr::new("-c"),
            OsStr::new(SDK_CHAT),
        ])
        .hosts(&self.fx.hosts)
        .env(REQUEST_ENV, request.to_string())
    }

    /// The chat completion `request` (SDK keyword arguments) from the agent cgroup.
    pub fn chat(&self, request: &Value) -> SdkCall {
        self.chat_in(&self.fx.agent, request)
    }

    /// The chat completion `request` from `cgroup` (which the daemon must select).
    pub fn chat_in(&self, cgroup: &CgroupGuard, request: &Value) -> SdkCall {
        let out = self
            .sdk(request)
            .in_cgroup(cgroup)
            .trust(&self.fx.daemon.trust_bundle())
            .run();
        SdkCall::parse(out)
    }

    /// The chat completion `request` from the agent cgroup, python started by `launcher` (a
    /// command that ends by exec'ing the rest of its arguments).
    pub fn chat_launched_by(&self, launcher: &[&OsStr], request: &Value) -> SdkCall {
        let out = self
            .sdk(request)
            .in_cgroup(&self.fx.agent)
            .trust(&self.fx.daemon.trust_bundle())
            .launched_by(launcher)
            .run();
        SdkCall::parse(out)
    }

    /// The chat completion `request` from the agent cgroup, with python running as `nobody`.
    pub fn chat_as_nobody(&self, request: &Value) -> SdkCall {
        let (_dir, bundle) = audit::world_readable_copy(&self.fx.daemon.trust_bundle());
        let as_nobody = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
        .map(OsStr::new);
        let script = [
            self.python.as_os_str(),
            OsStr::new("-c"),
            OsStr::new(SDK_CHAT),
        ];
        let out = Client::new(as_nobody.into_iter().chain(script))
            .in_cgroup(&self.fx.agent)
            .hosts(&self.fx.hosts)
            .env(REQUEST_ENV, request.to_string())
            .trust(&bundle)
            .run();
        SdkCall::parse(out)
    }

    /// `curl` posts a one-message chat completion for `model` from the agent cgroup; returns the
    /// HTTP status (and the output, for messages).
    pub fn curl_chat(&self, model: &str) -> (u16, ClientOutput) {
        let body = chat_request(model, "Say hello").to_string();
        let out = self
            .fx
            .client([
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-w",
                "%{stderr}http_code=%{http_code}\\n",
                "https://api.openai.com/v1/chat/completions",
                "-H",
                "Authorization: Bearer sk-test",
                "-H",
                "content-type: application/json",
                "-d",
                &body,
            ])
            .run();
        out.assert_success();
        (crate::curl::http_code(&out), out)
    }

    /// Asserts the fake upstream has received no request at all.
    pub fn assert_upstream_got_nothing(&self) {
        let requests = self.fx.upstream.requests();
        assert!(
            requests.is_empty(),
            "the upstream received {} request(s): {:?}",
            requests.len(),
            requests
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect::<Vec<_>>()
        );
    }
}

/// What one run of [`SDK_CHAT`] printed.
#[derive(Debug)]
pub struct SdkCall {
    pub printed: Value,
    pub out: ClientOutput,
}

impl SdkCall {
    /// The printed result of an SDK call that must have succeeded.
    pub fn parse(out: ClientOutput) -> Self {
        out.assert_success();
        let printed = out.last_line_json();
        Self { printed, out }
    }

    pub fn pid(&self) -> u32 {
        self.printed["pid"]
            .as_u64()
            .expect("the script prints its pid") as u32
    }

    pub fn error(&self) -> &Value {
        &self.printed["error"]
    }

    /// The call succeeded, in one attempt; returns the reply text.
    pub fn assert_allowed(&self) -> &str {
        assert!(
            self.error().is_null(),
            "the call should have been allowed: {:#}\n{}",
            self.printed,
            self.out
        );
        assert_eq!(self.printed["attempts"], 1, "{:#}", self.printed);
        self.printed["content"]
            .as_str()
            .unwrap_or_else(|| panic!("no reply content: {:#}", self.printed))
    }

    /// The SDK raised `PermissionDeniedError` (HTTP 403) after one attempt, the server having said
    /// `x-should-retry: false`; returns the error's `body` (the `error` object).
    pub fn assert_permission_denied(&self) -> &Value {
        let error = self.error();
        assert_eq!(
            error["class"], "PermissionDeniedError",
            "{:#}\n{}",
            self.printed, self.out
        );
        assert_eq!(error["status"], 403, "{:#}", self.printed);
        assert_eq!(
            error["should_retry"], "false",
            "a policy refusal carries `x-should-retry: false`: {:#}",
            self.printed
        );
        assert_eq!(
            self.printed["attempts"], 1,
            "the SDK must not retry a policy refusal: {:#}",
            self.printed
        );
        &error["body"]
    }

    /// The call was refused by deny rule `rule`: `PermissionDeniedError` carrying the rule's
    /// `message`, and exactly the documented body.
    pub fn assert_denied_by(&self, rule: &str, message: &str) {
        self.assert_permission_denied();
        let error = self.error();
        let raw: Value = serde_json::from_str(error["raw"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("the 403 body is not JSON ({e}): {:#}", self.printed));
        assert_eq!(
            raw,
            json!({"error": {
                "message": message, "type": POLICY_VIOLATION, "param": null, "code": rule,
            }}),
            "{:#}",
            self.printed
        );
        let sdk_message = error["message"].as_str().unwrap_or_default();
        assert!(
            sdk_message.contains(message),
            "the SDK's message carries the rule's: {sdk_message:?}"
        );
        assert_eq!(error["code"], rule, "{:#}", self.printed);
        assert_eq!(error["type"], POLICY_VIOLATION, "{:#}", self.printed);
    }
}

/// Waits for the one exchange not in `known` to be recorded and finished; asserts it was recorded
/// as `denied` with `rule` named in its reason. Returns its `sessions show` object.
pub fn assert_recorded_denial(
    fx: &AgentFixture,
    known: &mut BTreeSet<String>,
    pid: u32,
    rule: &str,
) -> Value {
    let summary = audit::wait_for_new_exchange(&fx.daemon, known);
    assert_eq!(summary["outcome"], "denied", "{summary:#}");
    assert_eq!(summary["pid"], pid, "{summary:#}");
    let id = summary["id"].as_str().expect("an id");
    let detail = audit::show(&fx.daemon, id);
    assert_eq!(detail["request"]["policy"]["rule"], rule, "{detail:#}");
    let reason = detail["response"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(rule),
        "response.reason should name rule {rule}: {detail:#}"
    );
    detail
}

/// `WARDEN_BIN`, for tests that only run the CLI (no root or eBPF needed): `None` (skipped) when
/// it is not set, a failure under `CI=true`.
pub fn warden_bin() -> Option<PathBuf> {
    match std::env::var_os("WARDEN_BIN").map(PathBuf::from) {
        Some(bin) if bin.is_absolute() && bin.is_file() => Some(bin),
        other => {
            let why = format!("WARDEN_BIN ({other:?}) is not an absolute path to a file");
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true and this test cannot run: {why}"
            );
            eprintln!("skipping: {why}");
            None
        }
    }
}

/// Policy text kept outside any policy directory, for links into one.
#[derive(Debug)]
pub struct OutsideFile {
    _dir: TempDir,
    path: PathBuf,
}

impl OutsideFile {
    pub fn new(name: &str, text: &str) -> Self {
        let dir = tempfile::tempdir().expect("creating a tempdir");
        let path = dir.path().join(name);
        let file = Self { _dir: dir, path };
        file.write(text);
        file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the file in place.
    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text)
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.path.display()));
    }
}
