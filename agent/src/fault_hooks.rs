//! Test-only fault injection (cargo feature `fault-hooks`, compiled into the e2e suite's binary
//! only): holds the daemon at a chosen point so that a test can crash it exactly there.
//!
//! `WARDEN_FAULT_HOOKS_DIR=DIR` arms it. While `DIR/hold-POINT` exists, whatever reaches POINT
//! creates `DIR/held-POINT` and waits until the hold file is removed.
use std::{path::PathBuf, sync::LazyLock, time::Duration};

/// Where the daemon can be held.
#[derive(Clone, Copy, Debug)]
pub enum Point {
    /// A request between its durable record (journal or commit) and its first byte upstream.
    BeforeForward,
    /// The audit writer before it folds a batch of records into the store and its chain.
    BeforeFold,
    /// The syncer after it fsynced the folded store, before it deletes folded journal segments.
    BeforeForget,
    /// The start-up replay after the journal's records are committed, before its segments go.
    ReplayBeforeForget,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::BeforeForward => "before-forward",
            Point::BeforeFold => "before-fold",
            Point::BeforeForget => "before-forget",
            Point::ReplayBeforeForget => "replay-before-forget",
        }
    }
}

/// The directory the hooks look in; read once, the first time anything passes a hook.
static HOOKS_DIR: LazyLock<Option<PathBuf>> =
    LazyLock::new(|| std::env::var_os("WARDEN_FAULT_HOOKS_DIR").map(PathBuf::from));

/// How often a held task or thread looks whether the test let it go.
const POLL: Duration = Duration::from_millis(20);

/// The hold file of `point`, when the hooks are armed and it exists (after signalling the test).
fn armed(point: Point) -> Option<PathBuf> {
    let dir = HOOKS_DIR.as_ref()?;
    let hold = dir.join(format!("hold-{}", point.name()));
    if !hold.exists() {
        return None;
    }
    tracing::warn!(hold = %hold.display(), "fault hook: holding at {}", point.name());
    if let Err(error) = std::fs::write(dir.join(format!("held-{}", point.name())), b"") {
        tracing::error!(%error, "fault hook: cannot signal the hold");
    }
    Some(hold)
}

/// Holds the calling task at `point` while the test wants it held.
pub async fn hold(point: Point) {
    if let Some(hold) = armed(point) {
        while hold.exists() {
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Holds the calling thread at `point` (the audit threads, the start-up replay).
pub fn hold_blocking(point: Point) {
    if let Some(hold) = armed(point) {
        while hold.exists() {
            std::thread::sleep(POLL);
        }
    }
}
