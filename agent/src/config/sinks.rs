//! `[[sink]]`: where the audit records are shipped, with each kind's keys and the rules they obey.
//!
//! ```toml
//! [[sink]]
//! name = "siem"                        # unique; names the cursor file, logs and metric labels
//! kind = "webhook"                     # file | webhook | splunk_hec | syslog | otlp
//! events = ["exchanges", "alerts"]     # default: every class but connections
//! include_bodies = false               # masked bodies and stream events; default false
//! batch_max = 500                      # records per delivery at most
//! flush_interval_ms = 1000             # how often the store is polled for new records
//! retry_max_backoff_secs = 300         # the longest wait between two attempts
//! start = "beginning"                  # a new sink's first record: "beginning" | "now"
//! url = "https://siem.example/warden"  # the kind's own keys follow
//! secret_file = "/etc/warden/sink-siem.key"
//! ```
//!
//! Adding a kind: one variant in [`SinkKindConfig`] (its struct deserializes the kind's own keys,
//! with `deny_unknown_fields`), and one match arm in `sinks::transport_for`.
use std::{collections::HashSet, path::PathBuf};

use serde::Deserialize;

use super::locate::KeyPath;

pub const DEFAULT_BATCH_MAX: usize = 500;
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_RETRY_MAX_BACKOFF_SECS: u64 = 300;
/// `file`: rotate at 100 MiB, keep 5 rotated files.
pub const DEFAULT_FILE_MAX_BYTES: u64 = 100 * 1024 * 1024;
pub const DEFAULT_FILE_KEEP: u32 = 5;
pub const DEFAULT_HTTP_TIMEOUT_SECS: u64 = 10;

/// One `[[sink]]`: the keys every kind has, and the kind's own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SinkConfig {
    // Flattened in this order: the common keys are taken first, and the kind's struct (which
    // refuses unknown keys) sees only what is left.
    #[serde(flatten)]
    pub common: SinkCommonConfig,
    #[serde(flatten)]
    pub kind: SinkKindConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SinkCommonConfig {
    pub name: String,
    #[serde(default = "default_events", deserialize_with = "keyed_events")]
    pub events: Vec<SinkEventClass>,
    #[serde(default, deserialize_with = "keyed_include_bodies")]
    pub include_bodies: bool,
    #[serde(default = "default_batch_max", deserialize_with = "keyed_batch_max")]
    pub batch_max: usize,
    #[serde(
        default = "default_flush_interval_ms",
        deserialize_with = "keyed_flush_interval_ms"
    )]
    pub flush_interval_ms: u64,
    #[serde(
        default = "default_retry_max_backoff_secs",
        deserialize_with = "keyed_retry_max_backoff_secs"
    )]
    pub retry_max_backoff_secs: u64,
    #[serde(default, deserialize_with = "keyed_start")]
    pub start: SinkStart,
}

/// The event classes a sink's `events` names (`sinks::EventClass` is the same set; config does
/// not depend on sinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkEventClass {
    Exchanges,
    Connections,
    Approvals,
    Alerts,
    Admin,
}

/// Where a sink with no cursor yet (a new one) starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkStart {
    /// Every record still in the store is shipped.
    #[default]
    Beginning,
    /// Only records committed after the sink first starts.
    Now,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkKindConfig {
    File(FileSinkConfig),
    Webhook(WebhookSinkConfig),
    SplunkHec(SplunkHecSinkConfig),
    Syslog(super::sink_syslog::SyslogSinkConfig),
    Otlp(super::sink_otlp::OtlpSinkConfig),
}

/// `kind = "file"`: JSON lines, fsynced before the cursor moves, rotated by size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    /// Rotate when the file would grow past this; 0: never rotate.
    #[serde(
        default = "default_file_max_bytes",
        deserialize_with = "keyed_max_bytes"
    )]
    pub max_bytes: u64,
    /// Rotated files kept (`PATH.1` newest … `PATH.KEEP`).
    #[serde(default = "default_file_keep", deserialize_with = "keyed_keep")]
    pub keep: u32,
}

