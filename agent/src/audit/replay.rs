//! The start-up replay: folds into the store every journaled request record that a crash kept
//! out of it, then deletes the journal's segments.
use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::{
    chain::{ChainHead, ChainRecord, SealedRecord},
    index::index_entry,
    journal::{self, SegmentRecords},
    record::ExchangeRequest,
    schema, writer_thread, AuditError,
};

/// What a replay did, for its log line and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Replayed {
    pub(super) segments: usize,
    /// Journaled records already in the store (the writer had folded them).
    pub(super) present: usize,
    /// Journaled records appended to the store now.
    pub(super) folded: usize,
    /// Records that could not be read back; their segments are kept for inspection.
    pub(super) unreadable: usize,
}

/// Folds the journal beside `db` into the store through the writer's connection, before the
/// writer thread starts. Returns the chain's new head.
pub(super) fn replay(
    conn: &mut Connection,
    mut head: ChainHead,
    db: &Path,
) -> Result<(ChainHead, Replayed), AuditError> {
    let dir = journal::dir_of(db);
    let io = |source| AuditError::Io {
        path: dir.clone(),
        source,
    };
    let segments = journal::segments(&dir).map_err(io)?;
    let mut replayed = Replayed {
        segments: segments.len(),
        ..Replayed::default()
    };
    if segments.is_empty() {
        return Ok((head, replayed));
    }
    let mut sealed = Vec::new();
    let mut keep = Vec::new();
    for (number, path) in &segments {
        let SegmentRecords {
            bodies,
            skipped_bytes,
        } = journal::read_segment(path).map_err(io)?;
        if skipped_bytes > 0 {
            tracing::warn!(
                segment = %path.display(),
                skipped_bytes,
                "request journal segment holds a partial write (an append cut short by a full \
                 disk or a power loss); the request it held was never forwarded"
            );
        }
        for body in bodies {
            let request = match serde_json::from_str::<ExchangeRequest>(&body) {
                Ok(request) => request,
                Err(error) => {
                    tracing::error!(segment = %path.display(), %error, "request journal record unreadable; its segment is kept");
                    replayed.unreadable += 1;
                    keep.push(*number);
                    continue;
                }
            };
            if is_recorded(conn, &request.exchange_id)? {
                replayed.present += 1;
                continue;
            }
            let record = ChainRecord::Request(request);
            let seal = SealedRecord::seal(head, &record, body);
            head = seal.head();
            let entry = index_entry(&record, seal.seq);
            sealed.push((seal, entry));
        }
    }
    if !sealed.is_empty() {
        let entries: Vec<_> = sealed.iter().map(|(s, e)| (s, e)).collect();
        writer_thread::write(conn, &entries)?;
        replayed.folded = sealed.len();
    }
    // The store's commit is durable before the journal that held the records goes.
    let wal = schema::sidecar(db, "-wal");
    match std::fs::File::open(&wal).and_then(|file| file.sync_data()) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(AuditError::Io {
                path: wal,
                source: error,
            })
        }
        _ => {}
    }
    #[cfg(feature = "fault-hooks")]
    crate::fault_hooks::hold_blocking(crate::fault_hooks::Point::ReplayBeforeForget);
    for (number, path) in &segments {
        if !keep.contains(number) {
            std::fs::remove_file(path).map_err(io)?;
        }
    }
    Ok((head, replayed))
}

/// The request of this exchange is in the store: its record and its index row are committed
/// in one transaction, so the row tells.
fn is_recorded(conn: &Connection, exchange_id: &str) -> Result<bool, AuditError> {
    let indexed = conn
        .prepare_cached("SELECT 1 FROM exchanges WHERE id = ?1")?
        .query_row([exchange_id], |_| Ok(()))
        .optional()?;
    Ok(indexed.is_some())
}
