//! Reading the store for the CLI: filtered exchange lists (indexed SQL with bound parameters), whole
//! exchanges, and streaming export.
use std::path::Path;

use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use time::{macros::format_description, OffsetDateTime};

use super::{
    chain::{ChainRecord, RecordKind},
    governance::GovernanceRecord,
    index,
    query::{select_sql, ExchangeFilter, Order, Pages, GLOB_PROBE_CAP, INCOMPLETE},
    record::{ConnectionRecord, ExchangeRequest, ExchangeResponse},
    schema,
    verify::{self, VerifyReport},
    AuditError,
};

/// One line of `sessions list` (its `--json` object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeSummary {
    pub id: String,
    /// RFC 3339 UTC with microseconds.
    pub started_at: String,
    /// `started_at` as unix µs, for callers that compute with it.
    #[serde(skip)]
    pub started_us: i64,
    pub pid: u32,
    pub uid: u32,
    pub user: Option<String>,
    pub account: Option<String>,
    pub unit: Option<String>,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
    pub container: Option<String>,
    pub model: Option<String>,
    pub endpoint: String,
    pub status: Option<u16>,
    /// An outcome, or `incomplete` when the exchange has no response record.
    pub outcome: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub duration_ms: Option<f64>,
    /// Values masked by the policy, request and response together (0: nothing was masked).
    pub masked: u64,
}

/// A whole exchange, read from its records (`sessions show --json`, export lines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDetail {
    pub id: String,
    pub outcome: String,
    pub request: ExchangeRequest,
    pub response: Option<ExchangeResponse>,
    /// None until the connection has ended (its record is written then).
    pub connection: Option<ConnectionRecord>,
    pub request_seq: u64,
    pub response_seq: Option<u64>,
    /// Its approval trail (requested, decided, cancelled, expired), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub governance: Vec<GovernanceRecord>,
}

/// A read-only view of the store; the daemon may keep writing meanwhile.
pub struct AuditReader {
    conn: Connection,
    /// `GLOB_PROBE_CAP`, lowered by tests to exercise the other plan on a small store.
    glob_probe_cap: i64,
    /// `EXPORT_PAGE`, lowered by tests to export a small store in several pages.
    export_page: usize,
}

/// Exchanges per page of an export.
const EXPORT_PAGE: usize = 500;

/// The mask counts are read from the request and response records themselves (the index has
/// no column for them): two lookups by primary key per row listed.
pub(super) const SUMMARY_COLUMNS: &str =
    "id, started_us, pid, uid, \"user\", account, unit, exe, cgroup, \
    model, endpoint, status, outcome, input_tokens, output_tokens, total_tokens, duration_ms, \
    container, \
    (SELECT json_extract(body, '$.policy.masked') FROM records WHERE seq = request_seq), \
    (SELECT json_extract(body, '$.masked') FROM records WHERE seq = response_seq)";

const DETAIL_COLUMNS: &str = "id, outcome, request_seq, response_seq, connection_id";

impl AuditReader {
    pub fn open(db: &Path) -> Result<AuditReader, AuditError> {
        Ok(AuditReader {
            conn: schema::open_read_only(db)?,
            glob_probe_cap: GLOB_PROBE_CAP,
            export_page: EXPORT_PAGE,
        })
    }

