//! Opening the store: directory and file modes, pragmas, and versioned schema migrations.
use std::{
    fs::{self, DirBuilder, OpenOptions, Permissions},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{store_health, AuditError, Durability};

/// Migration N (1-based) brings `PRAGMA user_version` from N-1 to N. Never edit a shipped one:
/// append a new one.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The newest schema this build understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// meta keys: the head that retention pruned up to, which the chain now starts after.
pub const META_ANCHOR_SEQ: &str = "anchor_seq";
pub const META_ANCHOR_HASH: &str = "anchor_hash";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const V1: &str = r#"
CREATE TABLE records (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    exchange_id TEXT,
    connection_id TEXT,
    at_us INTEGER NOT NULL,
    body TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE exchanges (
    id TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL,
    started_us INTEGER NOT NULL,
    ended_us INTEGER,
    pid INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    "user" TEXT,
    account TEXT,
    unit TEXT,
    cgroup TEXT,
    exe TEXT,
    k8s_sa TEXT,
    container TEXT,
    method TEXT NOT NULL,
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT,
    status INTEGER,
    outcome TEXT,
    reason TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    total_tokens INTEGER,
    ttfb_ms REAL,
    duration_ms REAL,
    request_seq INTEGER NOT NULL,
    response_seq INTEGER
);
CREATE INDEX exchanges_started ON exchanges (started_us);
CREATE INDEX exchanges_account ON exchanges (account, started_us);
CREATE INDEX exchanges_unit ON exchanges (unit, started_us);
CREATE INDEX exchanges_user ON exchanges ("user", started_us);
CREATE INDEX exchanges_uid ON exchanges (uid, started_us);
CREATE INDEX exchanges_exe ON exchanges (exe, started_us);
CREATE INDEX exchanges_cgroup ON exchanges (cgroup, started_us);
CREATE INDEX exchanges_model ON exchanges (model, started_us);
CREATE INDEX exchanges_pid ON exchanges (pid, started_us);
CREATE INDEX exchanges_endpoint ON exchanges (endpoint, started_us);
CREATE INDEX exchanges_outcome ON exchanges (outcome, started_us);
CREATE INDEX exchanges_request_seq ON exchanges (request_seq);
CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    started_us INTEGER NOT NULL,
    ended_us INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    account TEXT,
    unit TEXT,
    original_dst TEXT NOT NULL,
    server_name TEXT,
    disposition TEXT NOT NULL,
    bytes_from_client INTEGER NOT NULL,
    bytes_to_client INTEGER NOT NULL
);
CREATE INDEX connections_started ON connections (started_us);
CREATE INDEX connections_seq ON connections (seq);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// Governance records (approvals, revocations) are found by kind and exchange; a partial index,
/// so inserting the other records costs nothing more.
const V2: &str = r#"
CREATE INDEX records_governance ON records (exchange_id, seq) WHERE kind = 'governance';
"#;

/// The writer's page cache.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// What the WAL file is truncated to when it restarts after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// A second read-write connection, for the syncer's checkpoints only (the writer has migrated the
/// store already). `synchronous=NORMAL` so that a checkpoint fsyncs the WAL and the database.
pub(super) fn open_for_checkpoints(path: &Path) -> Result<Connection, AuditError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Opens (creating if needed) the store for the writer: directory 0700, files 0600, WAL,
/// `synchronous=FULL` for [`Durability::EveryCommit`] and `NORMAL` otherwise (the syncer thread
/// then fsyncs and checkpoints the WAL), schema migrated to `SCHEMA_VERSION`.
pub fn open_for_writing(path: &Path, durability: Durability) -> Result<Connection, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(io)?;
    }
    store_health::refuse_emptied(path)?;
    store_health::refuse_truncated(path)?;
    // Created by us with 0600 before SQLite sees it, so no umask can widen it; O_NOFOLLOW so a
    // planted symlink cannot redirect root's writes.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io)?;
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(io)?;
    drop(file);

    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AuditError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(format!("journal_mode is {mode}, not wal")),
        });
    }
    match durability {
        Durability::EveryCommit => conn.pragma_update(None, "synchronous", "FULL")?,
        Durability::Interval(_) => {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            // The syncer thread checkpoints; a checkpoint inside a commit would stall the
            // request waiting for it (an fsync of the database, and of the WAL, each time).
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            // A burst can grow the WAL; it is cut back to this when it starts over.
            conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        }
    }
    // The indexes' last pages, where every insert lands, stay cached between transactions; at
    // SQLite's default of 2 MiB a large store's inserts fetched pages again.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    migrate(&mut conn)?;
    store_health::probe_writable(&conn)?;
    // SQLite gives these the database file's mode already; make sure of it anyway.
    for companion in [sidecar(path, "-wal"), sidecar(path, "-shm")] {
        match fs::set_permissions(&companion, Permissions::from_mode(0o600)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(io(err)),
            _ => {}
        }
    }
    Ok(conn)
}

