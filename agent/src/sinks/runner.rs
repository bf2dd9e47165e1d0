//! One sink's task: read after the cursor, deliver, retry until acknowledged, then move the cursor.
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{
    backoff::{jitter, Backoff},
    cursor::{Cursor, CursorFile},
    event::{DeliveryError, SinkEvent, Transport},
    source::{CursorCheck, Filter, ReadBatch, Source},
};
use crate::{
    audit::writer::now_us,
    config::sinks::{SinkCommonConfig, SinkStart},
    metrics::Metrics,
};

/// How often a sink that is delivering stores its cursor. Each store is two fsyncs; a cursor
/// stored later only means that, after a crash, up to this much is delivered again (which
/// at-least-once delivery allows, and `seq` deduplicates).
const CURSOR_INTERVAL: Duration = Duration::from_secs(1);

pub struct Runner {
    pub name: String,
    pub db: PathBuf,
    pub common: SinkCommonConfig,
    pub transport: Box<dyn Transport>,
    pub cursor_file: CursorFile,
    pub metrics: Arc<Metrics>,
}

/// The source behind a mutex so that each blocking read can run on the blocking pool.
type Shared = Arc<Mutex<Source>>;

impl Runner {
    /// Runs until `finish` turns true and every committed record went out (the daemon's shutdown,
    /// after the writer's last commit); the caller bounds how long that may take.
    pub async fn run(mut self, mut finish: watch::Receiver<bool>) {
        let kind = self.transport.kind();
        self.metrics.sinks.started(&self.name, kind);
        let max_backoff = Duration::from_secs(self.common.retry_max_backoff_secs);
        let mut backoff = Backoff::new(max_backoff);
        let mut failing: Option<String> = None;
        let (source, mut cursor) = loop {
            match self.open().await {
                Ok(opened) => break opened,
                Err(error) => {
                    self.failed(&mut failing, &format!("reading the audit store: {error}"));
                    tokio::time::sleep(backoff.next_delay(jitter())).await;
                }
            }
        };
        backoff.reset();
        tracing::info!(sink = %self.name, kind, cursor = cursor.seq, "sink started");
        let flush = Duration::from_millis(self.common.flush_interval_ms);
        // The cursor as last stored, and when: stored at most every CURSOR_INTERVAL while
        // delivering, and whenever the sink has caught up.
        let mut stored = (cursor.clone(), Instant::now());
        // A full batch's successor is read while the batch is being delivered.
        let mut prefetched: Option<tokio::task::JoinHandle<Result<ReadBatch, String>>> = None;
        loop {
            let finishing = *finish.borrow();
            let next = match prefetched.take() {
                Some(reading) => reading.await.unwrap_or_else(|e| Err(e.to_string())),
                None => read(source.clone(), cursor.clone(), self.common.batch_max).await,
            };
            let batch = match next {
                Ok(batch) => batch,
                Err(error) => {
                    self.failed(&mut failing, &format!("reading the audit store: {error}"));
                    tokio::time::sleep(backoff.next_delay(jitter())).await;
                    continue;
                }
            };
            self.metrics
                .sinks
                .set_backlog(&self.name, batch.head.saturating_sub(cursor.seq));
            if batch.pruned > 0 {
                tracing::error!(
                    sink = %self.name,
                    records = batch.pruned,
                    after_seq = cursor.seq,
                    "retention pruned records this sink had not delivered; they are lost to it \
                     (raise [audit] retention_days or fix the receiver); continuing from the \
                     oldest record still stored"
                );
                self.metrics.sinks.pruned(&self.name, batch.pruned);
            }
            let Some(last) = batch.last.clone() else {
                if stored.0 != cursor {
                    self.persist(&cursor).await;
                    stored = (cursor.clone(), Instant::now());
                }
                if finishing {
                    tracing::info!(sink = %self.name, cursor = cursor.seq, "sink stopped: every record delivered");
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(flush) => {}
                    // The sender gone: the daemon is exiting without a final drain.
                    changed = finish.changed() => if changed.is_err() { return; },
                }
                continue;
            };
            if batch.read == self.common.batch_max {
                prefetched = Some(tokio::spawn(read(
                    source.clone(),
                    last.clone(),
                    self.common.batch_max,
                )));
            }
            self.deliver(&source, cursor.seq, &batch, &mut backoff, &mut failing)
                .await;
            if stored.1.elapsed() >= CURSOR_INTERVAL {
                self.persist(&last).await;
                stored = (last.clone(), Instant::now());
            }
            cursor = last;
            self.metrics
                .sinks
                .set_backlog(&self.name, batch.head.saturating_sub(cursor.seq));
        }
    }

