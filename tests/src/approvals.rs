//! Support for the approval tests: a daemon whose approve rule names a group of real unprivileged
//! approvers (and admits an admin group to its socket), the official SDK call it holds, and the
//! `warden approvals` CLI run as root or as one of those users.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;

use crate::client::{Client, ClientOutput, RunningClient};
use crate::daemon::DaemonBuilder;
use crate::env::E2e;
use crate::policy::{chat_request, PolicyAgent, SdkCall, REQUEST_ENV, SDK_CHAT};
use crate::unix_user::{UnixGroup, UnixUser};
use crate::wait;

/// The approve rule every approval test's daemon runs with.
pub const RULE: &str = "chat-needs-review";

/// How long a pending approval may take to show up once the SDK call was started.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(20);

/// The people of an approval test. Fields drop in order: users before their groups.
#[derive(Debug)]
pub struct People {
    /// In the admin group and the approvers' group.
    pub alice: UnixUser,
    /// In the admin group only: may reach the socket, may not decide.
    pub mallory: UnixUser,
    /// `[admin] group`.
    pub admins: UnixGroup,
    /// The rule's `approvers = ["group:…"]`.
    pub secops: UnixGroup,
}

impl People {
    pub fn create() -> Self {
        let admins = UnixGroup::create("wadm");
        let secops = UnixGroup::create("wsec");
        let alice = UnixUser::create("walice", &[&admins, &secops]);
        let mallory = UnixUser::create("wmal", &[&admins]);
        Self {
            alice,
            mallory,
            admins,
            secops,
        }
    }
}

/// An approve rule naming `approvers` with `timeout`, for chat completions.
pub fn approve_rule(approvers: &str, timeout: &str) -> String {
    format!(
        "[[rule]]\nname = {RULE:?}\naction = \"approve\"\napprovers = [{approvers:?}]\ntimeout = {timeout:?}\n[rule.match]\nendpoint = [\"chat.completions\"]\n"
    )
}

#[derive(Debug)]
pub struct ApprovalAgent {
    pub agent: PolicyAgent,
    pub people: People,
    e2e: E2e,
}

