//! Test-only fault injection (cargo feature `fault-hooks`, compiled into the e2e suite's binary
//! only): holds a request at a chosen point of its path so that a test can crash the daemon there.
//!
//! `WARDEN_FAULT_HOOKS_DIR=DIR` arms it. While `DIR/hold-before-forward` exists, a request that
//! reaches forward (its request record committed, nothing sent upstream yet) creates
//! `DIR/held-before-forward` and waits until the hold file is removed.
use std::{path::PathBuf, sync::LazyLock, time::Duration};

/// The directory the hooks look in; read once, the first time a request passes a hook.
static HOOKS_DIR: LazyLock<Option<PathBuf>> =
    LazyLock::new(|| std::env::var_os("WARDEN_FAULT_HOOKS_DIR").map(PathBuf::from));

/// How often a held request looks whether the test let it go.
const POLL: Duration = Duration::from_millis(20);

/// Between the request record's commit and the first byte sent upstream.
pub async fn before_forward() {
    let Some(dir) = HOOKS_DIR.as_ref() else {
        return;
    };
    let hold = dir.join("hold-before-forward");
    if !hold.exists() {
        return;
    }
    tracing::warn!(hold = %hold.display(), "fault hook: holding a recorded request before forward");
    if let Err(error) = std::fs::write(dir.join("held-before-forward"), b"") {
        tracing::error!(%error, "fault hook: cannot signal the held request");
    }
    while hold.exists() {
        tokio::time::sleep(POLL).await;
    }
}
