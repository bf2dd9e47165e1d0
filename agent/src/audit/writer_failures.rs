//! The audit writer thread when the store refuses a transaction: the failed batch retried record
//! by record, a journaled request's record held until the store takes it, and what is lost.
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::{
    chain::{load_head, ChainHead, RecordColumns},
    store_health::FailureCause,
    writer_thread::{respond, write, Ack, Sealed, Thread},
    AuditError,
};

/// How long a stalled writer waits before it offers the store its record again.
const STALL_RETRY: Duration = Duration::from_millis(250);

impl Thread {
    /// After a failed batch, each record in its own transaction, so one bad record or a
    /// transient error does not take its neighbours down with it. A record that fails again is
    /// lost, except a journaled request's, which stalls the writer until the store takes it; the
    /// chain head only moves past records that committed, so the chain has no gap.
    pub(super) fn retry_one_by_one(&mut self, batch: Vec<Sealed>) {
        let total = batch.len();
        let mut lost = 0usize;
        // Still locked after the busy timeout: the rest would each wait it out again while every
        // request commit queues behind them, so they fail at once instead (all but journaled
        // requests' records, which are never dropped).
        let mut locked: Option<String> = None;
        for item in batch {
            if let Some(message) = locked.as_ref().filter(|_| !item.journaled) {
                let columns = item.sealed.columns.clone();
                self.lose(
                    item.ack,
                    AuditError::CommitFailed(message.clone()),
                    &columns,
                );
                lost += 1;
                continue;
            }
            let item = item.reseal(self.head);
            let head = item.sealed.head();
            let started = Instant::now();
            match write(&mut self.conn, &[(&item.sealed, &item.entry)]) {
                Ok(()) => {
                    self.observe_commit(started);
                    self.committed(head, vec![item]);
                }
                Err(err) => {
                    self.count_failure(&err);
                    if self.reload_head(head) {
                        self.committed(head, vec![item]);
                        continue;
                    }
                    if item.journaled {
                        self.stall(item, &err);
                        locked = None;
                        continue;
                    }
                    let message = err.to_string();
                    if is_locked(&err) {
                        locked = Some(message.clone());
                    }
                    let columns = item.sealed.columns.clone();
                    self.lose(item.ack, AuditError::CommitFailed(message), &columns);
                    lost += 1;
                }
            }
        }
        if lost > 0 {
            tracing::error!(
                lost,
                of = total,
                "audit records lost after retrying their batch"
            );
        }
    }

    /// A journaled request's record that the store refuses. The request may have gone upstream
    /// already, on the journal's durability, so the record is not dropped: the writer offers it
    /// again until the store takes it, holding every record queued after it (their order is the
    /// chain's), while `failing` makes new requests refused. At shutdown it gives up: the record
    /// stays in its journal segment, which the next start replays.
    fn stall(&mut self, mut item: Sealed, err: &rusqlite::Error) {
        self.counters.store_failed(err);
        tracing::error!(
            exchange_id = item.sealed.columns.exchange_id.as_deref(),
            "the audit store refuses records: holding the writer and refusing new requests until \
             it takes them (the held request is safe in the request journal)"
        );
        loop {
            if self.counters.closed.load(Ordering::SeqCst) {
                self.counters.failed_records.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    exchange_id = item.sealed.columns.exchange_id.as_deref(),
                    "audit record left in the request journal at shutdown; the next start folds it"
                );
                respond(item.ack, Err(AuditError::WriterClosed));
                return;
            }
            std::thread::sleep(STALL_RETRY);
            item = item.reseal(self.head);
            let head = item.sealed.head();
            let started = Instant::now();
            match write(&mut self.conn, &[(&item.sealed, &item.entry)]) {
                Err(err) if !self.reload_head(head) => {
                    self.count_failure(&err);
                    self.counters.store_failed(&err);
                }
                written => {
                    if written.is_ok() {
                        self.observe_commit(started);
                    }
                    self.committed(head, vec![item]);
                    self.counters.failing.store(false, Ordering::SeqCst);
                    tracing::info!("the audit store takes records again");
                    return;
                }
            }
        }
    }

    pub(super) fn count_failure(&self, err: &rusqlite::Error) {
        let counters = &self.counters;
        counters.failed_transactions.fetch_add(1, Ordering::Relaxed);
        counters.count_cause(FailureCause::of(err));
    }

    /// After a failed transaction, takes the head from the file: normally the rollback left it
    /// where it was, but if COMMIT failed after the data reached the file, reusing the old head
    /// would collide with those seqs in every later batch. True when the file's head is
    /// `expected`: the transaction did commit after all.
    pub(super) fn reload_head(&mut self, expected: ChainHead) -> bool {
        match load_head(&self.conn) {
            Ok(head) => {
                self.head = head;
                head == expected
            }
            Err(err) => {
                tracing::error!(error = %err, "audit head reload failed");
                false
            }
        }
    }

    /// A record that was not stored: its committer is told; a fire-and-forget one is logged by
    /// its ids (never its body). Counted either way.
    pub(super) fn lose(&self, ack: Option<Ack>, err: AuditError, columns: &RecordColumns) {
        self.counters.failed_records.fetch_add(1, Ordering::Relaxed);
        match ack {
            Some(ack) => respond(Some(ack), Err(err)),
            None => tracing::error!(
                kind = columns.kind.as_str(),
                exchange_id = columns.exchange_id.as_deref(),
                connection_id = columns.connection_id.as_deref(),
                error = %err,
                "audit record lost"
            ),
        }
    }
}

/// SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock past the busy timeout.
fn is_locked(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
