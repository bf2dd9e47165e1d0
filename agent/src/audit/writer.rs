//! The audit writer: one thread owns the write connection, appends records to the chain with group
//! commit, and applies retention.
use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::{
    chain::{load_head, to_hex, ChainHead, ChainRecord, PruneRecord, SealedRecord},
    index::{self, index_entry, Applied},
    record::AuditRecord,
    schema::{self, META_ANCHOR_HASH, META_ANCHOR_SEQ},
    AuditError,
};

/// Records per transaction at most, so one transaction stays bounded under a burst.
const BATCH_CAP: usize = 4096;
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
const MICROS_PER_DAY: i64 = 86_400_000_000;

type Ack = oneshot::Sender<Result<u64, AuditError>>;

// Records are moved through the channel once; Shutdown is sent once per writer.
#[allow(clippy::large_enum_variant)]
enum Message {
    Append {
        record: ChainRecord,
        ack: Option<Ack>,
    },
    Shutdown,
}

/// Counters for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records committed (prune records included).
    pub records: u64,
    /// Transactions committed that held records (prunes included).
    pub transactions: u64,
    pub failed_transactions: u64,
    pub prunes: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    transactions: AtomicU64,
    failed_transactions: AtomicU64,
    prunes: AtomicU64,
}

/// The handle to the writer thread; cheap to clone, shared by every connection task.
#[derive(Clone)]
pub struct AuditWriter {
    shared: Arc<Shared>,
}

struct Shared {
    sender: mpsc::Sender<Message>,
    closed: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl AuditWriter {
    /// Opens (creating or migrating) the store and starts the writer thread. With
    /// `retention_days`, the thread prunes first and then every hour.
    pub fn start(db: &Path, retention_days: Option<u32>) -> Result<AuditWriter, AuditError> {
        let conn = schema::open_for_writing(db)?;
        let head = load_head(&conn)?;
        let (sender, receiver) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let thread = Thread {
            conn,
            head,
            receiver,
            retention_days,
            counters: Arc::clone(&counters),
        };
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || thread.run())
            .map_err(|source| AuditError::Io {
                path: db.to_owned(),
                source,
            })?;
        Ok(AuditWriter {
            shared: Arc::new(Shared {
                sender,
                closed: AtomicBool::new(false),
                thread: Mutex::new(Some(handle)),
                counters,
            }),
        })
    }

    /// Appends `record` and resolves once the transaction holding it has committed (fsynced),
    /// with the record's seq.
    pub async fn commit(&self, record: AuditRecord) -> Result<u64, AuditError> {
        let (ack, done) = oneshot::channel();
        self.send(record.into(), Some(ack))?;
        done.await.map_err(|_| AuditError::WriterClosed)?
    }

    /// `commit` for threads outside the async runtime (benchmarks, tools). Panics if called from
    /// inside an async context, like `oneshot::Receiver::blocking_recv`.
    pub fn commit_blocking(&self, record: AuditRecord) -> Result<u64, AuditError> {
        let (ack, done) = oneshot::channel();
        self.send(record.into(), Some(ack))?;
        done.blocking_recv().map_err(|_| AuditError::WriterClosed)?
    }

    /// Appends `record` without waiting; the writer logs a failure.
    pub fn submit(&self, record: AuditRecord) {
        let record = ChainRecord::from(record);
        let kind = record.kind().as_str();
        if self.send(record, None).is_err() {
            tracing::error!(kind, "audit record dropped: the audit writer has shut down");
        }
    }

