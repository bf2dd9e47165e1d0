//! `[limits]`: what one client may hold of the daemon (timeouts, connections, buffered bodies),
//! so that a hostile or broken agent cannot exhaust it for the others.
//!
//! ```toml
//! [limits]
//! handshake_timeout_secs = 10            # first bytes + TLS handshake, in total
//! header_read_timeout_secs = 30          # an HTTP/1 request's headers (also idle keep-alive)
//! body_read_timeout_secs = 300           # a request body read whole for inspection, in total
//! body_idle_timeout_secs = 30            # the longest pause inside a request body read whole
//! http2_idle_timeout_secs = 120          # an HTTP/2 connection with no request open
//! max_connections_per_process = 1024     # open redirected connections of one agent process
//! max_connections_per_cgroup = 4096      # … of one cgroup (all its processes)
//! body_memory_budget_bytes = 268435456   # request bodies buffered at once, all clients together
//! ```
use super::locate::KeyPath;

/// The largest connection cap accepted: each intercepted connection holds two descriptors, and
/// every redirected connect to the listener uses one of the host's ephemeral ports.
const MAX_CONNECTION_CAP: u32 = 1_000_000;

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// How long a client may take to send a complete ClientHello and finish the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// How long an HTTP/1 client may take to send a request's headers, including the wait for
    /// the next request on a kept-alive connection.
    pub header_read_timeout_secs: u64,
    /// How long a request body that Warden reads whole (to inspect and record it) may take to
    /// arrive: a client sending a byte a second is answered 408 once it passes.
    pub body_read_timeout_secs: u64,
    /// The longest pause between two pieces of a request body read whole. (A body forwarded as it
    /// streams holds no daemon memory; the upstream's own timeouts bound it.)
    pub body_idle_timeout_secs: u64,
    /// An HTTP/2 connection with no request open for this long is closed (GOAWAY).
    pub http2_idle_timeout_secs: u64,
    /// Open connections one agent process (tgid) may hold; more are reset at once.
    pub max_connections_per_process: u32,
    /// Open connections one cgroup (all processes in it) may hold; more are reset at once.
    pub max_connections_per_cgroup: u32,
    /// Request bodies held in memory at once (read whole to be inspected), across all clients.
    /// A request that would pass it is answered 503 (retryable) rather than risk the daemon.
    pub body_memory_budget_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            handshake_timeout_secs: 10,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 300,
            body_idle_timeout_secs: 30,
            http2_idle_timeout_secs: 120,
            max_connections_per_process: 1024,
            max_connections_per_cgroup: 4096,
            body_memory_budget_bytes: 256 * 1024 * 1024,
        }
    }
}

impl LimitsConfig {
    /// `max_inspect_bytes` is `[policy]`'s: one inspectable body must fit in the budget.
    pub(super) fn validate(&self, max_inspect_bytes: u64) -> Result<(), (KeyPath, String)> {
        let at = KeyPath::root().key("limits");
        let timeouts = [
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
            ("body_idle_timeout_secs", self.body_idle_timeout_secs),
            ("http2_idle_timeout_secs", self.http2_idle_timeout_secs),
        ];
        for (key, secs) in timeouts {
            if !(1..=86_400).contains(&secs) {
                return Err((at.key(key), "must be between 1 and 86400 seconds".into()));
            }
        }
        let caps = [
            (
                "max_connections_per_process",
                self.max_connections_per_process,
            ),
            (
                "max_connections_per_cgroup",
                self.max_connections_per_cgroup,
            ),
        ];
        for (key, cap) in caps {
            if !(1..=MAX_CONNECTION_CAP).contains(&cap) {
                return Err((
                    at.key(key),
                    format!("must be between 1 and {MAX_CONNECTION_CAP}"),
                ));
            }
        }
        if self.max_connections_per_process > self.max_connections_per_cgroup {
            return Err((
                at.key("max_connections_per_process"),
                "must not be above max_connections_per_cgroup (a process is in one cgroup)".into(),
            ));
        }
        if self.body_memory_budget_bytes < max_inspect_bytes {
            return Err((
                at.key("body_memory_budget_bytes"),
                format!(
                    "must be at least [policy] max_inspect_bytes ({max_inspect_bytes}): one inspected body must fit"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(LimitsConfig::default().validate(16 * 1024 * 1024), Ok(()));
    }

    #[test]
    fn a_budget_below_the_inspection_limit_is_refused() {
        let limits = LimitsConfig {
            body_memory_budget_bytes: 1024,
            ..Default::default()
        };
        let (key, reason) = limits.validate(4096).unwrap_err();
        assert_eq!(key.to_string(), "limits.body_memory_budget_bytes");
        assert!(reason.contains("max_inspect_bytes"), "{reason}");
    }

    #[test]
    fn zero_timeouts_and_caps_are_refused() {
        let limits = LimitsConfig {
            http2_idle_timeout_secs: 0,
            ..Default::default()
        };
        let (key, _) = limits.validate(1024).unwrap_err();
        assert_eq!(key.to_string(), "limits.http2_idle_timeout_secs");
        let limits = LimitsConfig {
            max_connections_per_cgroup: 10,
            max_connections_per_process: 20,
            ..Default::default()
        };
        let (key, _) = limits.validate(1024).unwrap_err();
        assert_eq!(key.to_string(), "limits.max_connections_per_process");
    }
}
