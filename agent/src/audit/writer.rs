//! The audit writer's handle: replays the request journal, starts the one thread that owns the
//! write connection (writer_thread.rs) and the syncer, puts requests on durable record, queues
//! records and waits for their commit.
use std::{
    path::Path,
    sync::{atomic::Ordering, mpsc, Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::oneshot;

use crate::config::{AuditConfig, AuditSync};

use super::{
    chain::{load_head, ChainRecord},
    journal::{self, Journal},
    record::{AuditRecord, ExchangeRequest},
    replay::replay,
    retention::PRUNE_CHUNK,
    schema,
    store_health::{self, FailureCause},
    syncer::Syncer,
    writer_thread::{Ack, Counters, Message, Thread},
    AuditError,
};

/// When a request's record is forced to disk. Either way it is written (so it survives Warden
/// being killed) before the request is forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The request waits for the commit of its record into the store, fsynced: survives power
    /// loss, and puts a thread hop, a transaction and an fsync (0.3–1 ms on common disks) on the
    /// path of every request.
    EveryCommit,
    /// The request's record is appended to the request journal by the request's own task; the
    /// journal is fsynced at most this long later, so power loss or a kernel crash can lose
    /// that window. The writer folds it into the store meanwhile.
    Interval(Duration),
}

/// The default: commits are fsynced within `[audit] sync_interval_ms`'s default.
pub const DEFAULT_SYNC_INTERVAL: Duration =
    Duration::from_millis(crate::config::DEFAULT_AUDIT_SYNC_INTERVAL_MS);

impl AuditConfig {
    /// The writer's options this section asks for.
    pub fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            retention_days: self.retention_days,
            durability: match self.sync {
                AuditSync::Commit => Durability::EveryCommit,
                AuditSync::Interval => {
                    Durability::Interval(Duration::from_millis(self.sync_interval_ms))
                }
            },
        }
    }
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Interval(DEFAULT_SYNC_INTERVAL)
    }
}

/// How the writer keeps the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterOptions {
    /// Records older than this are pruned, first at start and then every hour. `None`: kept forever.
    pub retention_days: Option<u32>,
    pub durability: Durability,
}

/// Counters for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records committed (prune records included).
    pub records: u64,
    /// Transactions committed that held records (prunes included).
    pub transactions: u64,
    /// Failed transactions: failed batches and failed single-record retries.
    pub failed_transactions: u64,
    /// Records not stored: unserializable, or failed again when their batch was retried.
    pub failed_records: u64,
    /// Retention chunks committed (one prune record each).
    pub prunes: u64,
}

/// Called by the writer thread with the duration of each transaction that committed records.
pub type CommitObserver = Box<dyn Fn(Duration) + Send + Sync>;

/// The handle to the writer thread; cheap to clone, shared by every connection task.
#[derive(Clone)]
pub struct AuditWriter {
    shared: Arc<Shared>,
}

struct Shared {
    sender: mpsc::Sender<Message>,
    /// With [`Durability::Interval`]: where requests' records become durable.
    journal: Option<Arc<Journal>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// With [`Durability::Interval`]: fsyncs and checkpoints the WAL.
    syncer: Mutex<Option<Syncer>>,
    counters: Arc<Counters>,
}

