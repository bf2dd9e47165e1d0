//! The audit writer thread: group commit, barriers for the request journal, and retention
//! passes run in chunks between batches (a failed batch: writer_failures.rs).
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::{
    chain::{ChainHead, ChainRecord, SealedRecord},
    index::{self, index_entry, Applied, IndexEntry},
    retention,
    store_health::FailureCause,
    writer::{now_us, CommitObserver},
    AuditError,
};

/// Records per transaction at most, so one transaction stays bounded under a burst.
const BATCH_CAP: usize = 4096;
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

pub(super) type Ack = oneshot::Sender<Result<u64, AuditError>>;

// Records are moved through the channel once; Shutdown is sent once per writer.
#[allow(clippy::large_enum_variant)]
pub(super) enum Message {
    Append {
        record: ChainRecord,
        /// The canonical body of a record already durable in the request journal.
        journaled: Option<String>,
        ack: Option<Ack>,
    },
    /// Every record of this journal segment is queued before it (journal.rs).
    Barrier(u64),
    Shutdown,
}

/// The writer's answer to a [`Message::Barrier`]: the segment's records are all committed
/// (`clean`), or some could not be stored and the segment must be kept for the next start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Folded {
    pub(super) segment: u64,
    pub(super) clean: bool,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) records: AtomicU64,
    pub(super) transactions: AtomicU64,
    pub(super) failed_transactions: AtomicU64,
    pub(super) failed_records: AtomicU64,
    pub(super) prunes: AtomicU64,
    /// Records sent to the thread and not yet taken into a batch (a gauge).
    pub(super) queued: AtomicU64,
    /// Failed transactions by cause, indexed like `FailureCause::ALL`.
    pub(super) failures_by_cause: [AtomicU64; FailureCause::ALL.len()],
    pub(super) commit_observer: OnceLock<CommitObserver>,
    /// Set by shutdown: later records are refused, and a stalled writer gives up.
    pub(super) closed: AtomicBool,
    /// The writer is stalled on a journaled record the store refuses (`failure` says why).
    pub(super) failing: AtomicBool,
    pub(super) failure: Mutex<String>,
}