impl ApprovalAgent {
    /// `None` where end-to-end tests cannot run. The rule waits `timeout` for a decision by
    /// the secops group; `configure` may add to the daemon.
    pub fn start(
        name: &str,
        timeout: &str,
        configure: impl FnOnce(DaemonBuilder) -> DaemonBuilder,
    ) -> Option<Self> {
        let e2e = crate::env::require_kernel()?;
        let people = People::create();
        let rule = approve_rule(&format!("group:{}", people.secops.name), timeout);
        let admin = format!("[admin]\ngroup = {:?}\n", people.admins.name);
        let agent = PolicyAgent::start(name, |daemon, _| {
            configure(
                daemon
                    .policy_file("review.toml", &rule)
                    .extra_config(&admin),
            )
        })?;
        // The approvers' CLI reads the config and reaches the socket in the daemon's tempdir.
        let config = agent.fx.daemon.config_path();
        let dir = config.parent().expect("the config is in the daemon's dir");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).expect("chmod daemon dir");
        fs::set_permissions(config, fs::Permissions::from_mode(0o644)).expect("chmod config");
        Some(Self { agent, people, e2e })
    }

    /// The SDK's chat completion with `prompt`, started from the agent cgroup (as root).
    pub fn spawn_chat(&self, prompt: &str, client_timeout: Option<f64>) -> RunningClient {
        let request = chat_request("gpt-4o-mini", prompt);
        let mut client = Client::new([
            self.agent.python.as_os_str(),
            OsStr::new("-c"),
            OsStr::new(SDK_CHAT),
        ])
        .in_cgroup(&self.agent.fx.agent)
        .hosts(&self.agent.fx.hosts)
        .trust(&self.agent.fx.daemon.trust_bundle())
        .env(REQUEST_ENV, request.to_string())
        .timeout(Duration::from_secs(120));
        if let Some(seconds) = client_timeout {
            client = client.env("WARDEN_TEST_TIMEOUT", seconds.to_string());
        }
        client.spawn()
    }

    /// The SDK's chat completion with `prompt`, from the agent cgroup, running as `user`.
    pub fn spawn_chat_as(
        &self,
        user: &UnixUser,
        prompt: &str,
    ) -> (tempfile::TempDir, RunningClient) {
        let (dir, bundle) = crate::audit::world_readable_copy(&self.agent.fx.daemon.trust_bundle());
        let mut argv: Vec<std::ffi::OsString> =
            user.setpriv().into_iter().map(Into::into).collect();
        argv.extend([
            self.agent.python.clone().into_os_string(),
            "-c".into(),
            SDK_CHAT.into(),
        ]);
        let running = Client::new(argv)
            .in_cgroup(&self.agent.fx.agent)
            .hosts(&self.agent.fx.hosts)
            .trust(&bundle)
            .env(REQUEST_ENV, chat_request("gpt-4o-mini", prompt).to_string())
            .timeout(Duration::from_secs(120))
            .spawn();
        (dir, running)
    }

    /// `warden approvals ARGS` as root.
    pub fn cli(&self, args: &[&str]) -> ClientOutput {
        self.agent.fx.daemon.cli("approvals", args)
    }

    /// `warden approvals ARGS` as `user`.
    pub fn cli_as(&self, user: &UnixUser, args: &[&str]) -> ClientOutput {
        self.warden_as(user, "approvals", args)
    }

    /// `warden SUBCOMMAND --config FILE ARGS` as `user`.
    pub fn warden_as(&self, user: &UnixUser, subcommand: &str, args: &[&str]) -> ClientOutput {
        let mut argv: Vec<String> = user.setpriv();
        argv.push(self.e2e.warden_bin.display().to_string());
        argv.push(subcommand.into());
        argv.push("--config".into());
        argv.push(self.agent.fx.daemon.config_path().display().to_string());
        argv.extend(args.iter().map(|a| a.to_string()));
        Client::new(argv).timeout(Duration::from_secs(30)).run()
    }

    /// `warden approvals watch --json` as `user`, running.
    pub fn watch_as(&self, user: &UnixUser) -> RunningClient {
        let mut argv: Vec<String> = user.setpriv();
        argv.push(self.e2e.warden_bin.display().to_string());
        argv.extend(["approvals", "--config"].map(String::from));
        argv.push(self.agent.fx.daemon.config_path().display().to_string());
        argv.extend(["watch", "--json"].map(String::from));
        Client::new(argv).timeout(Duration::from_secs(120)).spawn()
    }

    /// `approvals list --json` (as root), parsed.
    pub fn pending(&self) -> Vec<Value> {
        list(&self.cli(&["list", "--json"]))
    }

    /// `approvals list --all --json` (as root), parsed.
    pub fn all(&self) -> Vec<Value> {
        list(&self.cli(&["list", "--all", "--json"]))
    }

    /// Waits for a pending approval whose id is not in `known`; adds it and returns it.
    pub fn wait_for_pending(&self, known: &mut BTreeSet<String>) -> Value {
        let found = wait::until("a new pending approval", PENDING_TIMEOUT, || {
            self.pending()
                .into_iter()
                .find(|a| a["id"].as_str().is_some_and(|id| !known.contains(id)))
        });
        known.insert(id(&found).to_owned());
        found
    }

    /// Waits for the held client to finish; its printed result.
    pub fn finish(&self, running: RunningClient) -> SdkCall {
        SdkCall::parse(running.wait())
    }

    /// The state of approval `id` in `list --all`.
    pub fn state_of(&self, id: &str) -> Value {
        self.all()
            .into_iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("approval {id} is not in `approvals list --all`"))
    }
}

pub fn id(approval: &Value) -> &str {
    approval["id"].as_str().expect("an approval has an id")
}

fn list(out: &ClientOutput) -> Vec<Value> {
    out.assert_success();
    match serde_json::from_str(out.stdout.trim()) {
        Ok(Value::Array(list)) => list,
        _ => panic!("`approvals list --json` printed no JSON array\n{out}"),
    }
}

/// Asserts `out` failed and its stderr says `needle`.
pub fn assert_refused(out: &ClientOutput, needle: &str) {
    assert!(
        !out.status.success() && out.stderr.contains(needle),
        "expected a refusal saying {needle:?}\n{out}"
    );
}

/// Opens `WARDEN_TEST_HELD` TLS connections to api.openai.com from one process (asyncio, raw
/// HTTP/1.1 over TLS), sends a chat completion on each, prints `sent N` once all are written,
/// and then waits (for the test to kill it).
pub const HOLD_MANY: &str = r#"
import asyncio, json, os, resource, ssl
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
n = int(os.environ["WARDEN_TEST_HELD"])
ctx = ssl.create_default_context()
body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hold me"}]}).encode()
head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
        "Content-Type: application/json\r\nAuthorization: Bearer sk-test\r\n"
        "Content-Length: %d\r\n\r\n" % len(body)).encode()

async def one():
    reader, writer = await asyncio.open_connection(
        "api.openai.com", 443, ssl=ctx, server_hostname="api.openai.com")
    writer.write(head + body)
    await writer.drain()
    return reader, writer

async def main():
    held = []
    while len(held) < n:
        batch = min(100, n - len(held))
        held += await asyncio.gather(*[one() for _ in range(batch)])
    print("sent", len(held), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"#;
