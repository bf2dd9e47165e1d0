//! The query indexes (`exchanges`, `connections`) as a function of the chain's records.
//!
//! `index_entry` is the one derivation: the writer applies its result, verify compares the stored
//! rows with it, so the two cannot drift apart.
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::chain::ChainRecord;

/// The `exchanges` columns a request record sets (the row is inserted with it).
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeStart {
    pub id: String,
    pub connection_id: String,
    pub started_us: i64,
    pub pid: i64,
    pub uid: i64,
    pub user: Option<String>,
    pub account: Option<String>,
    pub unit: Option<String>,
    pub cgroup: Option<String>,
    pub exe: Option<String>,
    pub k8s_sa: Option<String>,
    pub container: Option<String>,
    pub method: String,
    pub host: String,
    pub path: String,
    pub endpoint: String,
    pub model: Option<String>,
    pub request_seq: i64,
}

/// The `exchanges` columns a response record sets (NULL until then).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExchangeEnd {
    pub ended_us: Option<i64>,
    pub status: Option<i64>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub ttfb_ms: Option<f64>,
    pub duration_ms: Option<f64>,
    pub response_seq: Option<i64>,
}

/// A `connections` row.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionRow {
    pub id: String,
    pub started_us: i64,
    pub ended_us: i64,
    pub seq: i64,
    pub pid: i64,
    pub uid: i64,
    pub account: Option<String>,
    pub unit: Option<String>,
    pub original_dst: String,
    pub server_name: Option<String>,
    pub disposition: String,
    pub bytes_from_client: i64,
    pub bytes_to_client: i64,
}

/// What one record does to the indexes.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexEntry {
    /// Insert the exchange's row (unless one with that id exists: the first request wins).
    ExchangeStart(ExchangeStart),
    /// Fill in the row's response columns (the last response wins).
    ExchangeEnd { id: String, end: ExchangeEnd },
    /// Insert the connection's row (the first record with that id wins).
    Connection(ConnectionRow),
    /// Delete the rows of every record up to and including `through_seq`.
    Prune { through_seq: i64 },
    /// Governance records are read from `records` itself (by kind and exchange id).
    Nothing,
}

/// Whether an entry changed the indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// A response whose exchange has no row, or a duplicate id: the record is still in the chain.
    Skipped,
}

/// SQLite integers are i64; counts that do not fit are stored as i64::MAX rather than failing the
/// whole batch.
fn saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The index change a record at `seq` makes.
pub fn index_entry(record: &ChainRecord, seq: u64) -> IndexEntry {
    let seq = saturating(seq);
    match record {
        ChainRecord::Request(request) => {
            let identity = &request.identity;
            IndexEntry::ExchangeStart(ExchangeStart {
                id: request.exchange_id.clone(),
                connection_id: request.connection_id.clone(),
                started_us: request.started_at_us,
                pid: i64::from(identity.pid),
                uid: i64::from(identity.uid),
                user: identity.user.clone(),
                account: identity.account.clone(),
                unit: identity.unit.clone(),
                cgroup: identity.cgroup.clone(),
                exe: identity.exe.clone(),
                k8s_sa: identity.k8s_sa.clone(),
                container: identity.container.clone(),
                method: request.method.clone(),
                host: request.host.clone(),
                path: request.path.clone(),
                endpoint: request.endpoint.clone(),
                model: request.model.clone(),
                request_seq: seq,
            })
        }
        ChainRecord::Response(response) => {
            let usage = response.assembled.as_ref().and_then(|a| a.usage);
            IndexEntry::ExchangeEnd {
                id: response.exchange_id.clone(),
                end: ExchangeEnd {
                    ended_us: Some(response.ended_at_us),
                    status: response.status.map(i64::from),
                    outcome: Some(response.outcome.as_str().to_owned()),
                    reason: response.reason.clone(),
                    input_tokens: usage.map(|u| saturating(u.input_tokens)),
                    output_tokens: usage.map(|u| saturating(u.output_tokens)),
                    total_tokens: usage.map(|u| saturating(u.total_tokens)),
                    ttfb_ms: response.ttfb_ms,
                    duration_ms: Some(response.duration_ms),
                    response_seq: Some(seq),
                },
            }
        }
        ChainRecord::Connection(connection) => IndexEntry::Connection(ConnectionRow {
            id: connection.id.clone(),
            started_us: connection.started_at_us,
            ended_us: connection.ended_at_us,
            seq,
            pid: i64::from(connection.identity.pid),
            uid: i64::from(connection.identity.uid),
            account: connection.identity.account.clone(),
            unit: connection.identity.unit.clone(),
            original_dst: connection.original_dst.clone(),
            server_name: connection.server_name.clone(),
            disposition: connection.disposition.as_str().to_owned(),
            bytes_from_client: saturating(connection.bytes_from_client),
            bytes_to_client: saturating(connection.bytes_to_client),
        }),
        ChainRecord::Prune(prune) => IndexEntry::Prune {
            through_seq: saturating(prune.through_seq),
        },
        ChainRecord::Governance(_) => IndexEntry::Nothing,
    }
}

