//! Retention: deleting the oldest records of the chain in bounded chunks, each chunk anchored by
//! its own prune record so the chain verifies after every one of them.
use rusqlite::{Connection, TransactionBehavior};

use super::{
    chain::{to_hex, ChainHead, ChainRecord, PruneRecord, SealedRecord},
    index::{self, index_entry},
    schema::{self, META_ANCHOR_HASH, META_ANCHOR_SEQ},
    AuditError,
};

/// Records deleted per transaction at most: the writer commits queued records between chunks, so
/// a first prune of a large store does not hold up request commits for its whole length.
pub(crate) const PRUNE_CHUNK: usize = 10_000;

pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Records started before this (unix µs) are due for deletion `days` after `now_us`.
pub(crate) fn cutoff_us(days: u32, now_us: i64) -> i64 {
    now_us.saturating_sub(i64::from(days).saturating_mul(MICROS_PER_DAY))
}

/// What one chunk did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PrunedChunk {
    /// The prune record just appended: the writer's new head.
    pub head: ChainHead,
    pub through_seq: u64,
    /// Whether the next record is also older than the cutoff (another chunk is due).
    pub more: bool,
}

/// In one transaction: deletes the first records of the chain (at most `chunk`) whose at_us is
/// before `cutoff_us`, stopping at the first newer one; appends a prune record after `head`; and
/// moves the anchor to the last deleted record. None when nothing is due.
pub(crate) fn prune_chunk(
    conn: &mut Connection,
    head: ChainHead,
    cutoff_us: i64,
    pruned_at_us: i64,
    chunk: usize,
) -> Result<Option<PrunedChunk>, AuditError> {
    let chunk = chunk.max(1);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (through, more) = {
        let mut statement =
            tx.prepare_cached("SELECT seq, at_us, hash FROM records ORDER BY seq LIMIT ?1")?;
        // One row past the chunk says whether another chunk follows.
        let limit = i64::try_from(chunk).unwrap_or(i64::MAX).saturating_add(1);
        let mut rows = statement.query([limit])?;
        let mut through: Option<(i64, Vec<u8>)> = None;
        let mut taken = 0;
        let mut more = false;
        while let Some(row) = rows.next()? {
            if row.get::<_, i64>(1)? >= cutoff_us {
                break;
            }
            if taken == chunk {
                more = true;
                break;
            }
            through = Some((row.get(0)?, row.get(2)?));
            taken += 1;
        }
        (through, more)
    };
    let Some((through_seq, through_hash)) = through else {
        return Ok(None);
    };
    let record = ChainRecord::Prune(PruneRecord {
        through_seq: through_seq.max(0) as u64,
        through_hash: to_hex(&through_hash),
        cutoff_us,
        pruned_at_us,
    });
    let sealed = SealedRecord::seal(head, &record, record.canonical_body()?);
    tx.execute("DELETE FROM records WHERE seq <= ?1", [through_seq])?;
    index::apply(&tx, &index_entry(&record, sealed.seq))?;
    sealed.insert(&tx)?;
    schema::meta_set(&tx, META_ANCHOR_SEQ, &through_seq.to_string())?;
    schema::meta_set(&tx, META_ANCHOR_HASH, &to_hex(&through_hash))?;
    tx.commit()?;
    Ok(Some(PrunedChunk {
        head: sealed.head(),
        through_seq: through_seq.max(0) as u64,
        more,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{
        chain::load_head,
        testing::{self, identity, store},
        writer::now_us,
        AuditReader, Durability,
    };

    #[test]
    fn every_chunk_leaves_a_chain_that_verifies_from_its_anchor() {
        let (_dir, db) = store();
        let now = now_us();
        let mut records = Vec::new();
        for i in 0..5 {
            let id = format!("old-{i}");
            records.extend(testing::exchange(
                &id,
                now - 10 * MICROS_PER_DAY + i,
                identity(1, None),
            ));
        }
        records.extend(testing::exchange("new", now, identity(1, None)));
        testing::write(&db, records);

        let mut conn = schema::open_for_writing(&db, Durability::default()).unwrap();
        let mut head = load_head(&conn).unwrap();
        let reader = AuditReader::open(&db).unwrap();
        let cutoff = cutoff_us(2, now);
        let mut chunks = Vec::new();
        while let Some(chunk) = prune_chunk(&mut conn, head, cutoff, now, 4).unwrap() {
            head = chunk.head;
            chunks.push((chunk.through_seq, chunk.more));
            let report = reader.verify().unwrap();
            assert_eq!(report.anchor_seq, Some(chunk.through_seq));
            assert_eq!(report.last_seq, Some(head.seq));
            if !chunk.more {
                break;
            }
        }
        assert_eq!(chunks, [(4, true), (8, true), (12, true), (15, false)]);
        // Nothing older is left: another pass does nothing.
        assert_eq!(prune_chunk(&mut conn, head, cutoff, now, 4).unwrap(), None);
        let ids: Vec<String> = reader
            .list(&Default::default())
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["new"]);
    }
}
