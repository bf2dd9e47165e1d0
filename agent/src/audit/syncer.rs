//! The audit syncer thread (`sync = "interval"`): fsyncs the request journal and rotates its
//! segments, fsyncs and checkpoints the store's WAL, and deletes the journal segments the writer
//! has folded into it, so that none of this ever stalls a request or the writer.
use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, mpsc, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rusqlite::Connection;

use super::{
    journal::{Journal, Segment},
    schema,
    writer_thread::{Counters, Folded, Message},
    AuditError,
};

/// A segment is rotated once it is this old or this large (and not empty), so that folded
/// records leave the journal soon and a replay has little to read.
const ROTATE_EVERY: Duration = Duration::from_secs(1);
const ROTATE_BYTES: u64 = 16 << 20;
/// The WAL is checkpointed once it passes this size, or once the writer has paused: copying the
/// hot pages (the chain's last page, the indexes' last pages) into the database at every sync
/// rewrote them ten times a second under load.
const WAL_CHECKPOINT_BYTES: u64 = 16 << 20;
/// Past this size the WAL is checkpointed with RESTART, which waits for the writer between two
/// transactions: a PASSIVE checkpoint never catches a writer that never pauses, and the WAL then
/// grows without bound.
const WAL_RESTART_BYTES: u64 = 64 << 20;

/// A running syncer; [`Syncer::stop`] syncs one last time and joins it.
pub(super) struct Syncer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// The syncer's two lines to the writer thread: barriers out, answers back.
pub(super) type WriterLines = (mpsc::Sender<Message>, mpsc::Receiver<Folded>);

impl Syncer {
    pub(super) fn start(
        db: &Path,
        interval: Duration,
        counters: Arc<Counters>,
        journal: Arc<Journal>,
        (writer, folded): WriterLines,
    ) -> Result<Syncer, AuditError> {
        let state = State {
            conn: schema::open_for_checkpoints(db)?,
            wal: schema::sidecar(db, "-wal"),
            synced_transactions: counters.transactions.load(Ordering::Relaxed),
            counters,
            synced_journal: (journal.current().number, 0),
            journal,
            writer,
            folded,
            unanswered: Vec::new(),
            checkpoint_due: false,
            rotated_at: Instant::now(),
        };
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("audit-sync".into())
            .spawn(move || run(state, interval, stopped))
            .map_err(|source| AuditError::Io {
                path: db.to_owned(),
                source,
            })?;
        Ok(Syncer { stop, thread })
    }

    /// Call after the writer has committed its last transaction.
    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("the audit sync thread panicked");
        }
    }
}

struct State {
    conn: Connection,
    wal: PathBuf,
    counters: Arc<Counters>,
    /// The writer's transactions covered by the last WAL fsync.
    synced_transactions: u64,
    journal: Arc<Journal>,
    /// The current segment's number and the bytes of it the last fsync covered.
    synced_journal: (u64, u64),
    writer: mpsc::Sender<Message>,
    folded: mpsc::Receiver<Folded>,
    /// Folded segments waiting for a WAL fsync before they may be deleted.
    unanswered: Vec<Folded>,
    /// The writer committed since the last checkpoint.
    checkpoint_due: bool,
    rotated_at: Instant,
}

fn run(mut state: State, interval: Duration, stopped: mpsc::Receiver<()>) {
    loop {
        let last_turn = match stopped.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        if !last_turn {
            state.rotate_when_due();
        }
        state.sync_journal();
        state.sync_store();
        if last_turn {
            return;
        }
    }
}

impl State {
    /// Starts a new segment and asks the writer to answer once the old one's records are
    /// folded (they are all queued already: see `Journal::append`).
    fn rotate_when_due(&mut self) {
        let appended = self.journal.current().appended.load(Ordering::Relaxed);
        if appended == 0 || (self.rotated_at.elapsed() < ROTATE_EVERY && appended < ROTATE_BYTES) {
            return;
        }
        let old = match self.journal.rotate() {
            Ok(old) => old,
            Err(error) => {
                tracing::error!(%error, "could not start a new request journal segment; retrying at the next sync");
                return;
            }
        };
        self.rotated_at = Instant::now();
        sync_segment(&old);
        // The writer is gone only at shutdown; the segment is then replayed at the next start.
        let _ = self.writer.send(Message::Barrier(old.number));
    }

    fn sync_journal(&mut self) {
        let current = self.journal.current();
        let covered = (current.number, current.appended.load(Ordering::Relaxed));
        if covered != self.synced_journal && sync_segment(&current) {
            self.synced_journal = covered;
        }
    }

    /// The fsync makes every committed frame durable: SQLite's recovery keeps all frames up to
    /// the last commit marker. Then the folded segments can go, and the checkpoint copies the
    /// WAL into the database (and fsyncs it), after which the writer starts the WAL over.
    fn sync_store(&mut self) {
        self.unanswered.extend(self.folded.try_iter());
        let transactions = self.counters.transactions.load(Ordering::Relaxed);
        let paused = transactions == self.synced_transactions;
        if paused && self.unanswered.is_empty() {
            if self.checkpoint_due {
                let wal_bytes = std::fs::metadata(&self.wal).map_or(0, |m| m.len());
                self.checkpoint(wal_bytes);
            }
            return;
        }
        // Through any descriptor of the file: SQLite's own is not reachable.
        let synced = File::open(&self.wal).and_then(|file| {
            file.sync_data()?;
            Ok(file.metadata()?.len())
        });
        let wal_bytes = match synced {
            Ok(wal_bytes) => wal_bytes,
            Err(error) => {
                tracing::error!(
                    path = %self.wal.display(),
                    %error,
                    "could not fsync the audit WAL; recent records survive a crash of warden, not of the host"
                );
                return;
            }
        };
        self.synced_transactions = transactions;
        #[cfg(feature = "fault-hooks")]
        if !self.unanswered.is_empty() {
            crate::fault_hooks::hold_blocking(crate::fault_hooks::Point::BeforeForget);
        }
        for folded in self.unanswered.drain(..) {
            if !folded.clean {
                tracing::error!(
                    segment = folded.segment,
                    "request journal segment kept: a record in it is not in the audit store; the \
                     next start folds it"
                );
            } else if let Err(error) = self.journal.forget(folded.segment) {
                tracing::error!(segment = folded.segment, %error, "could not delete a folded request journal segment");
            }
        }
        self.checkpoint_due = true;
        if paused || wal_bytes > WAL_CHECKPOINT_BYTES {
            self.checkpoint(wal_bytes);
        }
    }

    fn checkpoint(&mut self, wal_bytes: u64) {
        self.checkpoint_due = false;
        let mode = if wal_bytes > WAL_RESTART_BYTES {
            "RESTART"
        } else {
            "PASSIVE"
        };
        let checkpoint =
            self.conn
                .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
                    row.get::<_, i64>(0)
                });
        if let Err(error) = checkpoint {
            tracing::warn!(%error, mode, "audit WAL checkpoint failed; it is retried at the next sync");
        }
    }
}

/// True when the segment's appends so far are on disk.
fn sync_segment(segment: &Segment) -> bool {
    match segment.file.sync_data() {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(
                segment = segment.number,
                %error,
                "could not fsync the request journal; recent requests' records survive a crash of \
                 warden, not of the host"
            );
            false
        }
    }
}
