//! Record ids and timestamps, shared by the proxy's records and the approvals'.
use std::{
    collections::hash_map::RandomState,
    hash::BuildHasher,
    sync::{
        atomic::{AtomicU64, Ordering},
        LazyLock,
    },
    time::{SystemTime, UNIX_EPOCH},
};

/// Unix time in microseconds.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A new id, unique on this host: `PREFIX-<unix ms>-<random per process><sequence>`, all hex.
/// Sorting by id sorts by creation time; the random part keeps ids apart across restarts even if
/// the clock steps back.
pub fn new_id(prefix: &str) -> String {
    static PROCESS: LazyLock<u32> =
        LazyLock::new(|| RandomState::new().hash_one(std::process::id()) as u32);
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
    format!(
        "{prefix}-{:011x}-{:08x}{sequence:06x}",
        now_us() / 1000,
        *PROCESS
    )
}