/// Applies an entry inside the writer's transaction.
pub fn apply(conn: &Connection, entry: &IndexEntry) -> rusqlite::Result<Applied> {
    let changed = match entry {
        IndexEntry::ExchangeStart(s) => conn
            .prepare_cached(
                "INSERT INTO exchanges (id, connection_id, started_us, pid, uid, \"user\", account, \
                 unit, cgroup, exe, k8s_sa, container, method, host, path, endpoint, model, \
                 request_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                 ?15, ?16, ?17, ?18) ON CONFLICT(id) DO NOTHING",
            )?
            .execute(params![
                s.id,
                s.connection_id,
                s.started_us,
                s.pid,
                s.uid,
                s.user,
                s.account,
                s.unit,
                s.cgroup,
                s.exe,
                s.k8s_sa,
                s.container,
                s.method,
                s.host,
                s.path,
                s.endpoint,
                s.model,
                s.request_seq,
            ])?,
        IndexEntry::ExchangeEnd { id, end: e } => conn
            .prepare_cached(
                "UPDATE exchanges SET ended_us = ?2, status = ?3, outcome = ?4, reason = ?5, \
                 input_tokens = ?6, output_tokens = ?7, total_tokens = ?8, ttfb_ms = ?9, \
                 duration_ms = ?10, response_seq = ?11 WHERE id = ?1",
            )?
            .execute(params![
                id,
                e.ended_us,
                e.status,
                e.outcome,
                e.reason,
                e.input_tokens,
                e.output_tokens,
                e.total_tokens,
                e.ttfb_ms,
                e.duration_ms,
                e.response_seq,
            ])?,
        IndexEntry::Connection(c) => conn
            .prepare_cached(
                "INSERT INTO connections (id, started_us, ended_us, seq, pid, uid, account, unit, \
                 original_dst, server_name, disposition, bytes_from_client, bytes_to_client) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT(id) DO NOTHING",
            )?
            .execute(params![
                c.id,
                c.started_us,
                c.ended_us,
                c.seq,
                c.pid,
                c.uid,
                c.account,
                c.unit,
                c.original_dst,
                c.server_name,
                c.disposition,
                c.bytes_from_client,
                c.bytes_to_client,
            ])?,
        IndexEntry::Prune { through_seq } => {
            conn.execute(
                "DELETE FROM exchanges WHERE request_seq <= ?1",
                [through_seq],
            )?;
            conn.execute("DELETE FROM connections WHERE seq <= ?1", [through_seq])?;
            1
        }
        IndexEntry::Nothing => 1,
    };
    Ok(if changed == 0 {
        Applied::Skipped
    } else {
        Applied::Done
    })
}

/// An `exchanges` row as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredExchange {
    pub start: ExchangeStart,
    pub end: ExchangeEnd,
}

