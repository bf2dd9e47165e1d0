//! Process-wide counters of what the proxy did, shown by `warden status`.
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub intercepted: AtomicU64,
    pub tunneled: AtomicU64,
    pub exchanges: AtomicU64,
    pub rejected: AtomicU64,
    pub upstream_errors: AtomicU64,
    /// Exchanges started and not yet ended (a gauge).
    pub open_exchanges: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CountersSnapshot {
    pub accepted: u64,
    pub intercepted: u64,
    pub tunneled: u64,
    pub exchanges: u64,
    pub rejected: u64,
    pub upstream_errors: u64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            accepted: get(&self.accepted),
            intercepted: get(&self.intercepted),
            tunneled: get(&self.tunneled),
            exchanges: get(&self.exchanges),
            rejected: get(&self.rejected),
            upstream_errors: get(&self.upstream_errors),
        }
    }
}
