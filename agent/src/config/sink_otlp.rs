//! The `otlp` sink's keys: the collector's base URL, extra headers, trust, and which signals to send.
//!
//! ```toml
//! [[sink]]
//! kind = "otlp"
//! endpoint = "https://otel.example.com:4318"   # /v1/logs and /v1/traces are appended
//! headers = { authorization = "Bearer …" }     # sent with every export; never logged
//! ca_file = "/etc/warden/otel-ca.pem"
//! signals = ["logs", "traces"]
//! service_name = "warden"
//! ```
use std::{collections::BTreeMap, fmt, path::PathBuf};

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpSignal {
    /// One log record per event.
    Logs,
    /// One span per exchange, with the GenAI semantic conventions.
    Traces,
}

/// `[[sink]] kind = "otlp"`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSinkConfig {
    /// `http://` or `https://` base URL of an OTLP/HTTP receiver.
    pub endpoint: String,
    /// Extra request headers (an API key, a tenant id).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM certificates trusted besides the system roots (https endpoints).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_signals")]
    pub signals: Vec<OtlpSignal>,
    /// The resource's `service.name`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_signals() -> Vec<OtlpSignal> {
    vec![OtlpSignal::Logs, OtlpSignal::Traces]
}

fn default_service_name() -> String {
    "warden".to_owned()
}

/// Header values often are credentials: Debug shows only their names.
impl fmt::Debug for OtlpSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSinkConfig")
            .field("endpoint", &self.endpoint)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("ca_file", &self.ca_file)
            .field("signals", &self.signals)
            .field("service_name", &self.service_name)
            .finish()
    }
}

impl OtlpSinkConfig {
    /// The first key that is wrong, and why (the `[[sink]]` loader names the sink around it).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let uri: Option<http::Uri> = self.endpoint.parse().ok();
        let ok = uri.as_ref().is_some_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some()
                && uri.query().is_none()
        });
        if !ok {
            return Err((
                "endpoint",
                format!(
                    "{:?} is not an http:// or https:// base URL without a query",
                    self.endpoint
                ),
            ));
        }
        // Records must not cross a network in clear text: http:// only to this host.
        let clear_off_host = uri.as_ref().is_some_and(|uri| {
            uri.scheme_str() == Some("http") && !is_loopback_host(uri.host().unwrap_or_default())
        });
        if clear_off_host {
            return Err((
                "endpoint",
                format!(
                    "{:?}: http:// is only for a receiver on this host (127.0.0.0/8, ::1, localhost); use https://",
                    self.endpoint
                ),
            ));
        }
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(("headers", format!("{name:?} is not a header name")));
            }
            if http::HeaderValue::from_str(value).is_err() {
                // The value may be a secret: only its name is said.
                return Err((
                    "headers",
                    format!("the value of {name:?} is not a valid header value"),
                ));
            }
            if name.eq_ignore_ascii_case("content-type") || name.eq_ignore_ascii_case("host") {
                return Err(("headers", format!("{name:?} is set by Warden")));
            }
        }
        if self.signals.is_empty() {
            return Err((
                "signals",
                "name at least one of \"logs\", \"traces\"".into(),
            ));
        }
        if self.service_name.is_empty() {
            return Err(("service_name", "must not be empty".into()));
        }
        Ok(())
    }

    pub fn sends(&self, signal: OtlpSignal) -> bool {
        self.signals.contains(&signal)
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> OtlpSinkConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn defaults_send_logs_and_traces_as_warden() {
        let parsed = config("endpoint = \"http://127.0.0.1:4318\"");
        assert_eq!(
            config("endpoint = \"https://otel.example\"").validate(),
            Ok(())
        );
        assert_eq!(
            config("endpoint = \"http://[::1]:4318\"").validate(),
            Ok(())
        );
        assert!(parsed.sends(OtlpSignal::Logs) && parsed.sends(OtlpSignal::Traces));
        assert_eq!(parsed.service_name, "warden");
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn wrong_keys_are_named_and_header_values_never_shown() {
        let cases = [
            ("endpoint = \"ftp://x\"", "endpoint"),
            ("endpoint = \"http://x:4318/?a=b\"", "endpoint"),
            ("endpoint = \"http://collector.example:4318\"", "endpoint"),
            ("endpoint = \"http://127.0.0.1\"\nsignals = []", "signals"),
            (
                "endpoint = \"http://127.0.0.1\"\nheaders = { \"bad name\" = \"v\" }",
                "headers",
            ),
            (
                "endpoint = \"http://127.0.0.1\"\nheaders = { authorization = \"sekrit\\n\" }",
                "headers",
            ),
            (
                "endpoint = \"http://127.0.0.1\"\nheaders = { content-type = \"x\" }",
                "headers",
            ),
        ];
        for (text, key) in cases {
            let (named, reason) = config(text).validate().expect_err(text);
            assert_eq!(named, key, "{text}");
            assert!(!reason.contains("sekrit"), "{reason}");
        }
        assert!(toml::from_str::<OtlpSinkConfig>(
            "endpoint = \"http://127.0.0.1\"\nsignals = [\"metrics\"]"
        )
        .is_err());
        let shown = format!(
            "{:?}",
            config("endpoint = \"http://127.0.0.1\"\nheaders = { authorization = \"sekrit\" }")
        );
        assert!(
            shown.contains("authorization") && !shown.contains("sekrit"),
            "{shown}"
        );
    }
}
