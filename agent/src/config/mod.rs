//! Typed configuration (TOML): defaults, validation with errors that name file, line and key.
//!
//! ```toml
//! state_dir = "/var/lib/warden"               # CA and the audit store
//! [proxy]
//! listen_port = 15443                         # on 127.0.0.1 and ::1
//! intercept_ports = "all"                     # or a list: destination ports redirected from selected cgroups
//! tls_ports = [443]                           # redirected ports where only TLS is accepted
//! intercept_hosts = ["api.openai.com"]        # TLS server names that are decrypted; "*.x.com" allowed
//! resolve_intercepted_hosts = true            # learn their addresses by DNS too (against domain fronting)
//! drain_timeout_secs = 10                     # how long shutdown waits for open connections
//! fail_mode = "closed"                        # "closed": agents cannot bypass a stopped Warden; "open"
//! pin_dir = "/sys/fs/bpf/warden"              # where the programs' links and maps are pinned (bpffs)
//! [select]
//! cgroups = ["/system.slice/agent.service"]   # cgroup2 paths; descendants included
//! units = ["billing-agent.service"]           # systemd unit names, resolved to their cgroups
//! [upstream]
//! response_timeout_secs = 600                 # the most an upstream may take to send its response headers
//! idle_timeout_secs = 600                     # the longest silence in a response body before it is cut
//! [[upstream.override]]                       # send one host's traffic elsewhere
//! host = "api.openai.com"
//! address = "127.0.0.2:8443"
//! ca_file = "/path/to/extra-ca.pem"           # extra roots trusted for this upstream (optional)
//! [[account]]                                 # service-account names for workloads
//! name = "billing-agent"
//! unit = "billing-agent.service"              # or exactly one of: cgroup, uid, exe
//! [audit]
//! retention_days = 90                         # absent: records are kept forever
//! max_body_bytes = 16777216                   # bodies recorded up to this size each
//! sync = "interval"                           # fsync commits within sync_interval_ms; "commit": each one
//! sync_interval_ms = 100
//! [policy]
//! dir = "/etc/warden/policies"                # every *.toml file in it is a policy file
//! max_inspect_bytes = 16777216                # larger bodies are refused when a content rule applies
//! [metrics]
//! listen = "127.0.0.1:9464"                   # Prometheus /metrics; "" turns it off
//! [admin]
//! group = "warden-approvers"                  # admin socket 0660 for this group (approvers)
//! [approvals]
//! webhook = "https://hooks.example/warden"    # JSON POST (Slack-style `text`) per held request
//! [api]                                       # HTTPS API + console behind OIDC (api.rs)
//! listen = "127.0.0.1:9443"
//! [limits]                                    # timeouts, connection caps, body memory (limits.rs)
//! max_connections_per_cgroup = 4096
//! [[sink]]                                    # ship the audit records (sinks.rs)
//! name = "siem"
//! kind = "file"
//! path = "/var/log/warden/audit.jsonl"
//! [anomaly]                                   # per-identity baselines and detectors (anomaly.rs)
//! baseline_days = 14
//! ```
//!
//! This module holds the typed model and loading; `locate` maps key paths to source lines for
//! error messages and `validate` holds the rules a parsed config must satisfy.
pub mod anomaly;
pub mod api;
mod approvals;
pub mod credentials;
mod identity;
mod limits;
pub(crate) mod locate;
mod policy;
pub mod ports;
mod proxy;
pub mod sink_otlp;
pub mod sink_syslog;
pub mod sinks;
mod validate;

#[cfg(test)]
mod tests;

use std::{
    fmt, fs, io,
    net::SocketAddr,
    path::{Path, PathBuf},
};

