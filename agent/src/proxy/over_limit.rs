//! Connections over a cap: reset at once, counted in a metric, and logged and recorded at a
//! bounded rate, so that an agent opening thousands floods neither the log nor the audit store.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{net::TcpStream, sync::watch};
use tracing::Level;

use super::{
    counters::Counters,
    limits::OverLimit,
    recording::{new_id, now_us},
    ProxyContext,
};
use crate::{
    audit::record::{AuditRecord, ConnectionRecord, Disposition, IdentitySnapshot},
    ebpf::origin::ConnectionOrigin,
    identity_event,
};

/// Refusals logged and recorded one by one per window; the rest are counted, and the count is
/// logged and recorded once when the window ends.
const REPORTED_PER_WINDOW: u32 = 20;
const WINDOW: Duration = Duration::from_secs(1);

struct Window {
    started: Instant,
    reported: u32,
    /// Refused in this window without a line or record of their own.
    unreported: u64,
    /// The last of them: the summary record is attributed to it.
    last: Option<(ConnectionOrigin, OverLimit)>,
}

/// Refuses connections over a cap for one proxy.
pub struct OverLimitRefusals {
    context: Arc<ProxyContext>,
    window: Mutex<Window>,
}

impl OverLimitRefusals {
    pub fn new(context: Arc<ProxyContext>) -> Arc<Self> {
        Arc::new(OverLimitRefusals {
            context,
            window: Mutex::new(Window {
                started: Instant::now(),
                reported: 0,
                unreported: 0,
                last: None,
            }),
        })
    }

    /// Resets `client` (no FIN handshake, no TIME_WAIT: the loopback 4-tuple is free again at
    /// once on both sides), counts it, and logs and records it unless this window's share of
    /// lines is spent.
    pub fn refuse(self: &Arc<Self>, client: TcpStream, origin: ConnectionOrigin, over: OverLimit) {
        let _ = client.set_zero_linger();
        drop(client);
        let context = &self.context;
        Counters::bump(&context.counters.rejected);
        context.metrics.connection(Disposition::Rejected);
        context.metrics.limits.over_limit(over.as_str());
        let report = {
            let mut window = self.lock();
            if window.started.elapsed() >= WINDOW && window.unreported == 0 {
                window.started = Instant::now();
                window.reported = 0;
            }
            if window.reported < REPORTED_PER_WINDOW && window.unreported == 0 {
                window.reported += 1;
                true
            } else {
                window.unreported += 1;
                window.last = Some((origin.clone(), over));
                false
            }
        };
        if report {
            tokio::spawn(self.clone().report(origin, over.to_string()));
        }
    }

    /// Every window, logs and records the refusals that had no line of their own as one.
    pub async fn summarize(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(WINDOW);
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = shutdown.changed() => true,
            };
            let summary = {
                let mut window = self.lock();
                let due = stopping || window.started.elapsed() >= WINDOW;
                match window.last.take() {
                    Some(last) if due => {
                        let count = std::mem::take(&mut window.unreported);
                        window.started = Instant::now();
                        window.reported = 0;
                        Some((count, last))
                    }
                    last => {
                        window.last = last;
                        None
                    }
                }
            };
            if let Some((count, (origin, over))) = summary {
                let reason = format!(
                    "{count} more connections refused over a limit in the last {}s, not recorded one by one (the last: {over})",
                    WINDOW.as_secs()
                );
                // Awaited: at shutdown the record must be submitted before the audit store closes.
                self.clone().report(origin, reason).await;
            }
            if stopping {
                return;
            }
        }
    }

    /// One log line and one rejected connection record, attributed to `origin`'s identity.
    async fn report(self: Arc<Self>, origin: ConnectionOrigin, reason: String) {
        let context = self.context.clone();
        let started_at_us = now_us();
        let resolver = context.clone();
        let captured = origin.clone();
        // Resolving the identity may read procfs: off the runtime's threads.
        let Ok(identity) =
            tokio::task::spawn_blocking(move || resolver.identities.resolve(&captured)).await
        else {
            return;
        };
        identity_event!(Level::WARN, &identity, destination = %origin.original_dst, reason = %reason, "connection refused");
        context
            .audit
            .submit(AuditRecord::Connection(ConnectionRecord {
                id: new_id("cn"),
                identity: IdentitySnapshot::from(&*identity),
                original_dst: origin.original_dst.to_string(),
                server_name: None,
                disposition: Disposition::Rejected,
                reason: Some(reason),
                bytes_from_client: 0,
                bytes_to_client: 0,
                started_at_us,
                ended_at_us: now_us(),
            }));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
