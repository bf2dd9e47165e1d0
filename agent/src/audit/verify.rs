//! Verification: walk the hash chain from the anchor (or genesis), then check the indexes against
//! what the records say, and name the first record that was altered, deleted or reordered.
use rusqlite::Connection;
use serde::Serialize;

use super::{
    chain::{
        describe, hash_from_hex, record_hash, ChainHead, ChainRecord, Hash, PruneRecord, RecordKind,
    },
    index::{self, index_entry, ExchangeEnd, IndexEntry},
    schema::{self, META_ANCHOR_HASH, META_ANCHOR_SEQ},
    AuditError,
};

/// What a successful verification covered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The seq retention pruned through; the chain starts right after it.
    pub anchor_seq: Option<u64>,
    /// The hash of the last record, hex. Kept outside the host (a SIEM, a ticket), it lets a later
    /// verify detect records removed from the end of the chain, which the chain alone cannot.
    pub head_hash: Option<String>,
}

fn broken(seq: impl TryInto<u64>, what: impl Into<String>) -> AuditError {
    AuditError::ChainBroken {
        seq: seq.try_into().unwrap_or(0),
        what: what.into(),
    }
}

/// One `records` row as stored.
struct Row {
    seq: i64,
    kind: String,
    exchange_id: Option<String>,
    connection_id: Option<String>,
    at_us: i64,
    body: String,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl Row {
    fn describe(&self) -> String {
        match RecordKind::parse(&self.kind) {
            Some(kind) => describe(
                kind,
                self.exchange_id.as_deref(),
                self.connection_id.as_deref(),
            ),
            None => format!("kind {:?}", self.kind),
        }
    }
}

/// Checks everything in one read snapshot. A broken chain or index is `AuditError::ChainBroken`
/// naming the first bad record; chain problems are reported before index problems, since an
/// altered record makes its index row look wrong too.
pub fn verify(conn: &Connection) -> Result<VerifyReport, AuditError> {
    let snapshot = conn.unchecked_transaction()?;
    let anchor = read_anchor(&snapshot)?;
    let mut previous = anchor.unwrap_or(ChainHead::GENESIS);
    let mut report = VerifyReport {
        anchor_seq: anchor.map(|a| a.seq),
        ..VerifyReport::default()
    };
    let mut last_prune: Option<(i64, PruneRecord)> = None;
    let mut index_problem: Option<AuditError> = None;

    let mut statement = snapshot.prepare(
        "SELECT seq, kind, exchange_id, connection_id, at_us, body, prev_hash, hash \
         FROM records ORDER BY seq",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let row = Row {
            seq: row.get(0)?,
            kind: row.get(1)?,
            exchange_id: row.get(2)?,
            connection_id: row.get(3)?,
            at_us: row.get(4)?,
            body: row.get(5)?,
            prev_hash: row.get(6)?,
            hash: row.get(7)?,
        };
        let record = check_link(&row, previous, report.records == 0, anchor.is_some())?;
        if let ChainRecord::Prune(prune) = &record {
            if prune.through_seq >= row.seq as u64 {
                return Err(broken(row.seq, format!(
                    "record {} (prune) was altered: it prunes through seq {}, not an earlier record",
                    row.seq, prune.through_seq
                )));
            }
            last_prune = Some((row.seq, prune.clone()));
        }
        if index_problem.is_none() {
            index_problem = check_index(&snapshot, &record, row.seq)?;
        }
        previous = ChainHead {
            seq: row.seq as u64,
            // check_link compared it with a computed 32-byte hash, so the fallback is unreachable.
            hash: row.hash.as_slice().try_into().unwrap_or_default(),
        };
        report.records += 1;
        report.first_seq.get_or_insert(row.seq as u64);
        report.last_seq = Some(row.seq as u64);
        report.head_hash = Some(crate::audit::chain::to_hex(&previous.hash));
    }

    check_anchor(anchor, last_prune)?;
    if let Some(problem) = index_problem {
        return Err(problem);
    }
    check_index_rows_have_records(&snapshot)?;
    Ok(report)
}

fn read_anchor(conn: &Connection) -> Result<Option<ChainHead>, AuditError> {
    let seq = schema::meta_get(conn, META_ANCHOR_SEQ)?;
    let hash = schema::meta_get(conn, META_ANCHOR_HASH)?;
    match (seq, hash) {
        (None, None) => Ok(None),
        (seq, hash) => {
            let seq = seq.as_deref().and_then(|s| s.parse::<u64>().ok());
            let hash = hash.as_deref().and_then(hash_from_hex);
            match (seq, hash) {
                (Some(seq), Some(hash)) => Ok(Some(ChainHead { seq, hash })),
                _ => Err(broken(0u64, "the retention anchor in meta is malformed")),
            }
        }
    }
}

/// Checks a row's place in the chain, its hash, and that its columns say what its body says.
fn check_link(
    row: &Row,
    previous: ChainHead,
    first: bool,
    anchored: bool,
) -> Result<ChainRecord, AuditError> {
    let seq = row.seq;
    let expected_seq = previous.seq + 1;
    if seq < 1 || (seq as u64) < expected_seq {
        let what = if first && anchored {
            format!(
                "record {seq} ({}) comes before the retention anchor (seq {})",
                row.describe(),
                previous.seq
            )
        } else {
            format!("records out of order at {seq}")
        };
        return Err(broken(seq, what));
    }
    if seq as u64 > expected_seq {
        let what = if first {
            format!("record {expected_seq} is missing (the chain starts at {seq})")
        } else {
            format!(
                "record {expected_seq} is missing (the chain goes from {} to {seq})",
                previous.seq
            )
        };
        return Err(broken(expected_seq, what));
    }
    let altered = |why: &str| {
        broken(
            seq,
            format!("record {seq} ({}) was altered: {why}", row.describe()),
        )
    };
    let prev_hash: Hash = row
        .prev_hash
        .as_slice()
        .try_into()
        .map_err(|_| altered("its prev_hash is not 32 bytes"))?;
    let computed = record_hash(&prev_hash, seq as u64, &row.kind, row.at_us, &row.body);
    let links = prev_hash == previous.hash;
    if computed.as_slice() != row.hash.as_slice() {
        return Err(if links {
            altered("its hash does not match")
        } else {
            broken(seq, format!("records out of order at {seq}"))
        });
    }
    if !links {
        let what = if first && anchored {
            format!(
                "record {seq} ({}) does not link to the retention anchor (seq {}): the anchor or \
                 the records before it were altered",
                row.describe(),
                previous.seq
            )
        } else {
            format!(
                "record {seq} ({}) does not link to record {}: the chain was rewritten",
                row.describe(),
                previous.seq
            )
        };
        return Err(broken(seq, what));
    }
    let kind = RecordKind::parse(&row.kind).ok_or_else(|| altered("its kind is unknown"))?;
    let record = ChainRecord::parse(kind, &row.body)
        .map_err(|err| altered(&format!("its body does not parse ({err})")))?;
    let columns = record.columns();
    let mismatch = if columns.exchange_id != row.exchange_id {
        Some("exchange_id")
    } else if columns.connection_id != row.connection_id {
        Some("connection_id")
    } else if columns.at_us != row.at_us {
        Some("at_us")
    } else {
        None
    };
    if let Some(column) = mismatch {
        return Err(altered(&format!(
            "its {column} column does not match its body"
        )));
    }
    Ok(record)
}

/// The meta anchor must be what the last prune record says it pruned through.
fn check_anchor(
    anchor: Option<ChainHead>,
    last_prune: Option<(i64, PruneRecord)>,
) -> Result<(), AuditError> {
    match (anchor, last_prune) {
        (None, None) => Ok(()),
        (Some(anchor), Some((seq, prune))) => {
            let hash = hash_from_hex(&prune.through_hash);
            if prune.through_seq == anchor.seq && hash == Some(anchor.hash) {
                Ok(())
            } else {
                Err(broken(seq, format!(
                    "the retention anchor (seq {}) does not match prune record {seq} (through seq {})",
                    anchor.seq, prune.through_seq
                )))
            }
        }
        (Some(anchor), None) => Err(broken(anchor.seq, format!(
            "the retention anchor (seq {}) has no prune record in the chain: records before it were deleted",
            anchor.seq
        ))),
        (None, Some((seq, _))) => Err(broken(
            seq,
            format!("prune record {seq} has no retention anchor in meta: the anchor was deleted"),
        )),
    }
}

/// Compares the index row a record set with what the record says; None when it agrees.
fn check_index(
    conn: &Connection,
    record: &ChainRecord,
    seq: i64,
) -> Result<Option<AuditError>, AuditError> {
    let mismatch = |what: &str, id: &str, column: &str| {
        Some(broken(
            seq,
            format!("{what} {id} index row does not match its records ({column})"),
        ))
    };
    Ok(match index_entry(record, seq as u64) {
        IndexEntry::ExchangeStart(expected) => {
            match index::read_exchange(conn, &expected.id)? {
                None => Some(broken(
                    seq,
                    format!("exchange {} index row was deleted", expected.id),
                )),
                // A later request reusing an id: the writer kept the first one's row.
                Some(row) if row.start.request_seq < seq => None,
                Some(row) => expected
                    .first_difference(&row.start)
                    .or_else(|| {
                        row.end
                            .response_seq
                            .is_none()
                            .then(|| ExchangeEnd::default().first_difference(&row.end))
                            .flatten()
                    })
                    .and_then(|column| mismatch("exchange", &expected.id, column)),
            }
        }
        IndexEntry::ExchangeEnd { id, end } => match index::read_exchange(conn, &id)? {
            // No row: the request was pruned, or never arrived; a deleted row is reported at its
            // request record, which comes first.
            None => None,
            Some(row) if row.start.request_seq > seq => None,
            Some(row) => match row.end.response_seq {
                Some(stored) if stored == seq => end
                    .first_difference(&row.end)
                    .and_then(|column| mismatch("exchange", &id, column)),
                // A later response for the same exchange updated the row again.
                Some(stored) if stored > seq => None,
                _ => mismatch("exchange", &id, "response_seq"),
            },
        },
        IndexEntry::Connection(expected) => match index::read_connection(conn, &expected.id)? {
            None => Some(broken(
                seq,
                format!("connection {} index row was deleted", expected.id),
            )),
            Some(row) if row.seq < seq => None,
            Some(row) => expected
                .first_difference(&row)
                .and_then(|column| mismatch("connection", &expected.id, column)),
        },
        IndexEntry::Prune { .. } | IndexEntry::Nothing => None,
    })
}

/// Index rows that no record accounts for (inserted, or pointed elsewhere, by hand).
fn check_index_rows_have_records(conn: &Connection) -> Result<(), AuditError> {
    use rusqlite::OptionalExtension;
    let orphan = |sql: &str| -> Result<Option<(String, i64)>, AuditError> {
        Ok(conn
            .query_row(sql, [], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    };
    if let Some((id, seq)) = orphan(
        "SELECT e.id, e.request_seq FROM exchanges e WHERE NOT EXISTS (SELECT 1 FROM records r \
         WHERE r.seq = e.request_seq AND r.kind = 'request' AND r.exchange_id = e.id) \
         ORDER BY e.request_seq LIMIT 1",
    )? {
        return Err(broken(
            seq,
            format!("exchange {id} index row has no request record (it names seq {seq})"),
        ));
    }
    if let Some((id, seq)) = orphan(
        "SELECT e.id, e.response_seq FROM exchanges e WHERE e.response_seq IS NOT NULL AND NOT \
         EXISTS (SELECT 1 FROM records r WHERE r.seq = e.response_seq AND r.kind = 'response' \
         AND r.exchange_id = e.id) ORDER BY e.response_seq LIMIT 1",
    )? {
        return Err(broken(
            seq,
            format!("exchange {id} index row does not match its records (response_seq)"),
        ));
    }
    if let Some((id, seq)) = orphan(
        "SELECT c.id, c.seq FROM connections c WHERE NOT EXISTS (SELECT 1 FROM records r \
         WHERE r.seq = c.seq AND r.kind = 'connection' AND r.connection_id = c.id) \
         ORDER BY c.seq LIMIT 1",
    )? {
        return Err(broken(
            seq,
            format!("connection {id} index row has no connection record (it names seq {seq})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
