//! Renders the TOML config file a test daemon runs with (the keys are Warden's config contract).

use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConfigFile {
    pub state_dir: PathBuf,
    pub proxy: Proxy,
    pub select: Select,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    #[serde(rename = "account", skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<Account>,
    pub policy: PolicySection,
    pub metrics: MetricsSection,
}

/// `[metrics]`: off (`listen = ""`) unless a test asks for it, so that the daemons of parallel
/// tests never compete for the default port.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MetricsSection {
    pub listen: String,
}

/// `[policy]`: where the daemon reads its policy files, and how much of a body it may inspect.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicySection {
    /// Absent: the daemon's built-in default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Absent: the daemon's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_inspect_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Proxy {
    pub listen_port: u16,
    pub intercept_ports: InterceptPorts,
    /// Absent: the daemon's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ports: Option<Vec<u16>>,
    pub intercept_hosts: Vec<String>,
    /// Always false: tests send nothing off the machine, DNS queries included.
    pub resolve_intercepted_hosts: bool,
    /// "closed" or "open".
    pub fail_mode: &'static str,
    pub pin_dir: PathBuf,
}

/// `intercept_ports`: `"all"` or a list of ports.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum InterceptPorts {
    All(&'static str),
    List(Vec<u16>),
}

impl InterceptPorts {
    pub const ALL: InterceptPorts = InterceptPorts::All("all");
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Select {
    pub cgroups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Upstream {
    #[serde(rename = "override")]
    pub overrides: Vec<UpstreamOverride>,
}

/// `[[upstream.override]]`: send one host's traffic to a test server.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamOverride {
    pub host: String,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl UpstreamOverride {
    pub fn new(host: &str, address: impl ToString, ca_file: Option<&Path>) -> Self {
        Self {
            host: host.to_owned(),
            address: address.to_string(),
            ca_file: ca_file.map(Path::to_path_buf),
        }
    }
}

/// `[[account]]`: a service-account name for the workloads one selector matches.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

impl Account {
    fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            unit: None,
            cgroup: None,
            uid: None,
        }
    }

    /// Names the processes of a systemd unit (and its descendants).
    pub fn unit(name: &str, unit: &str) -> Self {
        Self {
            unit: Some(unit.to_owned()),
            ..Self::named(name)
        }
    }

    /// Names the processes in a cgroup (and its descendants).
    pub fn cgroup(name: &str, cgroup: &str) -> Self {
        Self {
            cgroup: Some(cgroup.to_owned()),
            ..Self::named(name)
        }
    }

    /// Names the processes running as `uid`.
    pub fn uid(name: &str, uid: u32) -> Self {
        Self {
            uid: Some(uid),
            ..Self::named(name)
        }
    }
}

impl ConfigFile {
    pub fn render(&self) -> String {
        toml::to_string(self).expect("a test config always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_keys() {
        let config = ConfigFile {
            state_dir: "/tmp/x/state".into(),
            proxy: Proxy {
                listen_port: 15443,
                intercept_ports: InterceptPorts::List(vec![443]),
                tls_ports: None,
                intercept_hosts: vec!["api.openai.com".into()],
                resolve_intercepted_hosts: false,
                fail_mode: "closed",
                pin_dir: "/tmp/x/bpffs/warden".into(),
            },
            select: Select {
                cgroups: vec!["/warden-test-a".into()],
                units: vec!["warden-test-a.service".into()],
            },
            upstream: Some(Upstream {
                overrides: vec![UpstreamOverride::new(
                    "api.openai.com",
                    "127.0.0.2:443",
                    Some(Path::new("/tmp/ca.pem")),
                )],
            }),
            accounts: vec![
                Account::cgroup("billing-agent", "/warden-test-a"),
                Account::uid("root-jobs", 0),
            ],
            policy: PolicySection {
                dir: Some("/tmp/x/policies".into()),
                max_inspect_bytes: Some(65536),
            },
            metrics: MetricsSection {
                listen: String::new(),
            },
        };
        let text = config.render();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["state_dir"].as_str(), Some("/tmp/x/state"));
        assert_eq!(parsed["proxy"]["listen_port"].as_integer(), Some(15443));
        assert_eq!(
            parsed["proxy"]["intercept_ports"][0].as_integer(),
            Some(443)
        );
        assert_eq!(
            parsed["proxy"]["intercept_hosts"][0].as_str(),
            Some("api.openai.com")
        );
        assert_eq!(
            parsed["select"]["cgroups"][0].as_str(),
            Some("/warden-test-a")
        );
        let over = &parsed["upstream"]["override"][0];
        assert_eq!(over["host"].as_str(), Some("api.openai.com"));
        assert_eq!(over["address"].as_str(), Some("127.0.0.2:443"));
        assert_eq!(over["ca_file"].as_str(), Some("/tmp/ca.pem"));
        assert_eq!(
            parsed["select"]["units"][0].as_str(),
            Some("warden-test-a.service")
        );
        assert_eq!(parsed["account"][0]["name"].as_str(), Some("billing-agent"));
        assert_eq!(
            parsed["account"][0]["cgroup"].as_str(),
            Some("/warden-test-a")
        );
        assert!(parsed["account"][0].get("uid").is_none(), "{text}");
        assert_eq!(parsed["account"][1]["name"].as_str(), Some("root-jobs"));
        assert_eq!(parsed["account"][1]["uid"].as_integer(), Some(0));
        assert!(text.contains("[[upstream.override]]"), "{text}");
        assert!(text.contains("[[account]]"), "{text}");
        assert_eq!(parsed["policy"]["dir"].as_str(), Some("/tmp/x/policies"));
        assert_eq!(parsed["proxy"]["fail_mode"].as_str(), Some("closed"));
        assert_eq!(
            parsed["proxy"]["pin_dir"].as_str(),
            Some("/tmp/x/bpffs/warden")
        );
        assert_eq!(
            parsed["policy"]["max_inspect_bytes"].as_integer(),
            Some(65536)
        );
        assert_eq!(parsed["metrics"]["listen"].as_str(), Some(""));
        assert!(parsed["proxy"].get("tls_ports").is_none(), "{text}");
    }

    #[test]
    fn renders_all_ports() {
        let proxy = Proxy {
            listen_port: 15443,
            intercept_ports: InterceptPorts::ALL,
            tls_ports: Some(vec![443, 8443]),
            intercept_hosts: vec!["api.openai.com".into()],
            resolve_intercepted_hosts: false,
            fail_mode: "closed",
            pin_dir: "/tmp/x".into(),
        };
        let text = toml::to_string(&proxy).unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["intercept_ports"].as_str(), Some("all"), "{text}");
        assert_eq!(parsed["tls_ports"][1].as_integer(), Some(8443), "{text}");
    }
}