/// `kind = "webhook"`: a signed JSON POST per batch, or Slack messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    pub url: String,
    #[serde(default, deserialize_with = "keyed_format")]
    pub format: WebhookFormat,
    /// The HMAC-SHA256 key (root-owned, 0600). Required with `format = "json"`.
    pub secret_file: Option<PathBuf>,
    /// Extra roots trusted for this receiver, beside the system's.
    pub ca_file: Option<PathBuf>,
    #[serde(
        default = "default_http_timeout_secs",
        deserialize_with = "keyed_timeout_secs"
    )]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"events":[...]}` per batch, signed.
    #[default]
    Json,
    /// One `{"text": "..."}` per alert, approval or admin event (a Slack incoming webhook).
    Slack,
}

/// `kind = "splunk_hec"`: Splunk's HTTP Event Collector.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecSinkConfig {
    /// The collector's base URL (`https://splunk.example:8088`); events go to
    /// `{url}/services/collector/event`.
    pub url: String,
    /// The HEC token (root-owned, 0600).
    pub token_file: PathBuf,
    pub index: Option<String>,
    /// The `host` field of each event; default: this machine's host name.
    pub host: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(
        default = "default_http_timeout_secs",
        deserialize_with = "keyed_timeout_secs"
    )]
    pub timeout_secs: u64,
}

/// Deserializes one key's value with the key's name in front of any error: these tables are
/// flattened, so serde reports their errors at the table, and locate.rs moves them to the key.
macro_rules! keyed {
    ($($function:ident: $key:literal => $type:ty),* $(,)?) => {$(
        fn $function<'de, D: serde::Deserializer<'de>>(value: D) -> Result<$type, D::Error> {
            <$type>::deserialize(value)
                .map_err(|e| serde::de::Error::custom(format!(concat!($key, ": {}"), e)))
        }
    )*};
}

keyed! {
    keyed_events: "events" => Vec<SinkEventClass>,
    keyed_include_bodies: "include_bodies" => bool,
    keyed_batch_max: "batch_max" => usize,
    keyed_flush_interval_ms: "flush_interval_ms" => u64,
    keyed_retry_max_backoff_secs: "retry_max_backoff_secs" => u64,
    keyed_start: "start" => SinkStart,
    keyed_max_bytes: "max_bytes" => u64,
    keyed_keep: "keep" => u32,
    keyed_format: "format" => WebhookFormat,
    keyed_timeout_secs: "timeout_secs" => u64,
}

fn default_events() -> Vec<SinkEventClass> {
    vec![
        SinkEventClass::Exchanges,
        SinkEventClass::Approvals,
        SinkEventClass::Alerts,
        SinkEventClass::Admin,
    ]
}

fn default_batch_max() -> usize {
    DEFAULT_BATCH_MAX
}

fn default_flush_interval_ms() -> u64 {
    DEFAULT_FLUSH_INTERVAL_MS
}

fn default_retry_max_backoff_secs() -> u64 {
    DEFAULT_RETRY_MAX_BACKOFF_SECS
}

fn default_file_max_bytes() -> u64 {
    DEFAULT_FILE_MAX_BYTES
}

fn default_file_keep() -> u32 {
    DEFAULT_FILE_KEEP
}

fn default_http_timeout_secs() -> u64 {
    DEFAULT_HTTP_TIMEOUT_SECS
}