    /// Matching exchanges, newest first.
    pub fn list(&self, filter: &ExchangeFilter) -> Result<Vec<ExchangeSummary>, AuditError> {
        let (sql, values) = select_sql(
            &self.conn,
            SUMMARY_COLUMNS,
            filter,
            Order::NewestFirst,
            self.glob_probe_cap,
        )?;
        let mut statement = self.conn.prepare(&sql)?;
        let rows = statement.query_map(params_from_iter(values), summary_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The exchange with this id, from its records.
    pub fn exchange(&self, id: &str) -> Result<Option<ExchangeDetail>, AuditError> {
        let _snapshot = self.conn.unchecked_transaction()?;
        let sql = format!("SELECT {DETAIL_COLUMNS} FROM exchanges WHERE id = ?1");
        let row = self
            .conn
            .query_row(&sql, [id], DetailRow::from_row)
            .optional()?;
        row.map(|row| self.detail(row)).transpose()
    }

    /// Calls `each` with every matching exchange, oldest first, one at a time (for export).
    ///
    /// No read snapshot is held while `each` runs: a page of ids is read in one short query and
    /// each exchange in its own, so a slow consumer (a pipe, a SIEM forwarder) does not keep the
    /// daemon's WAL from being checkpointed. An exchange pruned between the two reads is skipped.
    pub fn for_each_exchange(
        &self,
        filter: &ExchangeFilter,
        mut each: impl FnMut(ExchangeDetail) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let pages = Pages::new(
            &self.conn,
            "id, started_us, exchanges.rowid",
            filter,
            self.glob_probe_cap,
        )?;
        let mut remaining = filter.limit.unwrap_or(usize::MAX);
        let mut after = None;
        while remaining > 0 {
            let page_len = remaining.min(self.export_page.max(1));
            let (sql, values) = pages.page(after, page_len);
            let page = self
                .conn
                .prepare_cached(sql)?
                .query_map(params_from_iter(values), |row| {
                    Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<Result<Vec<(String, i64, i64)>, _>>()?;
            for (id, _, _) in &page {
                let Some(detail) = self.exchange(id)? else {
                    continue;
                };
                // Only the outcome of an exchange changes after it is indexed (its response
                // arrived since the page was read): the filter still decides.
                if filter
                    .outcome
                    .as_ref()
                    .is_some_and(|o| *o != detail.outcome)
                {
                    continue;
                }
                each(detail)?;
                remaining -= 1;
                if remaining == 0 {
                    break;
                }
            }
            if page.len() < page_len {
                break;
            }
            after = page
                .last()
                .map(|&(_, started_us, rowid)| (started_us, rowid));
        }
        Ok(())
    }

    /// Checks the whole chain and the indexes; see `verify::verify`.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify::verify(&self.conn)
    }

    fn detail(&self, row: DetailRow) -> Result<ExchangeDetail, AuditError> {
        let request = match self.record(row.request_seq, RecordKind::Request)? {
            ChainRecord::Request(request) => request,
            _ => return Err(missing(row.request_seq, "request")),
        };
        let response = match row.response_seq {
            Some(seq) => match self.record(seq, RecordKind::Response)? {
                ChainRecord::Response(response) => Some(response),
                _ => return Err(missing(seq, "response")),
            },
            None => None,
        };
        let connection = match index::read_connection(&self.conn, &row.connection_id)? {
            Some(connection) => match self.record(connection.seq, RecordKind::Connection)? {
                ChainRecord::Connection(record) => Some(record),
                _ => return Err(missing(connection.seq, "connection")),
            },
            None => None,
        };
        let governance = self.governance_of_exchange(&row.id)?;
        Ok(ExchangeDetail {
            governance,
            id: row.id,
            outcome: row.outcome.unwrap_or_else(|| INCOMPLETE.to_owned()),
            request,
            response,
            connection,
            request_seq: to_seq(row.request_seq),
            response_seq: row.response_seq.map(to_seq),
        })
    }

    /// The governance records that name exchange `id`, oldest first.
    pub fn governance_of_exchange(&self, id: &str) -> Result<Vec<GovernanceRecord>, AuditError> {
        self.governance_where("exchange_id = ?1", rusqlite::params![id])
    }

    /// Every governance record from `since_us` on (unix µs), oldest first, with its seq.
    pub fn governance_since(&self, since_us: i64) -> Result<Vec<GovernanceRecord>, AuditError> {
        self.governance_where("at_us >= ?1", rusqlite::params![since_us])
    }

    fn governance_where(
        &self,
        condition: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<GovernanceRecord>, AuditError> {
        let sql = format!(
            "SELECT seq, body FROM records WHERE kind = 'governance' AND {condition} ORDER BY seq"
        );
        let mut statement = self.conn.prepare(&sql)?;
        let rows = statement.query_map(params, |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut records = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            records.push(
                serde_json::from_str(&body).map_err(|err| AuditError::Corrupt {
                    seq: to_seq(seq),
                    reason: err.to_string(),
                })?,
            );
        }
        Ok(records)
    }

    fn record(&self, seq: i64, kind: RecordKind) -> Result<ChainRecord, AuditError> {
        let body: Option<String> = self
            .conn
            .prepare_cached("SELECT body FROM records WHERE seq = ?1 AND kind = ?2")?
            .query_row(rusqlite::params![seq, kind.as_str()], |row| row.get(0))
            .optional()?;
        let body = body.ok_or_else(|| missing(seq, kind.as_str()))?;
        ChainRecord::parse(kind, &body).map_err(|err| AuditError::Corrupt {
            seq: to_seq(seq),
            reason: err.to_string(),
        })
    }
}

/// An `ExchangeSummary` from a row of [`SUMMARY_COLUMNS`].
pub(super) fn summary_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ExchangeSummary> {
    let started_us: i64 = row.get(1)?;
    Ok(ExchangeSummary {
        id: row.get(0)?,
        started_at: format_timestamp_us(started_us),
        started_us,
        pid: row.get(2)?,
        uid: row.get(3)?,
        user: row.get(4)?,
        account: row.get(5)?,
        unit: row.get(6)?,
        exe: row.get(7)?,
        cgroup: row.get(8)?,
        model: row.get(9)?,
        endpoint: row.get(10)?,
        status: row.get(11)?,
        outcome: row
            .get::<_, Option<String>>(12)?
            .unwrap_or_else(|| INCOMPLETE.to_owned()),
        input_tokens: row.get(13)?,
        output_tokens: row.get(14)?,
        total_tokens: row.get(15)?,
        duration_ms: row.get(16)?,
        container: row.get(17)?,
        masked: masked_total(row.get(18)?) + masked_total(row.get(19)?),
    })
}

struct DetailRow {
    id: String,
    outcome: Option<String>,
    request_seq: i64,
    response_seq: Option<i64>,
    connection_id: String,
}

impl DetailRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DetailRow> {
        Ok(DetailRow {
            id: row.get(0)?,
            outcome: row.get(1)?,
            request_seq: row.get(2)?,
            response_seq: row.get(3)?,
            connection_id: row.get(4)?,
        })
    }
}

/// The number of values in a record's mask counts (`{rule: {recognizer: n}}`); 0 when absent.
fn masked_total(counts: Option<String>) -> u64 {
    counts
        .and_then(|json| serde_json::from_str::<MaskCounts>(&json).ok())
        .map_or(0, |rules| rules.values().flat_map(|by| by.values()).sum())
}

type MaskCounts = std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>;

fn to_seq(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn missing(seq: i64, kind: &str) -> AuditError {
    AuditError::Corrupt {
        seq: to_seq(seq),
        reason: format!("the {kind} record is missing (run `warden audit verify`)"),
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2025-01-02T03:04:05.000006Z`.
pub fn format_timestamp_us(us: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| us.to_string())
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
