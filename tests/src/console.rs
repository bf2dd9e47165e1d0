//! Support for the API and console tests: a daemon with `[api]` behind the fake OpenID provider,
//! an approve rule whose approvers are an OIDC group, the people of the provider, the API called
//! with curl (a real HTTPS client trusting Warden's CA), and the chain's governance records.
use std::{ffi::OsStr, net::TcpListener, path::PathBuf, process::Command, time::Duration};

use serde_json::Value;

use crate::{
    audit,
    client::{Client, RunningClient},
    fake_oidc::{FakeIdp, TokenSpec, User, DEFAULT_CLIENT_ID},
    policy::{chat_request, PolicyAgent, SdkCall, REQUEST_ENV, SDK_CHAT},
    wait,
};

/// The approve rule of every console test.
pub const RULE: &str = "chat-needs-review";
/// The OIDC groups `[api.roles]` maps.
pub const AUDITORS: &str = "security-auditors";
pub const APPROVERS: &str = "llm-approvers";
pub const ADMINS: &str = "warden-admins";

/// How long the API may take to reach the provider at start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The people the fake provider signs in: an approver, an auditor, an admin, someone with no
/// role, and an approver whose user name is the agent's own (`root`: the SDK runs as root).
pub mod people {
    pub const ANN_APPROVER: &str = "ann";
    pub const AUDREY_AUDITOR: &str = "audrey";
    pub const ADA_ADMIN: &str = "ada";
    pub const EVE_NO_ROLE: &str = "eve";
    pub const ROOT_APPROVER: &str = "root";
}

pub struct ConsoleAgent {
    pub agent: PolicyAgent,
    pub idp: FakeIdp,
    pub port: u16,
}

/// An API answer: status, content type and body.
#[derive(Debug)]
pub struct ApiReply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl ApiReply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the API answered no JSON ({e}): {self:?}"))
    }

    /// Asserts a refusal: `status`, as problem+json whose detail says `needle`.
    pub fn assert_problem(&self, status: u16, needle: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        let problem = self.json();
        assert_eq!(problem["status"], status, "{self:?}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(needle),
            "expected {needle:?} in the detail: {self:?}"
        );
    }
}

/// A free loopback port (bound then released: the daemon binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl ConsoleAgent {
    /// `None` where end-to-end tests cannot run.
    pub fn start(name: &str) -> Option<Self> {
        let idp = FakeIdp::start();
        for (subject, groups) in [
            (people::ANN_APPROVER, vec![APPROVERS]),
            (people::AUDREY_AUDITOR, vec![AUDITORS]),
            (people::ADA_ADMIN, vec![ADMINS]),
            (people::EVE_NO_ROLE, vec!["staff"]),
            (people::ROOT_APPROVER, vec![APPROVERS]),
        ] {
            idp.add_user(User::new(subject, &groups));
        }
        let port = free_port();
        let api = format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\nserver_name = \"localhost\"\n\
             [api.oidc]\nissuer = {issuer:?}\nclient_id = {DEFAULT_CLIENT_ID:?}\n\
             [api.roles]\nauditor = [{AUDITORS:?}]\napprover = [{APPROVERS:?}]\nadmin = [{ADMINS:?}]\n",
            issuer = idp.issuer(),
        );
        let rule = format!(
            "[[rule]]\nname = {RULE:?}\naction = \"approve\"\napprovers = [\"oidc-group:{APPROVERS}\"]\ntimeout = \"90s\"\n[rule.match]\nendpoint = [\"chat.completions\"]\n"
        );
        let agent = PolicyAgent::start(name, |daemon, _| {
            daemon.policy_file("review.toml", &rule).extra_config(&api)
        })?;
        let console = Self { agent, idp, port };
        console.wait_until_ready();
        Some(console)
    }

    /// `https://localhost:PORT`: the console's origin (its leaf is for `localhost`).
    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.agent.fx.daemon.ca_pem()
    }

    /// A valid token for `subject`, for the API (aud = the client id).
    pub fn token_for(&self, subject: &str) -> String {
        self.idp.token(&TokenSpec::for_user(subject))
    }

    /// `method path` with `bearer` (if any) and a JSON `body` (if any), through curl.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> ApiReply {
        let url = format!("{}{path}", self.origin());
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "30", "-X", method])
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", self.port)])
            .arg("--cacert")
            .arg(self.ca_pem())
            .args(["-w", "\n%{http_code} %{content_type}"]);
        if let Some(token) = bearer {
            curl.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        if let Some(body) = body {
            curl.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body.to_string(),
            ]);
        }
        let output = curl.arg(&url).output().expect("run curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "curl {method} {url} failed: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (body, trailer) = text.rsplit_once('\n').unwrap_or(("", &text));
        let (status, content_type) = trailer.split_once(' ').unwrap_or((trailer, ""));
        ApiReply {
            status: status.parse().unwrap_or(0),
            content_type: content_type.to_string(),
            body: body.to_string(),
        }
    }

    fn wait_until_ready(&self) {
        let token = self.token_for(people::AUDREY_AUDITOR);
        wait::until(
            "the API reached the identity provider",
            READY_TIMEOUT,
            || (self.call("GET", "/api/v1/me", Some(&token), None).status != 503).then_some(()),
        );
    }

    /// The SDK's chat completion with `prompt` from the agent cgroup (as root); held by the rule.
    pub fn spawn_chat(&self, prompt: &str) -> RunningClient {
        let fx = &self.agent.fx;
        Client::new([
            self.agent.python.as_os_str(),
            OsStr::new("-c"),
            OsStr::new(SDK_CHAT),
        ])
        .in_cgroup(&fx.agent)
        .hosts(&fx.hosts)
        .trust(&fx.daemon.trust_bundle())
        .env(REQUEST_ENV, chat_request("gpt-4o-mini", prompt).to_string())
        .timeout(Duration::from_secs(120))
        .spawn()
    }

    /// Waits for the held client to finish; its printed result.
    pub fn finish(&self, running: RunningClient) -> SdkCall {
        SdkCall::parse(running.wait())
    }

    /// The first pending approval, as the API lists it to `token`'s holder.
    pub fn wait_for_pending(&self, token: &str) -> Value {
        wait::until("a pending approval", Duration::from_secs(30), || {
            let reply = self.call("GET", "/api/v1/approvals", Some(token), None);
            assert_eq!(reply.status, 200, "{reply:?}");
            reply.json()["approvals"]
                .as_array()
                .and_then(|list| list.first().cloned())
        })
    }

    /// The first governance event of `kind` in the chain.
    pub fn governance_event(&self, kind: &str) -> Value {
        let events = self.governance();
        events
            .iter()
            .find(|e| e["type"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} record in {events:#?}"))
    }

    /// Every governance record's event in the chain, oldest first.
    pub fn governance(&self) -> Vec<Value> {
        let db = audit::db_path(&self.agent.fx.daemon);
        let rows = audit::sqlite::query(
            &db,
            "SELECT body FROM records WHERE kind = 'governance' ORDER BY seq",
        );
        rows.lines()
            .map(|line| {
                let record: Value =
                    serde_json::from_str(line).expect("a governance record is JSON");
                record["event"].clone()
            })
            .collect()
    }
}

/// Asserts that `record` (a governance event, or a revocation listed by the API) was done by the
/// provider's `subject`: its `by.oidc` names the subject and the email the fake provider gives it.
pub fn assert_done_by(record: &Value, subject: &str) {
    let person = &record["by"]["oidc"];
    assert_eq!(person["subject"], subject, "{record:#}");
    assert_eq!(
        person["email"],
        format!("{subject}@example.test"),
        "{record:#}"
    );
}
