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
            .filter(|name| !name.ends_with("-wal") && !name.ends_with("-shm"))
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
                "audit store {} is not a readable audit database (database disk image is \
                 malformed)",
                db.display()
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
