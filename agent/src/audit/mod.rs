//! The audit store: durable, tamper-evident records of every connection and exchange.
//!
//! `records` is a SHA-256 hash chain and the source of truth (chain.rs); `exchanges` and
//! `connections` are query indexes derived from it (index.rs). A request's record becomes durable
//! in the request journal (journal.rs), appended by the request's own task; one writer thread
//! folds it and every other record into the chain with group commit (writer.rs), the syncer
//! fsyncs both (syncer.rs), and a start replays what a crash left in the journal (replay.rs).
//! The writer prunes old records in chunks (retention.rs); the CLI reads (reader.rs) and
//! verifies (verify.rs) through read-only connections; the sinks follow it from their cursors
//! (tail.rs).
pub mod chain;
pub mod governance;
pub mod index;
pub mod journal;
#[cfg(test)]
mod journal_tests;
pub mod query;
pub mod reader;
pub mod record;
mod replay;
mod retention;
pub mod schema;
pub mod store_health;
mod syncer;
pub mod tail;
#[cfg(test)]
pub(crate) mod testing;
pub mod verify;
pub mod writer;
mod writer_failures;
mod writer_thread;

use std::path::{Path, PathBuf};

pub use chain::PruneRecord;
pub use query::{ExchangeFilter, INCOMPLETE};
pub use reader::{format_timestamp_us, AuditReader, ExchangeDetail, ExchangeSummary};
pub use record::{
    AuditRecord, ConnectionRecord, Disposition, ExchangeRequest, ExchangeResponse,
    IdentitySnapshot, Outcome, RecordedBody, RequestParams, StreamEvent,
};
pub use verify::VerifyReport;
pub use writer::{AuditWriter, CommitObserver, Durability, WriterOptions, WriterStats};

/// The store's file inside the state directory.
pub fn audit_db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.db")
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("no audit store at {} (has the daemon run with this config?)", .0.display())]
    NoStore(PathBuf),
    #[error("audit store {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "audit store schema version {found} is newer than this warden understands ({known}); \
         upgrade warden"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(
        "audit store schema version {found} is older than this warden's ({known}); start the \
         daemon once to migrate it"
    )]
    SchemaOutdated { found: i64, known: i64 },
    /// Verification found the first record (by seq) that was altered, deleted or reordered.
    #[error("{what}")]
    ChainBroken { seq: u64, what: String },
    /// A stored record could not be read back (its body is not the record its kind says).
    #[error("audit record {seq} is unreadable: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("audit record could not be serialized: {0}")]
    Serialize(String),
    /// The transaction holding the record failed; the record was not stored.
    #[error("audit commit failed: {0}")]
    CommitFailed(String),
    #[error("the audit writer has shut down")]
    WriterClosed,
    /// Another process holds the store's write lock (found at start).
    #[error(
        "audit store {} is locked by another process (a second warden, or a tool holding a write \
         transaction); Warden does not run without recording. Find it with `fuser -v {}*`, stop \
         it, then start Warden again",
        path.display(), path.display()
    )]
    Locked { path: PathBuf },
    /// The store file is there but cannot be used; it is left exactly as it is.
    #[error(
        "audit store {} {problem}. Warden does not start a fresh store over it nor move it \
         aside: keep it as evidence (`warden audit verify` tells what is left), restore it from \
         a backup or move it away yourself, then start Warden again (a missing store is created \
         afresh)",
        path.display()
    )]
    Unusable { path: PathBuf, problem: String },
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
}