/// The rules every `[[sink]]` obeys; the first broken one, as (key path, reason).
pub(super) fn validate(sinks: &[SinkConfig]) -> Result<(), (KeyPath, String)> {
    let mut names = HashSet::new();
    for (i, sink) in sinks.iter().enumerate() {
        let at = KeyPath::root().key("sink").index(i);
        let common = &sink.common;
        // The name is a file name (its cursor) and a metric label.
        let name_ok = !common.name.is_empty()
            && common.name.len() <= 64
            && common
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err((
                at.key("name"),
                format!(
                    "{:?} is not a sink name (1 to 64 letters, digits, '-' or '_')",
                    common.name
                ),
            ));
        }
        if !names.insert(common.name.as_str()) {
            return Err((
                at.key("name"),
                format!("two sinks are named {:?}", common.name),
            ));
        }
        if common.events.is_empty() {
            return Err((
                at.key("events"),
                "names no event class (exchanges, connections, approvals, alerts, admin)".into(),
            ));
        }
        if !(1..=10_000).contains(&common.batch_max) {
            return Err((at.key("batch_max"), "must be between 1 and 10000".into()));
        }
        if !(10..=60_000).contains(&common.flush_interval_ms) {
            return Err((
                at.key("flush_interval_ms"),
                "must be between 10 and 60000".into(),
            ));
        }
        if !(1..=86_400).contains(&common.retry_max_backoff_secs) {
            return Err((
                at.key("retry_max_backoff_secs"),
                "must be between 1 and 86400".into(),
            ));
        }
        validate_kind(&sink.kind, &at)?;
    }
    Ok(())
}

/// Each kind's own rules; a kind added later brings its own `if let` (or none).
fn validate_kind(kind: &SinkKindConfig, at: &KeyPath) -> Result<(), (KeyPath, String)> {
    let absolute = |path: &PathBuf, key: &str| match path.is_absolute() {
        true => Ok(()),
        false => Err((at.key(key), "must be an absolute path".to_string())),
    };
    if let SinkKindConfig::File(file) = kind {
        absolute(&file.path, "path")?;
        if file.path.file_name().is_none() {
            return Err((at.key("path"), "must name a file".into()));
        }
        if file.keep > 1000 {
            return Err((at.key("keep"), "must be at most 1000".into()));
        }
    }
    if let SinkKindConfig::Webhook(webhook) = kind {
        check_url(&webhook.url).map_err(|reason| (at.key("url"), reason))?;
        match &webhook.secret_file {
            Some(path) => absolute(path, "secret_file")?,
            None if webhook.format == WebhookFormat::Json => {
                return Err((
                    at.key("secret_file"),
                    "is required with format = \"json\": every batch is signed".into(),
                ))
            }
            None => {}
        }
        if let Some(path) = &webhook.ca_file {
            absolute(path, "ca_file")?;
        }
        check_timeout(webhook.timeout_secs, at)?;
    }
    if let SinkKindConfig::SplunkHec(hec) = kind {
        check_url(&hec.url).map_err(|reason| (at.key("url"), reason))?;
        absolute(&hec.token_file, "token_file")?;
        if let Some(path) = &hec.ca_file {
            absolute(path, "ca_file")?;
        }
        check_timeout(hec.timeout_secs, at)?;
    }
    let own_rules = match kind {
        SinkKindConfig::Syslog(syslog) => syslog.validate(),
        SinkKindConfig::Otlp(otlp) => otlp.validate(),
        _ => Ok(()),
    };
    own_rules.map_err(|(key, reason)| (at.key(key), reason))
}

fn check_timeout(secs: u64, at: &KeyPath) -> Result<(), (KeyPath, String)> {
    match (1..=600).contains(&secs) {
        true => Ok(()),
        false => Err((at.key("timeout_secs"), "must be between 1 and 600".into())),
    }
}

/// An https:// URL, or http:// to this host only: records must not cross a network in clear.
fn check_url(url: &str) -> Result<(), String> {
    let parsed: Result<http::Uri, _> = url.parse();
    let Some((scheme, host)) = parsed
        .as_ref()
        .ok()
        .and_then(|uri| Some((uri.scheme_str()?, uri.host()?)))
    else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(format!(
            "{url:?} sends audit records in clear text over the network; use https:// \
             (http:// is accepted for 127.0.0.0/8, ::1 and localhost only)"
        )),
        _ => Err(format!("{url:?} is not an http:// or https:// URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[path = "sinks_tests.rs"]
mod tests;