    /// Opens the store and finds where to start: the stored cursor, or (a new sink) the
    /// beginning or the head; a cursor that does not fit the store starts over, loudly.
    async fn open(&mut self) -> Result<(Shared, Cursor), String> {
        let db = self.db.clone();
        let filter = Filter {
            classes: self.common.events.iter().map(|&c| c.into()).collect(),
            include_bodies: self.common.include_bodies,
        };
        let source = blocking(move || Source::open(&db, filter)).await?;
        let source = Arc::new(Mutex::new(source));
        let stored = self.cursor_file.load().map_err(|e| e.to_string())?;
        let cursor = match stored {
            None if self.common.start == SinkStart::Now => {
                let shared = source.clone();
                let head = blocking(move || lock(&shared).head()).await?;
                self.persist(&head).await;
                head
            }
            None => Cursor::default(),
            Some(cursor) => {
                let shared = source.clone();
                let at = cursor.clone();
                match blocking(move || lock(&shared).check(&at)).await? {
                    CursorCheck::Valid => cursor,
                    check => {
                        tracing::error!(
                            sink = %self.name,
                            cursor = cursor.seq,
                            ?check,
                            "the sink's cursor does not fit the audit store (was the store \
                             replaced?); shipping the whole store again from its beginning"
                        );
                        Cursor::default()
                    }
                }
            }
        };
        Ok((source, cursor))
    }

    /// Delivers the batch's events (read after `cursor`), retrying with backoff until the receiver
    /// acknowledges them.
    async fn deliver(
        &mut self,
        source: &Shared,
        cursor: u64,
        batch: &ReadBatch,
        backoff: &mut Backoff,
        failing: &mut Option<String>,
    ) {
        if batch.events.is_empty() {
            return;
        }
        loop {
            let delay = match self.transport.deliver(&batch.events).await {
                Ok(()) => break,
                Err(DeliveryError::Retryable(reason)) => {
                    self.failed(failing, &reason);
                    backoff.next_delay(jitter())
                }
                Err(DeliveryError::Rejected(reason)) => {
                    self.failed(failing, &format!("rejected by the receiver: {reason}"));
                    backoff.longest()
                }
            };
            // The backlog keeps growing while the receiver is away: say so, for alerts on it.
            let shared = source.clone();
            if let Ok(head) = blocking(move || lock(&shared).head_seq()).await {
                self.metrics
                    .sinks
                    .set_backlog(&self.name, head.saturating_sub(cursor));
            }
            tokio::time::sleep(delay).await;
        }
        if let Some(reason) = failing.take() {
            tracing::info!(
                sink = %self.name,
                failed_attempts = backoff.failures(),
                after = %reason,
                "sink delivering again"
            );
        }
        backoff.reset();
        let shipped = u64::try_from(batch.events.len()).unwrap_or(u64::MAX);
        self.metrics.sinks.delivered(&self.name, shipped, now_us());
        tracing::debug!(sink = %self.name, events = shipped, last_seq = seq_of(&batch.events), "batch delivered");
    }

    /// Records a failed attempt; logs only when the reason changes (not at every retry).
    fn failed(&self, failing: &mut Option<String>, reason: &str) {
        self.metrics.sinks.failed(&self.name, reason);
        if failing.as_deref() != Some(reason) {
            tracing::warn!(sink = %self.name, kind = self.transport.kind(), %reason, "sink delivery failing; retrying with backoff");
            *failing = Some(reason.to_owned());
        }
    }

    /// Stores the cursor; a failure is logged and the sink goes on (it will re-deliver from the
    /// last stored cursor after a restart, which at-least-once allows).
    async fn persist(&mut self, cursor: &Cursor) {
        let cursor = cursor.clone();
        let store = self.cursor_file.clone();
        let stored = blocking(move || store.store(&cursor)).await;
        if let Err(error) = stored {
            tracing::error!(sink = %self.name, %error, "storing the sink's cursor failed");
        }
    }
}

async fn read(source: Shared, cursor: Cursor, limit: usize) -> Result<ReadBatch, String> {
    blocking(move || lock(&source).read(&cursor, limit)).await
}

async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

fn lock(source: &Mutex<Source>) -> std::sync::MutexGuard<'_, Source> {
    // Only this sink's task uses its source, one read at a time; a panic in one read leaves the
    // connection usable.
    source.lock().unwrap_or_else(|p| p.into_inner())
}

fn seq_of(events: &[SinkEvent]) -> u64 {
    events.last().map_or(0, |e| e.seq)
}
