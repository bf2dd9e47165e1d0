//! The addresses intercepted hosts live at, which Warden never tunnels to (domain fronting).
//!
//! A TLS connection whose server name is not intercepted would be tunneled untouched; sent to an
//! address of an intercepted host (a CDN front serves many names), its encrypted `Host` could
//! still be the API. Warden cannot read that Host without decrypting, so it refuses to tunnel to
//! any address it knows an intercepted host at: the exact intercepted hosts resolved at start and
//! every [`RESOLVE_INTERVAL`], the upstream overrides' addresses, and the original destinations of
//! connections that were intercepted (what the workloads themselves resolved).
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::config::Config;

/// How often the intercepted hosts are resolved again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(300);
/// An address not seen again for this long is forgotten (DNS moves).
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Bounds the table: past it the address seen longest ago is forgotten first.
const MAX_ADDRESSES: usize = 4096;

#[derive(Default)]
pub struct LearnedAddresses {
    addresses: Mutex<HashMap<IpAddr, Learned>>,
}

struct Learned {
    host: String,
    seen: Instant,
}

impl LearnedAddresses {
    /// Starts with the overrides' addresses: where the configured hosts' traffic really goes.
    pub fn from_config(config: &Config) -> Self {
        let learned = LearnedAddresses::default();
        for o in &config.upstream.overrides {
            learned.learn(o.address.ip(), &o.host);
        }
        learned
    }

    /// Remembers that `host` (an intercepted host) lives at `ip`.
    pub fn learn(&self, ip: IpAddr, host: &str) {
        let ip = ip.to_canonical();
        let mut addresses = lock(&self.addresses);
        if addresses.len() >= MAX_ADDRESSES && !addresses.contains_key(&ip) {
            let oldest = addresses
                .iter()
                .min_by_key(|(_, learned)| learned.seen)
                .map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                addresses.remove(&oldest);
            }
        }
        let fresh = addresses
            .insert(
                ip,
                Learned {
                    host: host.to_owned(),
                    seen: Instant::now(),
                },
            )
            .is_none();
        if fresh {
            tracing::debug!(%ip, host, "learned an address of an intercepted host");
        }
    }

    /// The intercepted host known at `ip`, if any.
    pub fn host_at(&self, ip: IpAddr) -> Option<String> {
        let addresses = lock(&self.addresses);
        addresses
            .get(&ip.to_canonical())
            .filter(|learned| learned.seen.elapsed() < FORGET_AFTER)
            .map(|learned| learned.host.clone())
    }

    pub fn len(&self) -> usize {
        lock(&self.addresses).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves the exact intercepted hosts now and every [`RESOLVE_INTERVAL`] until shutdown
    /// (unless `[proxy] resolve_intercepted_hosts` is off), forgetting stale addresses as it goes.
    /// A host that does not resolve is only logged: the addresses the workloads reach it at are
    /// learned from their intercepted connections anyway.
    pub async fn resolve_periodically(
        self: Arc<Self>,
        config: Arc<Config>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let resolve = config.proxy.resolve_intercepted_hosts;
        if !resolve {
            tracing::info!(
                "not resolving the intercepted hosts ([proxy] resolve_intercepted_hosts = false): \
                 only the addresses workloads were intercepted at are refused to tunnels"
            );
        }
        let hosts: Vec<String> = config
            .proxy
            .intercept_hosts
            .iter()
            .filter(|host| resolve && !host.starts_with('*'))
            .cloned()
            .collect();
        loop {
            for host in &hosts {
                match tokio::net::lookup_host((host.as_str(), 443)).await {
                    Ok(found) => {
                        for address in found {
                            self.learn(address.ip(), host);
                        }
                    }
                    Err(error) => {
                        tracing::debug!(host, %error, "intercepted host does not resolve")
                    }
                }
            }
            self.forget_stale();
            tokio::select! {
                _ = tokio::time::sleep(RESOLVE_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    fn forget_stale(&self) {
        lock(&self.addresses).retain(|_, learned| learned.seen.elapsed() < FORGET_AFTER);
    }
}

/// A poisoned lock only means a panic elsewhere mid-insert; the map itself is whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn an_address_is_known_in_either_spelling() {
        let learned = LearnedAddresses::default();
        learned.learn(Ipv4Addr::new(127, 9, 0, 2).into(), "api.openai.com");
        let mapped: IpAddr = Ipv4Addr::new(127, 9, 0, 2).to_ipv6_mapped().into();
        assert_eq!(learned.host_at(mapped).as_deref(), Some("api.openai.com"));
        assert_eq!(learned.host_at(Ipv6Addr::LOCALHOST.into()), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let learned = LearnedAddresses::default();
        for n in 0..(MAX_ADDRESSES as u32 + 10) {
            learned.learn(IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + n)), "a.test");
        }
        assert_eq!(learned.len(), MAX_ADDRESSES);
    }
}
