//! Reading the chain in `seq` order from a cursor, through a read-only connection of its own (the
//! sinks): the writer is never waited for, and no read snapshot outlives one query.
use std::{collections::HashMap, path::Path};

use rusqlite::{Connection, OptionalExtension};

use super::{
    chain::RecordKind,
    reader::{summary_from_row, ExchangeSummary, SUMMARY_COLUMNS},
    schema, AuditError,
};

/// One row of `records`, as committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    pub kind: RecordKind,
    pub exchange_id: Option<String>,
    /// Unix time in microseconds.
    pub at_us: i64,
    /// The record's canonical JSON.
    pub body: String,
    pub hash: Vec<u8>,
}

pub struct ChainTail {
    conn: Connection,
}

/// A tail reads each record once, in order: a page cache would only hold pages it has done with
/// (the readers' default is 64 MiB each, in the daemon's memory; the kernel caches the file).
const TAIL_CACHE_KIB: i64 = 2048;

impl ChainTail {
    /// Opens an existing store read-only.
    pub fn open(db: &Path) -> Result<ChainTail, AuditError> {
        let conn = schema::open_read_only(db)?;
        conn.pragma_update(None, "cache_size", -TAIL_CACHE_KIB)?;
        Ok(ChainTail { conn })
    }

    /// The last seq committed (0 in an empty store).
    pub fn head_seq(&self) -> Result<u64, AuditError> {
        let head: Option<i64> = self
            .conn
            .prepare_cached("SELECT max(seq) FROM records")?
            .query_row([], |row| row.get(0))?;
        Ok(to_seq(head.unwrap_or(0)))
    }

    /// The hash of the record at `seq`; None when there is none (pruned, or never written).
    pub fn hash_at(&self, seq: u64) -> Result<Option<Vec<u8>>, AuditError> {
        Ok(self
            .conn
            .prepare_cached("SELECT hash FROM records WHERE seq = ?1")?
            .query_row([to_sql(seq)], |row| row.get(0))
            .optional()?)
    }

    /// Up to `limit` records after `seq`, oldest first.
    pub fn after(&self, seq: u64, limit: usize) -> Result<Vec<StoredRecord>, AuditError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT seq, kind, exchange_id, at_us, body, hash FROM records \
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = statement.query_map(
            rusqlite::params![to_sql(seq), i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            },
        )?;
        let mut records = Vec::new();
        for row in rows {
            let (seq, kind, exchange_id, at_us, body, hash) = row?;
            let kind = RecordKind::parse(&kind).ok_or_else(|| AuditError::Corrupt {
                seq: to_seq(seq),
                reason: format!("unknown record kind {kind:?}"),
            })?;
            records.push(StoredRecord {
                seq: to_seq(seq),
                kind,
                exchange_id,
                at_us,
                body,
                hash,
            });
        }
        Ok(records)
    }

    /// The exchanges `ids` as indexed (identity, model, usage, timings), in one query; an id
    /// with no row is left out.
    pub fn exchange_summaries(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, ExchangeSummary>, AuditError> {
        let mut summaries = HashMap::new();
        // SQLite's default limit on bound parameters is 32766; a batch is far below it.
        for chunk in ids.chunks(10_000) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("SELECT {SUMMARY_COLUMNS} FROM exchanges WHERE id IN ({marks})");
            let mut statement = self.conn.prepare(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(chunk), summary_from_row)?;
            for row in rows {
                let summary = row?;
                summaries.insert(summary.id.clone(), summary);
            }
        }
        Ok(summaries)
    }
}

fn to_seq(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}
