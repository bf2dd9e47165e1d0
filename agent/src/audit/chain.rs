//! The hash chain: each record's canonical serialization, its `records` columns, and its SHA-256
//! link to the previous record. The writer seals with it and verify recomputes with it.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use rusqlite::OptionalExtension;

use super::{
    governance::GovernanceRecord,
    record::{AuditRecord, ConnectionRecord, ExchangeRequest, ExchangeResponse},
    schema::{self, META_ANCHOR_HASH, META_ANCHOR_SEQ},
    AuditError,
};

pub type Hash = [u8; 32];

/// The previous hash of the first record ever written.
pub const GENESIS_HASH: Hash = [0; 32];

/// The value of `records.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Connection,
    Request,
    Response,
    Prune,
    Governance,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Connection => "connection",
            RecordKind::Request => "request",
            RecordKind::Response => "response",
            RecordKind::Prune => "prune",
            RecordKind::Governance => "governance",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "connection" => RecordKind::Connection,
            "request" => RecordKind::Request,
            "response" => RecordKind::Response,
            "prune" => RecordKind::Prune,
            "governance" => RecordKind::Governance,
            _ => return None,
        })
    }
}

/// Appended by retention after deleting a prefix of the chain: the chain now starts right after
/// `through_seq`, whose hash was `through_hash` (hex). The same pair is kept in meta as the anchor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneRecord {
    pub through_seq: u64,
    pub through_hash: String,
    /// Records older than this (unix µs) were due for deletion.
    pub cutoff_us: i64,
    pub pruned_at_us: i64,
}

/// Anything the chain holds: the writer's records plus retention's prune records.
// Moved once into the writer's queue; boxing the variants would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ChainRecord {
    Connection(ConnectionRecord),
    Request(ExchangeRequest),
    Response(ExchangeResponse),
    Prune(PruneRecord),
    Governance(GovernanceRecord),
}

impl From<AuditRecord> for ChainRecord {
    fn from(record: AuditRecord) -> Self {
        match record {
            AuditRecord::Connection(connection) => ChainRecord::Connection(connection),
            AuditRecord::Request(request) => ChainRecord::Request(request),
            AuditRecord::Response(response) => ChainRecord::Response(response),
            AuditRecord::Governance(governance) => ChainRecord::Governance(governance),
        }
    }
}

/// What a `records` row says about its record besides the body; verify checks they agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordColumns {
    pub kind: RecordKind,
    pub exchange_id: Option<String>,
    pub connection_id: Option<String>,
    pub at_us: i64,
}

impl ChainRecord {
    pub fn kind(&self) -> RecordKind {
        match self {
            ChainRecord::Connection(_) => RecordKind::Connection,
            ChainRecord::Request(_) => RecordKind::Request,
            ChainRecord::Response(_) => RecordKind::Response,
            ChainRecord::Prune(_) => RecordKind::Prune,
            ChainRecord::Governance(_) => RecordKind::Governance,
        }
    }

    pub fn columns(&self) -> RecordColumns {
        let (exchange_id, connection_id, at_us) = match self {
            ChainRecord::Connection(c) => (None, Some(&c.id), c.ended_at_us),
            ChainRecord::Request(r) => (
                Some(&r.exchange_id),
                Some(&r.connection_id),
                r.started_at_us,
            ),
            ChainRecord::Response(r) => (Some(&r.exchange_id), None, r.ended_at_us),
            ChainRecord::Prune(p) => (None, None, p.pruned_at_us),
            ChainRecord::Governance(g) => (g.exchange_id.as_ref(), None, g.at_us),
        };
        RecordColumns {
            kind: self.kind(),
            exchange_id: exchange_id.cloned(),
            connection_id: connection_id.cloned(),
            at_us,
        }
    }

    /// The canonical serialization: compact JSON of the record struct, fields in declaration order.
    pub fn canonical_body(&self) -> Result<String, AuditError> {
        let body = match self {
            ChainRecord::Connection(c) => serde_json::to_string(c),
            ChainRecord::Request(r) => serde_json::to_string(r),
            ChainRecord::Response(r) => serde_json::to_string(r),
            ChainRecord::Prune(p) => serde_json::to_string(p),
            ChainRecord::Governance(g) => serde_json::to_string(g),
        };
        body.map_err(|err| AuditError::Serialize(err.to_string()))
    }

    pub fn parse(kind: RecordKind, body: &str) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            RecordKind::Connection => ChainRecord::Connection(serde_json::from_str(body)?),
            RecordKind::Request => ChainRecord::Request(serde_json::from_str(body)?),
            RecordKind::Response => ChainRecord::Response(serde_json::from_str(body)?),
            RecordKind::Prune => ChainRecord::Prune(serde_json::from_str(body)?),
            RecordKind::Governance => ChainRecord::Governance(serde_json::from_str(body)?),
        })
    }
}

/// How messages name a record: "request of exchange ex-1", "connection c-7", "prune".
pub fn describe(
    kind: RecordKind,
    exchange_id: Option<&str>,
    connection_id: Option<&str>,
) -> String {
    match (kind, exchange_id, connection_id) {
        (RecordKind::Request | RecordKind::Response, Some(exchange), _) => {
            format!("{} of exchange {exchange}", kind.as_str())
        }
        (RecordKind::Connection, _, Some(connection)) => format!("connection {connection}"),
        (RecordKind::Governance, Some(exchange), _) => {
            format!("governance record of exchange {exchange}")
        }
        _ => kind.as_str().to_owned(),
    }
}

/// The last record of the chain (or the anchor / genesis when there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: Hash,
}