/// Opens an existing store read-only (the CLI); never creates or migrates it.
pub fn open_read_only(path: &Path) -> Result<Connection, AuditError> {
    if !path.is_file() {
        return Err(AuditError::NoStore(path.to_owned()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // 64 MiB of page cache: a list or verify over a large store reads many index pages.
    conn.pragma_update(None, "cache_size", -65536)?;
    let version = user_version(&conn)?;
    if version == 0 {
        return Err(AuditError::NoStore(path.to_owned()));
    }
    if version > SCHEMA_VERSION {
        return Err(AuditError::SchemaTooNew {
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version < SCHEMA_VERSION {
        return Err(AuditError::SchemaOutdated {
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), AuditError> {
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(AuditError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn user_version(conn: &Connection) -> Result<i64, AuditError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// SQLite's companion file of `path` (`-wal`, `-shm`).
pub(super) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, AuditError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()?)
}

pub fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<(), AuditError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_files_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let db = super::super::audit_db_path(&state);
        let conn = open_for_writing(&db, Durability::EveryCommit).unwrap();
        conn.execute("INSERT INTO meta (key, value) VALUES ('probe', 'x')", [])
            .unwrap();
        assert_eq!(mode_of(&state), 0o700);
        assert_eq!(mode_of(&db), 0o600);
        assert_eq!(mode_of(&sidecar(&db, "-wal")), 0o600);
        assert_eq!(mode_of(&sidecar(&db, "-shm")), 0o600);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn interval_durability_leaves_the_fsync_to_the_syncer() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let conn = open_for_writing(&db, Durability::default()).unwrap();
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL");
        let autocheckpoint: i64 = conn
            .pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0))
            .unwrap();
        assert_eq!(autocheckpoint, 0, "the syncer checkpoints, never a commit");
    }

    #[test]
    fn tightens_existing_modes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        drop(open_for_writing(&db, Durability::default()).unwrap());
        fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();
        drop(open_for_writing(&db, Durability::default()).unwrap());
        assert_eq!(mode_of(dir.path()), 0o700);
        assert_eq!(mode_of(&db), 0o600);
    }

    #[test]
    fn migrations_are_idempotent_and_newer_schemas_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        drop(open_for_writing(&db, Durability::default()).unwrap());
        let conn = open_for_writing(&db, Durability::default()).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        meta_set(&conn, "k", "v1").unwrap();
        meta_set(&conn, "k", "v2").unwrap();
        assert_eq!(meta_get(&conn, "k").unwrap().as_deref(), Some("v2"));
        drop(open_read_only(&db).unwrap());

        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            open_for_writing(&db, Durability::default()),
            Err(AuditError::SchemaTooNew { .. })
        ));
        assert!(matches!(
            open_read_only(&db),
            Err(AuditError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn read_only_open_of_a_missing_store_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let err = open_read_only(&db).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "no audit store at {} (has the daemon run",
                db.display()
            )),
            "{err}"
        );
        assert!(!db.exists());
    }
}
