//! The audit syncer thread: with `synchronous=NORMAL`, fsyncs and checkpoints the WAL on a
//! schedule, so that neither ever stalls the writer (and the request waiting for its commit).
use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, mpsc, Arc},
    thread::JoinHandle,
    time::Duration,
};

use rusqlite::Connection;

use super::{schema, writer_thread::Counters, AuditError};

/// A running syncer; [`Syncer::stop`] syncs one last time and joins it.
pub(super) struct Syncer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Syncer {
    /// Every `interval` in which the writer committed: fsync the WAL, then checkpoint it
    /// (PASSIVE: never waits for, nor blocks, the writer) so it does not grow without bound.
    pub(super) fn start(
        db: &Path,
        interval: Duration,
        counters: Arc<Counters>,
    ) -> Result<Syncer, AuditError> {
        let conn = schema::open_for_checkpoints(db)?;
        let wal = schema::sidecar(db, "-wal");
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("audit-sync".into())
            .spawn(move || run(conn, wal, interval, counters, stopped))
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

fn run(
    conn: Connection,
    wal: PathBuf,
    interval: Duration,
    counters: Arc<Counters>,
    stopped: mpsc::Receiver<()>,
) {
    let mut synced = counters.transactions.load(Ordering::Relaxed);
    loop {
        let last_turn = match stopped.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        let now = counters.transactions.load(Ordering::Relaxed);
        if now != synced {
            synced = now;
            sync_and_checkpoint(&conn, &wal);
        }
        if last_turn {
            return;
        }
    }
}

/// The fsync makes every committed frame durable: SQLite's recovery keeps all frames up to the
/// last commit marker. The checkpoint then copies them into the database (and fsyncs it), after
/// which the writer starts the WAL over.
fn sync_and_checkpoint(conn: &Connection, wal: &Path) {
    // Through any descriptor of the file: SQLite's own is not reachable.
    if let Err(error) = File::open(wal).and_then(|file| file.sync_data()) {
        tracing::error!(
            path = %wal.display(),
            %error,
            "could not fsync the audit WAL; recent records survive a crash of warden, not of the host"
        );
        return;
    }
    let checkpoint = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(0)
    });
    if let Err(error) = checkpoint {
        tracing::warn!(%error, "audit WAL checkpoint failed; it is retried at the next sync");
    }
}