impl ChainHead {
    pub const GENESIS: ChainHead = ChainHead {
        seq: 0,
        hash: GENESIS_HASH,
    };
}

/// The head to append after: the last record, else the anchor retention left, else genesis.
pub fn load_head(conn: &rusqlite::Connection) -> Result<ChainHead, AuditError> {
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((seq, hash)) = last {
        let corrupt = |reason: &str| AuditError::Corrupt {
            seq: seq.max(0) as u64,
            reason: reason.to_owned(),
        };
        let seq = u64::try_from(seq).map_err(|_| corrupt("negative seq"))?;
        let hash = Hash::try_from(hash).map_err(|_| corrupt("hash is not 32 bytes"))?;
        return Ok(ChainHead { seq, hash });
    }
    let seq = schema::meta_get(conn, META_ANCHOR_SEQ)?.and_then(|s| s.parse().ok());
    let hash = schema::meta_get(conn, META_ANCHOR_HASH)?.and_then(|h| hash_from_hex(&h));
    Ok(match (seq, hash) {
        (Some(seq), Some(hash)) => ChainHead { seq, hash },
        _ => ChainHead::GENESIS,
    })
}

/// SHA-256 over prev_hash ‖ seq (u64 BE) ‖ kind ‖ 0x00 ‖ at_us (i64 BE) ‖ body.
pub fn record_hash(prev_hash: &Hash, seq: u64, kind: &str, at_us: i64, body: &str) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(seq.to_be_bytes());
    hasher.update(kind.as_bytes());
    hasher.update([0u8]);
    hasher.update(at_us.to_be_bytes());
    hasher.update(body.as_bytes());
    hasher.finalize().into()
}

/// A record with its place in the chain, ready to insert.
#[derive(Clone, Debug)]
pub struct SealedRecord {
    pub seq: u64,
    pub columns: RecordColumns,
    pub body: String,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl SealedRecord {
    /// Seals `record` as the successor of `head`, given its canonical body.
    pub fn seal(head: ChainHead, record: &ChainRecord, body: String) -> SealedRecord {
        let seq = head.seq + 1;
        let columns = record.columns();
        let hash = record_hash(&head.hash, seq, columns.kind.as_str(), columns.at_us, &body);
        SealedRecord {
            seq,
            columns,
            body,
            prev_hash: head.hash,
            hash,
        }
    }

    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash,
        }
    }

    pub fn insert(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        let mut statement = conn.prepare_cached(
            "INSERT INTO records (seq, kind, exchange_id, connection_id, at_us, body, prev_hash, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        statement.execute(rusqlite::params![
            self.seq,
            self.columns.kind.as_str(),
            self.columns.exchange_id,
            self.columns.connection_id,
            self.columns.at_us,
            self.body,
            &self.prev_hash[..],
            &self.hash[..],
        ])?;
        Ok(())
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash_from_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Disposition, IdentitySnapshot};

    fn connection() -> ChainRecord {
        ChainRecord::Connection(ConnectionRecord {
            id: "c-1".into(),
            identity: IdentitySnapshot::default(),
            original_dst: "192.0.2.1:443".into(),
            server_name: Some("api.openai.com".into()),
            disposition: Disposition::Intercepted,
            reason: None,
            bytes_from_client: 10,
            bytes_to_client: 20,
            started_at_us: 1,
            ended_at_us: 2,
        })
    }

    #[test]
    fn hash_covers_every_part() {
        let base = record_hash(&GENESIS_HASH, 1, "request", 5, "{}");
        assert_ne!(base, record_hash(&[1; 32], 1, "request", 5, "{}"));
        assert_ne!(base, record_hash(&GENESIS_HASH, 2, "request", 5, "{}"));
        assert_ne!(base, record_hash(&GENESIS_HASH, 1, "response", 5, "{}"));
        assert_ne!(base, record_hash(&GENESIS_HASH, 1, "request", 6, "{}"));
        assert_ne!(base, record_hash(&GENESIS_HASH, 1, "request", 5, "{ }"));
        // The separator keeps kind and the timestamp bytes from sliding into each other.
        assert_ne!(
            record_hash(&GENESIS_HASH, 1, "a", 5, ""),
            record_hash(&GENESIS_HASH, 1, "a\0", 5, "")
        );
    }

    #[test]
    fn canonical_body_round_trips_and_seals_in_order() {
        let record = connection();
        let body = record.canonical_body().unwrap();
        assert!(
            body.starts_with(r#"{"id":"c-1","identity":{"pid":0,"#),
            "{body}"
        );
        assert_eq!(
            ChainRecord::parse(RecordKind::Connection, &body).unwrap(),
            record
        );
        let first = SealedRecord::seal(ChainHead::GENESIS, &record, body.clone());
        assert_eq!(first.seq, 1);
        assert_eq!(first.prev_hash, GENESIS_HASH);
        assert_eq!(first.columns.connection_id.as_deref(), Some("c-1"));
        assert_eq!(first.columns.at_us, 2);
        let second = SealedRecord::seal(first.head(), &record, body);
        assert_eq!(second.seq, 2);
        assert_eq!(second.prev_hash, first.hash);
    }

    #[test]
    fn hex_round_trips() {
        let hash = record_hash(&GENESIS_HASH, 1, "prune", 0, "");
        assert_eq!(hash_from_hex(&to_hex(&hash)), Some(hash));
        assert_eq!(hash_from_hex("zz"), None);
        assert_eq!(
            describe(RecordKind::Request, Some("ex-1"), Some("c")),
            "request of exchange ex-1"
        );
        assert_eq!(
            describe(RecordKind::Connection, None, Some("c-1")),
            "connection c-1"
        );
    }
}
