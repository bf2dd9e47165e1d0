//! `[proxy]`: what is redirected and intercepted, and what agents get while Warden is down.

use std::fmt;
use std::path::PathBuf;

use super::ports::{self, InterceptPorts};

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    pub listen_port: u16,
    /// "all" (the default) or a list of ports (see [`ports`]).
    pub intercept_ports: InterceptPorts,
    /// Redirected ports where only a TLS ClientHello is accepted; absent: see
    /// [`ports::default_tls_ports`]. Use [`ProxyConfig::tls_ports`].
    #[serde(rename = "tls_ports")]
    pub tls_ports_configured: Option<Vec<u16>>,
    pub intercept_hosts: Vec<String>,
    /// Whether the exact intercepted hosts are resolved (at start and periodically) so that no
    /// tunnel reaches their addresses; off, only the addresses seen in use are learned.
    pub resolve_intercepted_hosts: bool,
    /// How long shutdown waits for open connections before closing them.
    pub drain_timeout_secs: u64,
    /// What the selected workloads get while Warden is not running.
    pub fail_mode: FailMode,
    /// Where the eBPF links and maps are pinned (a directory on a bpf filesystem).
    pub pin_dir: PathBuf,
}

impl ProxyConfig {
    /// Redirected ports where anything but a TLS ClientHello is refused.
    pub fn tls_ports(&self) -> Vec<u16> {
        self.tls_ports_configured
            .clone()
            .unwrap_or_else(|| ports::default_tls_ports(&self.intercept_ports))
    }

    /// Whether a redirected connection to `port` must open with a TLS ClientHello.
    pub fn is_tls_port(&self, port: u16) -> bool {
        match &self.tls_ports_configured {
            Some(ports) => ports.contains(&port),
            None => match &self.intercept_ports {
                InterceptPorts::All => port == 443,
                InterceptPorts::List(_) => true,
            },
        }
    }
}

/// `[proxy] fail_mode`: what a selected workload's connects get while the daemon is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// The programs stay attached (pinned in `pin_dir`) after the daemon stops, however it stops:
    /// connects are still sent to Warden's closed listener and refused, so nothing reaches the
    /// API unrecorded. Only `warden uninstall` removes the pins.
    #[default]
    Closed,
    /// The programs are detached when the daemon exits (or dies): the agents then reach the API
    /// directly, unrecorded.
    Open,
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailMode::Closed => "closed",
            FailMode::Open => "open",
        })
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen_port: 15443,
            intercept_ports: InterceptPorts::All,
            tls_ports_configured: None,
            intercept_hosts: vec!["api.openai.com".to_string()],
            resolve_intercepted_hosts: true,
            drain_timeout_secs: 10,
            fail_mode: FailMode::default(),
            pin_dir: PathBuf::from("/sys/fs/bpf/warden"),
        }
    }
}
