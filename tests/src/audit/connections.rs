//! The connection records of an audit store, read with `sqlite3` (no CLI lists them): the chain's
//! `connection` records and the `connections` index rows derived from them.

use std::path::Path;

use serde_json::Value;

use super::{db_path, sqlite, RECORD_TIMEOUT};
use crate::daemon::Daemon;
use crate::wait;

/// The body of every `connection` record in the chain, oldest first.
pub fn records(db: &Path) -> Vec<Value> {
    // A missing table means the store is not created yet: nothing recorded so far.
    let tables = sqlite::query(
        db,
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'records'",
    );
    if tables != "1" {
        return Vec::new();
    }
    // Canonical JSON escapes control characters, so each body is one line.
    sqlite::query(
        db,
        "SELECT body FROM records WHERE kind = 'connection' ORDER BY seq",
    )
    .lines()
    .map(|line| {
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a connection record is not JSON ({e}): {line}"))
    })
    .collect()
}

/// The connection records of process `pid`.
pub fn records_of(db: &Path, pid: u32) -> Vec<Value> {
    records(db)
        .into_iter()
        .filter(|record| record["identity"]["pid"] == pid)
        .collect()
}

/// Waits for the connection record of process `pid` (panics if it has more than one).
pub fn wait_for_record_of(daemon: &Daemon, pid: u32) -> Value {
    let db = db_path(daemon);
    wait::until(
        &format!("the connection record of pid {pid} in the audit store"),
        RECORD_TIMEOUT,
        || {
            if !db.exists() {
                return None;
            }
            let mut found = records_of(&db, pid);
            assert!(
                found.len() <= 1,
                "pid {pid} made one connection, the store has {} records of it: {found:#?}",
                found.len()
            );
            found.pop()
        },
    )
}

/// The `connections` index row with this id, as a JSON object (None if there is none).
pub fn index_row(db: &Path, id: &str) -> Option<Value> {
    let sql = format!(
        "SELECT json_object('id', id, 'started_us', started_us, 'ended_us', ended_us, \
         'pid', pid, 'uid', uid, 'original_dst', original_dst, 'server_name', server_name, \
         'disposition', disposition, 'bytes_from_client', bytes_from_client, \
         'bytes_to_client', bytes_to_client) FROM connections WHERE id = '{}'",
        id.replace('\'', "''")
    );
    let out = sqlite::query(db, &sql);
    (!out.is_empty()).then(|| {
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("the connections row is not JSON ({e}): {out}"))
    })
}

/// The store's `connections` index row for `record` agrees with the record.
pub fn assert_indexed(db: &Path, record: &Value) {
    let id = record["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a connection record without a string id: {record:#}"));
    let row = index_row(db, id)
        .unwrap_or_else(|| panic!("no `connections` index row for {id}: {record:#}"));
    let pairs = [
        ("started_us", &record["started_at_us"]),
        ("ended_us", &record["ended_at_us"]),
        ("pid", &record["identity"]["pid"]),
        ("uid", &record["identity"]["uid"]),
        ("original_dst", &record["original_dst"]),
        ("server_name", &record["server_name"]),
        ("disposition", &record["disposition"]),
        ("bytes_from_client", &record["bytes_from_client"]),
        ("bytes_to_client", &record["bytes_to_client"]),
    ];
    for (column, wanted) in pairs {
        assert_eq!(
            &row[column], wanted,
            "connections.{column} disagrees with the record\nrow: {row:#}\nrecord: {record:#}"
        );
    }
}

/// The identity of a connection record is process `pid` running `exe` as root in `cgroup`.
pub fn assert_identity(record: &Value, pid: u32, exe: &Path, cgroup: &str) {
    let identity = &record["identity"];
    let expect = |field: &str, wanted: Value| {
        assert_eq!(identity[field], wanted, "identity.{field} in\n{record:#}");
    };
    expect("pid", pid.into());
    expect("exe", exe.display().to_string().into());
    expect("uid", 0.into());
    expect("user", "root".into());
    expect("cgroup", cgroup.into());
}

/// A record's `started_at_us` and `ended_at_us`, checked to be in order.
pub fn span_us(record: &Value) -> (i64, i64) {
    let at = |field: &str| {
        record[field]
            .as_i64()
            .unwrap_or_else(|| panic!("{field} should be an integer in\n{record:#}"))
    };
    let (started, ended) = (at("started_at_us"), at("ended_at_us"));
    assert!(
        0 < started && started <= ended,
        "a connection must end after it starts: {record:#}"
    );
    (started, ended)
}
