//! Support for the credential custody tests: secret files kept as root keeps them, config tables
//! for `[[credential]]`, the official SDK presenting a chosen key, and a search for a key in
//! everything Warden writes or answers.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use crate::cgroup::CgroupGuard;
use crate::daemon::Daemon;
use crate::policy::{chat_request, PolicyAgent, REQUEST_ENV, SDK_CHAT};
use crate::prometheus::Exposition;

/// The credential every custody test configures.
pub const CREDENTIAL: &str = "openai-test";
/// The account the agent cgroup is named as, and the credential serves.
pub const ACCOUNT: &str = "custodied-agent";
/// What the agent's environment holds instead of a key.
pub const PLACEHOLDER: &str = "warden-placeholder";

/// A directory of secret files (0700), as `/etc/warden/credentials` would be.
#[derive(Debug)]
pub struct SecretDir {
    dir: TempDir,
}

impl SecretDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("creating the secrets directory");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
            .expect("making the secrets directory private");
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces file `name` with `key` and `mode` at once (a new file renamed over the old one,
    /// as `install -m 600` or a configuration tool deploys it).
    pub fn write(&self, name: &str, key: &str, mode: u32) -> PathBuf {
        let path = self.path(name);
        let staged = self.path(&format!(".{name}.new"));
        fs::write(&staged, format!("{key}\n")).expect("writing a secret file");
        fs::set_permissions(&staged, fs::Permissions::from_mode(mode)).expect("chmod");
        fs::rename(&staged, &path).expect("renaming the secret file into place");
        path
    }
}

impl Default for SecretDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A `[[credential]]` table for api.openai.com with its secret in `secret_file`.
pub fn credential_toml(name: &str, secret_file: &Path, identity: &[&str]) -> String {
    format!(
        "[[credential]]\nname = {name:?}\nhost = \"api.openai.com\"\nsecret_file = {:?}\nidentity = {identity:?}\n",
        secret_file.display().to_string()
    )
}

/// A `[[credential]]` table for api.openai.com reading systemd credential `name`.
pub fn systemd_credential_toml(name: &str, identity: &[&str]) -> String {
    format!(
        "[[credential]]\nname = {name:?}\nsystemd_credential = {name:?}\nidentity = {identity:?}\n"
    )
}

/// `[credentials] presented = MODE`.
pub fn presented_toml(mode: &str) -> String {
    format!("[credentials]\npresented = {mode:?}\n")
}

/// The official SDK's chat completion from `cgroup`, presenting `key` (`OPENAI_API_KEY`, as an
/// agent configured with a placeholder would); returns what [`SDK_CHAT`] printed.
pub fn sdk_chat_presenting(agent: &PolicyAgent, cgroup: &CgroupGuard, key: &str) -> Value {
    let out = crate::client::Client::new([
        agent.python.as_os_str(),
        OsStr::new("-c"),
        OsStr::new(SDK_CHAT),
    ])
    .in_cgroup(cgroup)
    .hosts(&agent.fx.hosts)
    .trust(&agent.fx.daemon.trust_bundle())
    .env("OPENAI_API_KEY", key)
    .env(
        REQUEST_ENV,
        chat_request("gpt-4o-mini", "Say hello").to_string(),
    )
    .run();
    out.assert_success();
    out.last_line_json()
}

/// Asserts the SDK raised `AuthenticationError` (401 `invalid_api_key`, `x-should-retry: false`)
/// after one attempt; returns the error's raw body text.
pub fn assert_authentication_error(printed: &Value) -> String {
    let error = &printed["error"];
    assert_eq!(error["class"], "AuthenticationError", "{printed:#}");
    assert_eq!(error["status"], 401, "{printed:#}");
    assert_eq!(error["code"], "invalid_api_key", "{printed:#}");
    assert_eq!(error["type"], "invalid_request_error", "{printed:#}");
    assert_eq!(error["should_retry"], "false", "{printed:#}");
    assert_eq!(printed["attempts"], 1, "{printed:#}");
    error["raw"].as_str().unwrap_or_default().to_owned()
}

/// The hex SHA-256 of `text`, by `sha256sum` (how an operator matches a fingerprint to a key).
pub fn sha256_hex(text: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running sha256sum");
    child
        .stdin
        .take()
        .expect("sha256sum's stdin")
        .write_all(text.as_bytes())
        .expect("writing to sha256sum");
    let out = child.wait_with_output().expect("sha256sum's output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum printed a digest")
        .to_owned()
}

/// Asserts `secret` is in none of: the daemon's log, any file under its state directory (audit
/// store, WAL, CA), `warden status --json`, every exchange's `sessions show --json`, the metrics
/// (when the daemon serves them), and `also` (e.g. error bodies the agent got).
pub fn assert_secret_nowhere(daemon: &Daemon, secret: &str, also: &[&str]) {
    assert!(
        !daemon.log_text().contains(secret),
        "the secret is in the daemon log"
    );
    for path in files_under(daemon.state_dir()) {
        let bytes = fs::read(&path).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in {}",
            path.display()
        );
    }
    let status = daemon.cli("status", &["--json"]);
    status.assert_success();
    assert!(!status.stdout.contains(secret), "the secret is in status");
    let text_status = daemon.cli("status", &[]);
    assert!(
        !text_status.stdout.contains(secret),
        "the secret is in status"
    );
    for id in crate::audit::list_ids(daemon, &["--limit", "1000"]) {
        let shown = crate::audit::show_raw(daemon, &id);
        assert!(
            !shown.stdout.contains(secret),
            "the secret is in exchange {id}"
        );
    }
    if let Some(url) = daemon.metrics_url_if_served() {
        let metrics = Exposition::scrape(&url);
        assert!(
            !metrics.text().contains(secret),
            "the secret is in the metrics"
        );
    }
    for text in also {
        assert!(!text.contains(secret), "the secret is in {text:?}");
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => files.extend(files_under(&path)),
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
    files
}