pub use api::{ApiConfig, ApiOidcConfig, ApiRolesConfig};
pub use approvals::{AdminConfig, ApprovalsConfig};
pub use identity::{IdentityConfig, KubernetesIdentityConfig};
pub use limits::LimitsConfig;
use locate::{line_of, Locator};
pub use policy::PolicyConfig;
pub use ports::InterceptPorts;
pub use proxy::{FailMode, ProxyConfig};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/warden/warden.toml";
pub const DEFAULT_POLICY_DIR: &str = "/etc/warden/policies";
/// `[audit] sync_interval_ms` by default: commits are fsynced within 100 ms.
pub const DEFAULT_AUDIT_SYNC_INTERVAL_MS: u64 = 100;

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub state_dir: PathBuf,
    pub proxy: ProxyConfig,
    pub select: SelectConfig,
    pub upstream: UpstreamConfig,
    pub audit: AuditConfig,
    pub policy: PolicyConfig,
    pub metrics: MetricsConfig,
    #[serde(rename = "account")]
    pub accounts: Vec<AccountConfig>,
    pub admin: AdminConfig,
    pub approvals: ApprovalsConfig,
    /// `[[credential]]`: keys Warden holds and injects (see [`credentials`]).
    #[serde(rename = "credential")]
    pub credential_entries: Vec<credentials::CredentialConfig>,
    pub credentials: credentials::CredentialsConfig,
    /// `[limits]`: what one client may hold of the daemon.
    pub limits: LimitsConfig,
    /// `[api]`: the HTTPS admin API and web console, behind OIDC.
    pub api: ApiConfig,
    /// `[identity]`: verification of the identities workloads assert (`identity.rs`).
    pub identity: IdentityConfig,
    /// `[[sink]]`: where the audit records are shipped (`sinks.rs`).
    #[serde(rename = "sink")]
    pub sinks: Vec<sinks::SinkConfig>,
    /// `[anomaly]`: per-identity baselines and the detectors (`anomaly.rs`).
    pub anomaly: anomaly::AnomalyConfig,
}

/// The audit store (`state_dir/audit.db`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Records older than this many days are pruned (the chain stays verifiable). Absent: kept forever.
    pub retention_days: Option<u32>,
    /// Request and response bodies are recorded up to this many bytes each (the rest is marked truncated).
    pub max_body_bytes: u64,
    /// When a committed record is forced to disk (see [`AuditSync`]).
    pub sync: AuditSync,
    /// With `sync = "interval"`: the longest a commit waits for its fsync.
    pub sync_interval_ms: u64,
}