impl Counters {
    pub(super) fn store_failed(&self, err: &rusqlite::Error) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = err.to_string();
        self.failing.store(true, Ordering::SeqCst);
    }

    pub(super) fn count_cause(&self, cause: FailureCause) {
        if let Some(index) = FailureCause::ALL.iter().position(|c| *c == cause) {
            self.failures_by_cause[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Why the store is not taking records, while it is not.
    pub(super) fn failing(&self) -> Option<String> {
        self.failing.load(Ordering::SeqCst).then(|| {
            self.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }
}

pub(super) struct Pending {
    pub(super) record: ChainRecord,
    pub(super) journaled: Option<String>,
    pub(super) ack: Option<Ack>,
}

/// A record sealed into a batch, kept whole so a failed batch can be retried record by record.
pub(super) struct Sealed {
    record: ChainRecord,
    pub(super) sealed: SealedRecord,
    pub(super) entry: IndexEntry,
    pub(super) ack: Option<Ack>,
    pub(super) journaled: bool,
}

impl Sealed {
    fn new(
        head: ChainHead,
        record: ChainRecord,
        body: String,
        ack: Option<Ack>,
        journaled: bool,
    ) -> Sealed {
        let sealed = SealedRecord::seal(head, &record, body);
        let entry = index_entry(&record, sealed.seq);
        Sealed {
            record,
            sealed,
            entry,
            ack,
            journaled,
        }
    }

    /// The same record sealed after another head (its neighbours' fate changed its seq).
    pub(super) fn reseal(self, head: ChainHead) -> Sealed {
        Sealed::new(
            head,
            self.record,
            self.sealed.body,
            self.ack,
            self.journaled,
        )
    }
}

pub(super) struct Thread {
    pub(super) conn: Connection,
    /// Advanced only after a transaction commits: a failed batch leaves no gap in the chain.
    pub(super) head: ChainHead,
    pub(super) receiver: mpsc::Receiver<Message>,
    pub(super) retention_days: Option<u32>,
    /// Records deleted per retention transaction at most (`PRUNE_CHUNK`; small in tests).
    pub(super) prune_chunk: usize,
    pub(super) counters: Arc<Counters>,
    /// Answers to barriers, for the syncer (with the request journal only).
    pub(super) folded: Option<mpsc::Sender<Folded>>,
    /// `failed_records` when the last barrier was answered.
    pub(super) failed_at_barrier: u64,
}

impl Thread {
    pub(super) fn run(mut self) {
        let mut next_prune = Instant::now();
        // The cutoff of the retention pass under way: one chunk per turn of the loop, with the
        // records queued meanwhile committed in between.
        let mut pruning: Option<i64> = None;
        loop {
            if let Some(days) = self.retention_days {
                if pruning.is_none() && Instant::now() >= next_prune {
                    pruning = Some(retention::cutoff_us(days, now_us()));
                    next_prune = Instant::now() + PRUNE_INTERVAL;
                }
            }
            if let Some(cutoff_us) = pruning {
                pruning = self.prune_chunk(cutoff_us).then_some(cutoff_us);
            }
            let first = if pruning.is_some() {
                match self.receiver.try_recv() {
                    Ok(message) => message,
                    Err(mpsc::TryRecvError::Empty) => continue,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            } else if self.retention_days.is_some() {
                match self
                    .receiver
                    .recv_timeout(next_prune.saturating_duration_since(Instant::now()))
                {
                    Ok(message) => message,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match self.receiver.recv() {
                    Ok(message) => message,
                    Err(mpsc::RecvError) => return,
                }
            };
            let mut batch = Vec::new();
            // A barrier or shutdown ends the batch; it is handled once the batch is committed.
            let mut after = None;
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Append {
                        record,
                        journaled,
                        ack,
                    } => {
                        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                        batch.push(Pending {
                            record,
                            journaled,
                            ack,
                        });
                    }
                    other => {
                        after = Some(other);
                        break;
                    }
                }
                next = (batch.len() < BATCH_CAP)
                    .then(|| self.receiver.try_recv().ok())
                    .flatten();
            }
            #[cfg(feature = "fault-hooks")]
            crate::fault_hooks::hold_blocking(crate::fault_hooks::Point::BeforeFold);
            self.commit_batch(batch);
            match after {
                Some(Message::Shutdown) => {
                    self.refuse_remaining();
                    return;
                }
                Some(Message::Barrier(segment)) => self.answer_barrier(segment),
                _ => {}
            }
        }
    }

    fn answer_barrier(&mut self, segment: u64) {
        let failed = self.counters.failed_records.load(Ordering::Relaxed);
        let clean = failed == self.failed_at_barrier;
        self.failed_at_barrier = failed;
        if let Some(folded) = &self.folded {
            // The syncer is gone only at shutdown; the segment is then replayed at start.
            let _ = folded.send(Folded { segment, clean });
        }
    }

    pub(super) fn commit_batch(&mut self, batch: Vec<Pending>) {
        let mut head = self.head;
        let mut sealed = Vec::with_capacity(batch.len());
        for Pending {
            record,
            journaled,
            ack,
        } in batch
        {
            let is_journaled = journaled.is_some();
            // A record that cannot be serialized fails alone, not its whole batch.
            match journaled.map_or_else(|| record.canonical_body(), Ok) {
                Ok(body) => {
                    let record_sealed = Sealed::new(head, record, body, ack, is_journaled);
                    head = record_sealed.sealed.head();
                    sealed.push(record_sealed);
                }
                Err(err) => self.lose(ack, err, &record.columns()),
            }
        }
        if sealed.is_empty() {
            return;
        }
        let entries: Vec<_> = sealed.iter().map(|s| (&s.sealed, &s.entry)).collect();
        let started = Instant::now();
        let written = write(&mut self.conn, &entries);
        drop(entries);
        match written {
            Ok(()) => {
                self.observe_commit(started);
                self.committed(head, sealed);
            }
            Err(err) => {
                self.count_failure(&err);
                tracing::warn!(
                    error = %err,
                    cause = FailureCause::of(&err).as_str(),
                    records = sealed.len(),
                    "audit batch commit failed; retrying its records one by one"
                );
                if self.reload_head(head) {
                    self.committed(head, sealed);
                } else {
                    self.retry_one_by_one(sealed);
                }
            }
        }
    }

    pub(super) fn observe_commit(&self, started: Instant) {
        if let Some(observer) = self.counters.commit_observer.get() {
            observer(started.elapsed());
        }
    }

    /// Records the commit of `batch`, whose last record is `head`, and acks its committers.
    pub(super) fn committed(&mut self, head: ChainHead, batch: Vec<Sealed>) {
        self.head = head;
        self.counters.transactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for item in batch {
            respond(item.ack, Ok(item.sealed.seq));
        }
    }

    /// One chunk of the retention pass with this cutoff; true when another chunk is due.
    fn prune_chunk(&mut self, cutoff_us: i64) -> bool {
        match retention::prune_chunk(
            &mut self.conn,
            self.head,
            cutoff_us,
            now_us(),
            self.prune_chunk,
        ) {
            Ok(Some(chunk)) => {
                self.head = chunk.head;
                self.counters.prunes.fetch_add(1, Ordering::Relaxed);
                self.counters.transactions.fetch_add(1, Ordering::Relaxed);
                self.counters.records.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    through_seq = chunk.through_seq,
                    cutoff_us,
                    "audit retention pruned old records"
                );
                chunk.more
            }
            Ok(None) => false,
            Err(err) => {
                tracing::error!(error = %err, "audit retention failed");
                // Like a failed batch: the file's head is the truth.
                let head = self.head;
                self.reload_head(head);
                false
            }
        }
    }

    /// Records that raced with shutdown: fail them rather than drop them silently.
    fn refuse_remaining(&self) {
        while let Ok(message) = self.receiver.try_recv() {
            if let Message::Append {
                record,
                journaled,
                ack,
            } = message
            {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                match ack {
                    Some(ack) => respond(Some(ack), Err(AuditError::WriterClosed)),
                    None if journaled.is_some() => tracing::warn!(
                        "audit record left in the request journal at shutdown; the next start folds it"
                    ),
                    None => tracing::error!(
                        kind = record.kind().as_str(),
                        "audit record dropped: the audit writer has shut down"
                    ),
                }
            }
        }
    }
}

pub(super) fn write(
    conn: &mut Connection,
    entries: &[(&SealedRecord, &index::IndexEntry)],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for (sealed, entry) in entries {
        sealed.insert(&tx)?;
        if index::apply(&tx, entry)? == Applied::Skipped {
            // Ids only: never bodies or header values.
            tracing::warn!(
                seq = sealed.seq,
                kind = sealed.columns.kind.as_str(),
                exchange_id = sealed.columns.exchange_id.as_deref(),
                connection_id = sealed.columns.connection_id.as_deref(),
                "audit record appended without its index row (no matching request or a duplicate id)"
            );
        }
    }
    tx.commit()
}

/// Acks a committer. It may have stopped waiting (its request was cancelled); nothing to do then.
pub(super) fn respond(ack: Option<Ack>, result: Result<u64, AuditError>) {
    if let Some(ack) = ack {
        let _ = ack.send(result);
    }
}