impl AuditWriter {
    /// Opens (creating or migrating) the store, folds into it what the request journal holds,
    /// and starts the writer thread (and, with [`Durability::Interval`], the syncer).
    pub fn start(db: &Path, options: WriterOptions) -> Result<AuditWriter, AuditError> {
        let opened = schema::open_for_writing(db, options.durability)
            .and_then(|conn| load_head(&conn).map(|head| (conn, head)));
        let (mut conn, head) = opened.map_err(|error| store_health::at_open(error, db))?;
        let (head, replayed) = replay(&mut conn, head, db)?;
        if replayed.segments > 0 {
            tracing::info!(
                segments = replayed.segments,
                folded = replayed.folded,
                already_stored = replayed.present,
                unreadable = replayed.unreadable,
                "request journal replayed into the audit store"
            );
        }
        let journal = match options.durability {
            Durability::EveryCommit => None,
            Durability::Interval(_) => {
                let dir = journal::dir_of(db);
                let opened =
                    Journal::open(&dir).map_err(|source| AuditError::Io { path: dir, source })?;
                Some(Arc::new(opened))
            }
        };
        let (sender, receiver) = mpsc::channel();
        let (folded, folded_answers) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let thread = Thread {
            conn,
            head,
            receiver,
            retention_days: options.retention_days,
            prune_chunk: PRUNE_CHUNK,
            counters: Arc::clone(&counters),
            folded: journal.is_some().then_some(folded),
            failed_at_barrier: 0,
        };
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || thread.run())
            .map_err(|source| AuditError::Io {
                path: db.to_owned(),
                source,
            })?;
        let syncer = match (options.durability, &journal) {
            (Durability::Interval(interval), Some(journal)) => Some(Syncer::start(
                db,
                interval,
                Arc::clone(&counters),
                Arc::clone(journal),
                (sender.clone(), folded_answers),
            )?),
            _ => None,
        };
        Ok(AuditWriter {
            shared: Arc::new(Shared {
                sender,
                journal,
                thread: Mutex::new(Some(handle)),
                syncer: Mutex::new(syncer),
                counters,
            }),
        })
    }

    /// Puts a request's record on durable record; the request may be forwarded once this is
    /// Ok. With the journal, the calling task appends it there and queues it for the store,
    /// without waiting for the store; without, it waits for the store's fsynced commit.
    /// Refused while the store is not taking records, so that a failing store fails closed.
    pub async fn record_request(&self, request: ExchangeRequest) -> Result<(), AuditError> {
        let Some(journal) = &self.shared.journal else {
            return self.commit(AuditRecord::Request(request)).await.map(drop);
        };
        if self.shared.counters.closed.load(Ordering::SeqCst) {
            return Err(AuditError::WriterClosed);
        }
        if let Some(failure) = self.store_failure() {
            return Err(AuditError::CommitFailed(failure));
        }
        let record = ChainRecord::Request(request);
        let body = record.canonical_body()?;
        let appended = journal.append(body, |body| {
            self.queue(Message::Append {
                record,
                journaled: Some(body),
                ack: None,
            })
        });
        appended.unwrap_or_else(|source| {
            let cause = FailureCause::of_io(&source);
            self.shared.counters.count_cause(cause);
            tracing::warn!(cause = cause.as_str(), error = %source, "request journal append failed");
            Err(AuditError::Io {
                path: journal.dir().to_owned(),
                source,
            })
        })
    }

    /// Appends `record` and resolves, with the record's seq, once the transaction holding it has
    /// committed (and, with [`Durability::EveryCommit`], been fsynced).
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
        self.shared.counters.closed.store(true, Ordering::SeqCst);
        // A send error means the thread is already gone.
        let _ = self.shared.sender.send(Message::Shutdown);
        let handle = lock(&self.shared.thread).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the audit writer thread panicked");
            }
        }
        // After the writer's last commit, so that it is fsynced too.
        let syncer = lock(&self.shared.syncer).take();
        if let Some(syncer) = syncer {
            syncer.stop();
        }
    }

    pub fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        WriterStats {
            records: c.records.load(Ordering::Relaxed),
            transactions: c.transactions.load(Ordering::Relaxed),
            failed_transactions: c.failed_transactions.load(Ordering::Relaxed),
            failed_records: c.failed_records.load(Ordering::Relaxed),
            prunes: c.prunes.load(Ordering::Relaxed),
        }
    }

    /// Failed transactions so far, by cause (disk full, locked, …).
    pub fn failures_by_cause(&self) -> Vec<(store_health::FailureCause, u64)> {
        let counts = &self.shared.counters.failures_by_cause;
        store_health::FailureCause::ALL
            .iter()
            .zip(counts)
            .map(|(cause, count)| (*cause, count.load(Ordering::Relaxed)))
            .collect()
    }

    /// Why the store refuses a journaled record the writer is holding, while it does (new
    /// requests are refused meanwhile).
    pub fn store_failure(&self) -> Option<String> {
        self.shared.counters.failing()
    }

    /// Records queued and not yet taken into a transaction.
    pub fn queue_depth(&self) -> u64 {
        self.shared.counters.queued.load(Ordering::Relaxed)
    }

    /// Hands every committed transaction's duration to `observer` (metrics). Set once; a second
    /// observer is ignored.
    pub fn observe_commits(&self, observer: CommitObserver) {
        if self.shared.counters.commit_observer.set(observer).is_err() {
            tracing::warn!("the audit writer already has a commit observer");
        }
    }

    fn send(&self, record: ChainRecord, ack: Option<Ack>) -> Result<(), AuditError> {
        if self.shared.counters.closed.load(Ordering::SeqCst) {
            return Err(AuditError::WriterClosed);
        }
        self.queue(Message::Append {
            record,
            journaled: None,
            ack,
        })
    }

    fn queue(&self, append: Message) -> Result<(), AuditError> {
        // Counted before the send, so that the thread never takes one out before it is in.
        let queued = &self.shared.counters.queued;
        queued.fetch_add(1, Ordering::Relaxed);
        let sent = self.shared.sender.send(append);
        if sent.is_err() {
            queued.fetch_sub(1, Ordering::Relaxed);
        }
        sent.map_err(|_| AuditError::WriterClosed)
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

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