/// `[audit] sync`: every record is committed before its request is forwarded either way; this says
/// when the commit is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSync {
    /// Within `sync_interval_ms`: a crash of Warden loses nothing, a power loss at most that window.
    #[default]
    Interval,
    /// At every commit: nothing is lost even to power loss; each request waits for an fsync.
    Commit,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: None,
            max_body_bytes: 16 * 1024 * 1024,
            sync: AuditSync::default(),
            sync_interval_ms: DEFAULT_AUDIT_SYNC_INTERVAL_MS,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` that serves `/metrics`; empty turns metrics off.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9464".to_string(),
        }
    }
}

impl MetricsConfig {
    /// The address to serve on; `None` when metrics are off. Validated at load.
    pub fn address(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectConfig {
    pub cgroups: Vec<String>,
    pub units: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    #[serde(rename = "override")]
    pub overrides: Vec<UpstreamOverride>,
    /// An upstream that sends no response headers within this many seconds gets a 504.
    pub response_timeout_secs: u64,
    /// A response body that sends nothing for this many seconds is cut (a stalled stream).
    pub idle_timeout_secs: u64,
}

/// The upstream timeouts' default: the official SDKs' own default timeout, so that Warden never
/// cuts a slow answer a client would still wait for.
pub const DEFAULT_UPSTREAM_TIMEOUT_SECS: u64 = 600;

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            overrides: Vec::new(),
            response_timeout_secs: DEFAULT_UPSTREAM_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_UPSTREAM_TIMEOUT_SECS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOverride {
    pub host: String,
    pub address: SocketAddr,
    pub ca_file: Option<PathBuf>,
}

/// Names a workload: exactly one selector (unit, cgroup, uid, exe) is set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    pub unit: Option<String>,
    pub cgroup: Option<String>,
    pub uid: Option<u32>,
    pub exe: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("/var/lib/warden"),
            proxy: ProxyConfig::default(),
            select: SelectConfig::default(),
            upstream: UpstreamConfig::default(),
            audit: AuditConfig::default(),
            policy: PolicyConfig::default(),
            metrics: MetricsConfig::default(),
            accounts: Vec::new(),
            admin: AdminConfig::default(),
            approvals: ApprovalsConfig::default(),
            credential_entries: Vec::new(),
            credentials: Default::default(),
            limits: LimitsConfig::default(),
            api: ApiConfig::default(),
            identity: IdentityConfig::default(),
            sinks: Vec::new(),
            anomaly: anomaly::AnomalyConfig::default(),
        }
    }
}

/// Where in which file a problem is; the line is absent when the key came from the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{location}: {message}")]
    Syntax { location: Location, message: String },
    #[error("{location}: unknown key `{key}` in {table} (expected {expected})")]
    UnknownKey {
        location: Location,
        key: String,
        table: String,
        expected: String,
    },
    #[error("{location}: {key}: {reason}")]
    Invalid {
        location: Location,
        key: String,
        reason: String,
    },
}

impl Config {
    /// None → DEFAULT_CONFIG_PATH, and if that file is absent the built-in defaults apply.
    /// Some(path) → the file must exist (a typo must not silently run with defaults).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => load_file(path, true),
            None => load_file(Path::new(DEFAULT_CONFIG_PATH), false),
        }
    }

    /// Parses and validates `text`; `file` only names the source in errors.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| ConfigError::Syntax {
            location: Location {
                file: file.to_path_buf(),
                line: e.span().map(|span| line_of(text, span.start)),
            },
            message: e.message().trim_end().replace('\n', "; "),
        })?;
        // toml_edit keeps source spans, so it points errors at lines; serde (via `toml`) builds the
        // typed model. Both parse the same text, so a span from one names a place in the other.
        let locate = Locator::new(text, &doc, file);
        let mut config: Config = toml::from_str(text).map_err(|e| locate.serde_error(&e))?;
        config.normalize();
        config.policy.dir_configured = doc.get("policy").and_then(|p| p.get("dir")).is_some();
        config
            .validate()
            .map_err(|(path, reason)| ConfigError::Invalid {
                location: locate.location(locate.span_of(&path)),
                key: path.to_string(),
                reason,
            })?;
        Ok(config)
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.state_dir.join("ca")
    }

    pub fn admin_socket_path(&self) -> PathBuf {
        self.state_dir.join("admin.sock")
    }

    /// Case-insensitive exact match, or a `*.example.com` entry matching one or more labels below it.
    pub fn is_intercepted_host(&self, server_name: &str) -> bool {
        // Called per connection: compare in place rather than lowercasing copies.
        let name = server_name.trim_end_matches('.');
        self.proxy
            .intercept_hosts
            .iter()
            .any(|entry| match entry.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') && name.len() > suffix.len() => name
                    .get(name.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix)),
                _ => name.eq_ignore_ascii_case(entry),
            })
    }

    /// `[upstream] idle_timeout_secs` as a duration.
    pub fn upstream_idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.upstream.idle_timeout_secs)
    }

    pub fn upstream_override(&self, host: &str) -> Option<&UpstreamOverride> {
        let host = host.trim_end_matches('.');
        self.upstream
            .overrides
            .iter()
            .find(|o| o.host.eq_ignore_ascii_case(host))
    }

    /// Host names compare case-insensitively everywhere; store them lowercase once.
    fn normalize(&mut self) {
        for host in &mut self.proxy.intercept_hosts {
            *host = host.to_ascii_lowercase();
        }
        for o in &mut self.upstream.overrides {
            o.host = o.host.to_ascii_lowercase();
        }
    }
}

fn load_file(path: &Path, required: bool) -> Result<Config, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Config::from_toml(&text, path),
        Err(e) if !required && e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "no config file; using built-in defaults");
            Ok(Config::default())
        }
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}