    /// Commits everything queued, stops the thread and waits for it. Blocking: call it from
    /// `spawn_blocking` inside a runtime. Later records are refused with `WriterClosed`.
    pub fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        // A send error means the thread is already gone.
        let _ = self.shared.sender.send(Message::Shutdown);
        let handle = lock(&self.shared.thread).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the audit writer thread panicked");
            }
        }
    }

    pub fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        WriterStats {
            records: c.records.load(Ordering::Relaxed),
            transactions: c.transactions.load(Ordering::Relaxed),
            failed_transactions: c.failed_transactions.load(Ordering::Relaxed),
            prunes: c.prunes.load(Ordering::Relaxed),
        }
    }

    fn send(&self, record: ChainRecord, ack: Option<Ack>) -> Result<(), AuditError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(AuditError::WriterClosed);
        }
        self.shared
            .sender
            .send(Message::Append { record, ack })
            .map_err(|_| AuditError::WriterClosed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded Option<JoinHandle> stays valid whatever panicked while it was held.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

struct Pending {
    record: ChainRecord,
    ack: Option<Ack>,
}

struct Thread {
    conn: Connection,
    /// Advanced only after a transaction commits: a failed batch leaves no gap in the chain.
    head: ChainHead,
    receiver: mpsc::Receiver<Message>,
    retention_days: Option<u32>,
    counters: Arc<Counters>,
}

impl Thread {
    fn run(mut self) {
        let mut next_prune = Instant::now();
        loop {
            if let Some(days) = self.retention_days {
                if Instant::now() >= next_prune {
                    if let Err(err) = self.prune(days) {
                        tracing::error!(error = %err, "audit retention failed");
                    }
                    next_prune = Instant::now() + PRUNE_INTERVAL;
                }
            }
            let first = match self.retention_days {
                Some(_) => match self
                    .receiver
                    .recv_timeout(next_prune.saturating_duration_since(Instant::now()))
                {
                    Ok(message) => message,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
                None => match self.receiver.recv() {
                    Ok(message) => message,
                    Err(mpsc::RecvError) => return,
                },
            };
            let mut batch = Vec::new();
            let mut stop = false;
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Append { record, ack } => batch.push(Pending { record, ack }),
                    Message::Shutdown => {
                        stop = true;
                        break;
                    }
                }
                next = (batch.len() < BATCH_CAP)
                    .then(|| self.receiver.try_recv().ok())
                    .flatten();
            }
            self.commit_batch(batch);
            if stop {
                self.refuse_remaining();
                return;
            }
        }
    }

    fn commit_batch(&mut self, batch: Vec<Pending>) {
        let mut head = self.head;
        let mut sealed = Vec::with_capacity(batch.len());
        for Pending { record, ack } in batch {
            // A record that cannot be serialized fails alone, not its whole batch.
            match record.canonical_body() {
                Ok(body) => {
                    let record_sealed = SealedRecord::seal(head, &record, body);
                    head = record_sealed.head();
                    sealed.push((record_sealed, index_entry(&record, head.seq), ack));
                }
                Err(err) => respond(ack, Err(err), record.kind().as_str()),
            }
        }
        if sealed.is_empty() {
            return;
        }
        let entries: Vec<_> = sealed.iter().map(|(s, e, _)| (s, e)).collect();
        match write(&mut self.conn, &entries) {
            Ok(()) => {
                self.head = head;
                self.counters.transactions.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .records
                    .fetch_add(sealed.len() as u64, Ordering::Relaxed);
                for (record, _, ack) in sealed {
                    respond(ack, Ok(record.seq), record.columns.kind.as_str());
                }
            }
            Err(err) => {
                self.counters
                    .failed_transactions
                    .fetch_add(1, Ordering::Relaxed);
                let message = err.to_string();
                tracing::error!(error = %message, records = sealed.len(), "audit commit failed");
                // Normally the rollback left the head where it was. If COMMIT failed after the
                // data reached the file, the file's head is the truth: reusing the old head
                // would collide with those seqs in every later batch.
                match load_head(&self.conn) {
                    Ok(head) => self.head = head,
                    Err(err) => tracing::error!(error = %err, "audit head reload failed"),
                }
                for (record, _, ack) in sealed {
                    let failure = Err(AuditError::CommitFailed(message.clone()));
                    respond(ack, failure, record.columns.kind.as_str());
                }
            }
        }
    }

    /// Deletes the longest prefix of the chain older than the cutoff, appends a prune record and
    /// moves the anchor to the last deleted record.
    fn prune(&mut self, days: u32) -> Result<(), AuditError> {
        let now = now_us();
        let cutoff_us = now.saturating_sub(i64::from(days).saturating_mul(MICROS_PER_DAY));
        let through = {
            let mut statement = self
                .conn
                .prepare("SELECT seq, at_us, hash FROM records ORDER BY seq")?;
            let mut rows = statement.query([])?;
            let mut through: Option<(i64, Vec<u8>)> = None;
            while let Some(row) = rows.next()? {
                if row.get::<_, i64>(1)? >= cutoff_us {
                    break;
                }
                through = Some((row.get(0)?, row.get(2)?));
            }
            through
        };
        let Some((through_seq, through_hash)) = through else {
            return Ok(());
        };
        let record = ChainRecord::Prune(PruneRecord {
            through_seq: through_seq.max(0) as u64,
            through_hash: to_hex(&through_hash),
            cutoff_us,
            pruned_at_us: now,
        });
        let sealed = SealedRecord::seal(self.head, &record, record.canonical_body()?);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM records WHERE seq <= ?1", [through_seq])?;
        index::apply(&tx, &index_entry(&record, sealed.seq))?;
        sealed.insert(&tx)?;
        schema::meta_set(&tx, META_ANCHOR_SEQ, &through_seq.to_string())?;
        schema::meta_set(&tx, META_ANCHOR_HASH, &to_hex(&through_hash))?;
        tx.commit()?;
        self.head = sealed.head();
        self.counters.prunes.fetch_add(1, Ordering::Relaxed);
        self.counters.transactions.fetch_add(1, Ordering::Relaxed);
        self.counters.records.fetch_add(1, Ordering::Relaxed);
        tracing::info!(through_seq, cutoff_us, "audit retention pruned old records");
        Ok(())
    }

    /// Records that raced with shutdown: fail them rather than drop them silently.
    fn refuse_remaining(&self) {
        while let Ok(message) = self.receiver.try_recv() {
            if let Message::Append { record, ack } = message {
                respond(ack, Err(AuditError::WriterClosed), record.kind().as_str());
            }
        }
    }
}

fn write(
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

/// Acks a committer, or logs the failure of a fire-and-forget record.
fn respond(ack: Option<Ack>, result: Result<u64, AuditError>, kind: &str) {
    match ack {
        // The committer may have stopped waiting (its request was cancelled); nothing to do then.
        Some(ack) => {
            let _ = ack.send(result);
        }
        None => {
            if let Err(err) = result {
                tracing::error!(kind, error = %err, "audit record lost");
            }
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
