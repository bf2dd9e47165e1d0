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
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Proxy {
    pub listen_port: u16,
    pub intercept_ports: Vec<u16>,
    pub intercept_hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Select {
    pub cgroups: Vec<String>,
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
                intercept_ports: vec![443],
                intercept_hosts: vec!["api.openai.com".into()],
            },
            select: Select {
                cgroups: vec!["/warden-test-a".into()],
            },
            upstream: Some(Upstream {
                overrides: vec![UpstreamOverride::new(
                    "api.openai.com",
                    "127.0.0.2:443",
                    Some(Path::new("/tmp/ca.pem")),
                )],
            }),
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
        assert!(text.contains("[[upstream.override]]"), "{text}");
    }
}