pub fn read_exchange(conn: &Connection, id: &str) -> rusqlite::Result<Option<StoredExchange>> {
    conn.prepare_cached(
        "SELECT id, connection_id, started_us, pid, uid, \"user\", account, unit, cgroup, exe, \
         k8s_sa, container, method, host, path, endpoint, model, request_seq, ended_us, status, \
         outcome, reason, input_tokens, output_tokens, total_tokens, ttfb_ms, duration_ms, \
         response_seq FROM exchanges WHERE id = ?1",
    )?
    .query_row([id], stored_exchange)
    .optional()
}

fn stored_exchange(row: &Row<'_>) -> rusqlite::Result<StoredExchange> {
    Ok(StoredExchange {
        start: ExchangeStart {
            id: row.get(0)?,
            connection_id: row.get(1)?,
            started_us: row.get(2)?,
            pid: row.get(3)?,
            uid: row.get(4)?,
            user: row.get(5)?,
            account: row.get(6)?,
            unit: row.get(7)?,
            cgroup: row.get(8)?,
            exe: row.get(9)?,
            k8s_sa: row.get(10)?,
            container: row.get(11)?,
            method: row.get(12)?,
            host: row.get(13)?,
            path: row.get(14)?,
            endpoint: row.get(15)?,
            model: row.get(16)?,
            request_seq: row.get(17)?,
        },
        end: ExchangeEnd {
            ended_us: row.get(18)?,
            status: row.get(19)?,
            outcome: row.get(20)?,
            reason: row.get(21)?,
            input_tokens: row.get(22)?,
            output_tokens: row.get(23)?,
            total_tokens: row.get(24)?,
            ttfb_ms: row.get(25)?,
            duration_ms: row.get(26)?,
            response_seq: row.get(27)?,
        },
    })
}

pub fn read_connection(conn: &Connection, id: &str) -> rusqlite::Result<Option<ConnectionRow>> {
    conn.prepare_cached(
        "SELECT id, started_us, ended_us, seq, pid, uid, account, unit, original_dst, server_name, \
         disposition, bytes_from_client, bytes_to_client FROM connections WHERE id = ?1",
    )?
    .query_row([id], |row| {
        Ok(ConnectionRow {
            id: row.get(0)?,
            started_us: row.get(1)?,
            ended_us: row.get(2)?,
            seq: row.get(3)?,
            pid: row.get(4)?,
            uid: row.get(5)?,
            account: row.get(6)?,
            unit: row.get(7)?,
            original_dst: row.get(8)?,
            server_name: row.get(9)?,
            disposition: row.get(10)?,
            bytes_from_client: row.get(11)?,
            bytes_to_client: row.get(12)?,
        })
    })
    .optional()
}

macro_rules! first_difference {
    ($expected:expr, $actual:expr; $($field:ident),+ $(,)?) => {{
        let (expected, actual) = ($expected, $actual);
        $( if expected.$field != actual.$field { return Some(stringify!($field)); } )+
        None
    }};
}

impl ExchangeStart {
    /// The first column where `actual` disagrees with this derived row.
    pub fn first_difference(&self, actual: &ExchangeStart) -> Option<&'static str> {
        first_difference!(self, actual; id, connection_id, started_us, pid, uid, user, account,
            unit, cgroup, exe, k8s_sa, container, method, host, path, endpoint, model, request_seq)
    }
}

impl ExchangeEnd {
    /// Like `ExchangeStart::first_difference`. Milliseconds are compared to a relative 1e-9: the
    /// writer derives them from the record before serializing, verify from the parsed text.
    pub fn first_difference(&self, actual: &ExchangeEnd) -> Option<&'static str> {
        let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            (a, b) => a.is_none() && b.is_none(),
        };
        if !close(self.ttfb_ms, actual.ttfb_ms) {
            return Some("ttfb_ms");
        }
        if !close(self.duration_ms, actual.duration_ms) {
            return Some("duration_ms");
        }
        first_difference!(self, actual; ended_us, status, outcome, reason, input_tokens,
            output_tokens, total_tokens, response_seq)
    }
}

impl ConnectionRow {
    pub fn first_difference(&self, actual: &ConnectionRow) -> Option<&'static str> {
        first_difference!(self, actual; id, started_us, ended_us, seq, pid, uid, account, unit,
            original_dst, server_name, disposition, bytes_from_client, bytes_to_client)
    }
}
