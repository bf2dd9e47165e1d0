//! Keeping the ledger across restarts, so a daily budget does not renew because the daemon did:
//! saved every few seconds and once more when the daemon stops (after the drain).
use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use super::Limits;

/// At most this much usage is lost if the daemon is killed without stopping.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(5);

pub async fn save_periodically(limits: Arc<Limits>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SAVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => save(&limits).await,
            _ = shutdown.changed() => return,
        }
    }
}

/// Writes the ledger off the async threads (it fsyncs); a failure is logged, and the ledger
/// stays in memory to be written next time.
pub async fn save(limits: &Arc<Limits>) {
    let limits = limits.clone();
    match tokio::task::spawn_blocking(move || limits.save()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "saving the [[limit]] ledger (usage since the last save would not survive a restart)")
        }
        Err(error) => tracing::warn!(%error, "saving the [[limit]] ledger"),
    }
}
