//! Why the audit store cannot take records: locked by another process, not a database, damaged
//! or emptied at start (each refused with what to do, never replaced by a fresh store), and the
//! cause of a commit that failed while running (for the log and the metrics).
use std::{
    fs,
    path::{Path, PathBuf},
};

use rusqlite::{Connection, ErrorCode};

use super::AuditError;

/// Why a transaction failed, as the metrics label it (`warden_audit_write_failures{cause}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureCause {
    /// The disk (or the filesystem's quota) is full.
    DiskFull,
    /// Another process holds the store's write lock past the busy timeout.
    Locked,
    /// The file is damaged or no longer a database.
    Corrupt,
    /// Anything else: I/O errors, a read-only file.
    Other,
}

impl FailureCause {
    pub const ALL: [FailureCause; 4] = [
        FailureCause::DiskFull,
        FailureCause::Locked,
        FailureCause::Corrupt,
        FailureCause::Other,
    ];

    pub fn of(error: &rusqlite::Error) -> FailureCause {
        match error.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => FailureCause::DiskFull,
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => FailureCause::Locked,
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => FailureCause::Corrupt,
            _ => FailureCause::Other,
        }
    }

    /// The cause of a failed write to the request journal.
    pub fn of_io(error: &std::io::Error) -> FailureCause {
        match error.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => FailureCause::DiskFull,
            _ => FailureCause::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::DiskFull => "disk_full",
            FailureCause::Locked => "locked",
            FailureCause::Corrupt => "corrupt",
            FailureCause::Other => "other",
        }
    }
}

/// A store file that exists but is empty held records once (or a first start died before
/// writing the schema): SQLite would silently make it a fresh store, so it is refused.
pub(super) fn refuse_emptied(path: &Path) -> Result<(), AuditError> {
    let size_of = |path: &Path| fs::metadata(path).map(|m| m.len()).ok();
    match size_of(path) {
        Some(0) if size_of(&super::schema::sidecar(path, "-wal")).unwrap_or(0) == 0 => {
            Err(AuditError::Unusable {
                path: path.to_owned(),
                problem:
                    "exists but is empty (0 bytes): its records are gone, or an earlier first \
                          start died before creating it"
                        .into(),
            })
        }
        _ => Ok(()),
    }
}

/// A store shorter than its own header says lost its end (a truncated copy, a disk error): SQLite
/// would only notice when it reads a missing page, perhaps long after the start. Only checked
/// without a WAL: a checkpoint that died half way leaves the file short until the WAL is replayed.
pub(super) fn refuse_truncated(path: &Path) -> Result<(), AuditError> {
    let wal = super::schema::sidecar(path, "-wal");
    if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Ok(());
    }
    let Ok(mut file) = fs::File::open(path) else {
        return Ok(());
    };
    let mut header = [0u8; 100];
    if std::io::Read::read_exact(&mut file, &mut header).is_err()
        || &header[..16] != b"SQLite format 3\0"
    {
        return Ok(()); // Not a database at all: SQLite says so when it opens it.
    }
    let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    // The page count is valid only when written by a version that keeps it (file format §1.3.7).
    if be32(24) != be32(92) {
        return Ok(());
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        size => u64::from(size),
    };
    let expected = page_size * u64::from(be32(28));
    let actual = file.metadata().map(|m| m.len()).unwrap_or(expected);
    if actual < expected {
        return Err(AuditError::Unusable {
            path: path.to_owned(),
            problem: format!(
                "is truncated: its header counts {expected} bytes, the file has {actual}"
            ),
        });
    }
    Ok(())
}

/// Takes the write lock once and lets it go, so that a store another process holds stops the
/// start instead of every request after it.
pub(super) fn probe_writable(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
}

/// The error of opening the store at `path`, with what the operator should do about it.
pub(super) fn at_open(error: AuditError, path: &Path) -> AuditError {
    let AuditError::Sqlite(sqlite) = &error else {
        return error;
    };
    let path: PathBuf = path.to_owned();
    match FailureCause::of(sqlite) {
        FailureCause::Locked => AuditError::Locked { path },
        FailureCause::Corrupt => AuditError::Unusable {
            path,
            problem: format!("is not a readable audit database ({sqlite})"),
        },
        FailureCause::DiskFull | FailureCause::Other => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{
        testing::{self, identity, store, T0},
        AuditWriter, WriterOptions,
    };

    /// A store with `n` exchanges, its writer shut down (WAL checkpointed into the file).
    fn populated(n: i64) -> (tempfile::TempDir, PathBuf) {
        let (dir, db) = store();
        let records = (0..n).flat_map(|i| {
            testing::exchange(&format!("ex-{i}"), T0 + i * 1_000_000, identity(7, None))
        });
        testing::write(&db, records);
        (dir, db)
    }

    fn start_error(db: &Path) -> String {
        match AuditWriter::start(db, WriterOptions::default()) {
            Ok(_) => panic!("the writer started on {}", db.display()),
            Err(error) => error.to_string(),
        }
    }

    /// Nothing was created, renamed or rewritten in the store's directory.
    fn assert_untouched(db: &Path, bytes: &[u8]) {
        assert_eq!(fs::read(db).unwrap(), bytes, "the store's bytes changed");
        let names: Vec<_> = fs::read_dir(db.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| {
                !["-wal", "-shm", "-requests"]
                    .iter()
                    .any(|s| name.ends_with(s))
            })
            .collect();
        assert_eq!(names, ["audit.db"], "no store was made or moved aside");
    }

    #[test]
    fn garbage_over_the_store_is_refused_and_left_alone() {
        let (_dir, db) = populated(3);
        let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7919 % 251) as u8).collect();
        fs::write(&db, &garbage).unwrap();
        let error = start_error(&db);
        assert!(
            error.starts_with(&format!(
                "audit store {} is not a readable audit database (file is not a database). \
                 Warden does not start a fresh store over it",
                db.display()
            )),
            "{error}"
        );
        assert_untouched(&db, &garbage);
    }

    #[test]
    fn a_truncated_store_is_refused_and_left_alone() {
        let (_dir, db) = populated(200);
        let whole = fs::read(&db).unwrap();
        let half = &whole[..whole.len() / 2];
        fs::write(&db, half).unwrap();
        let error = start_error(&db);
        assert!(
            error.starts_with(&format!(
                "audit store {} is truncated: its header counts {} bytes, the file has {}. \
                 Warden does not start a fresh store over it",
                db.display(),
                whole.len(),
                half.len()
            )),
            "{error}"
        );
        assert_untouched(&db, half);
    }

    #[test]
    fn an_emptied_store_is_refused_not_started_afresh() {
        let (_dir, db) = populated(1);
        fs::write(&db, b"").unwrap();
        let error = start_error(&db);
        assert!(
            error.starts_with(&format!(
                "audit store {} exists but is empty (0 bytes)",
                db.display()
            )),
            "{error}"
        );
        assert_untouched(&db, b"");
    }

    #[test]
    fn failure_causes_come_from_sqlite_codes() {
        let error = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        let cause = |code| FailureCause::of(&error(code)).as_str();
        assert_eq!(cause(rusqlite::ffi::SQLITE_FULL), "disk_full");
        assert_eq!(cause(rusqlite::ffi::SQLITE_BUSY), "locked");
        assert_eq!(cause(rusqlite::ffi::SQLITE_CORRUPT), "corrupt");
        assert_eq!(cause(rusqlite::ffi::SQLITE_IOERR), "other");
    }
}
