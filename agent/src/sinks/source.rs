//! A sink's view of the store: where its cursor stands against the chain, and the next batch of
//! records after it, as the events its filter chooses.
use std::{collections::HashSet, path::Path};

use super::{
    classify::classify,
    cursor::Cursor,
    event::{EventClass, SinkEvent},
    pruned::parse_record,
};
use crate::audit::{
    tail::{ChainTail, StoredRecord},
    AuditError,
};

/// What the filter lets through; built from a `[[sink]]`'s common keys.
#[derive(Clone, Debug)]
pub struct Filter {
    pub classes: HashSet<EventClass>,
    pub include_bodies: bool,
}

/// The records read after a cursor.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// The records the filter chose, as events (possibly none: the batch still moves the cursor).
    pub events: Vec<SinkEvent>,
    /// The last record read; None when nothing was after the cursor.
    pub last: Option<Cursor>,
    /// Records read (shipped or not).
    pub read: usize,
    /// The store's head when read.
    pub head: u64,
    /// Records between the cursor and the first one read that are gone (retention pruned them).
    pub pruned: u64,
}

/// How a stored cursor relates to the store it is read against.
#[derive(Debug, PartialEq, Eq)]
pub enum CursorCheck {
    Valid,
    /// The cursor is past the last record: the store was replaced by a shorter one.
    PastHead {
        head: u64,
    },
    /// The record at the cursor is another one than the sink acknowledged: the store was replaced.
    Replaced,
}

pub struct Source {
    tail: ChainTail,
    filter: Filter,
}

impl Source {
    pub fn open(db: &Path, filter: Filter) -> Result<Source, AuditError> {
        Ok(Source {
            tail: ChainTail::open(db)?,
            filter,
        })
    }

    /// The cursor that stands at the store's head now (`start = "now"`).
    pub fn head(&self) -> Result<Cursor, AuditError> {
        let seq = self.tail.head_seq()?;
        Ok(Cursor {
            seq,
            hash: self.tail.hash_at(seq)?.map(hex::encode).unwrap_or_default(),
        })
    }

    /// The last seq committed.
    pub fn head_seq(&self) -> Result<u64, AuditError> {
        self.tail.head_seq()
    }

    pub fn check(&self, cursor: &Cursor) -> Result<CursorCheck, AuditError> {
        let head = self.tail.head_seq()?;
        if cursor.seq > head {
            return Ok(CursorCheck::PastHead { head });
        }
        // A record pruned since (None) is no sign of a replaced store.
        Ok(match self.tail.hash_at(cursor.seq)? {
            Some(hash) if cursor.seq > 0 && hex::encode(&hash) != cursor.hash => {
                CursorCheck::Replaced
            }
            _ => CursorCheck::Valid,
        })
    }

    /// Up to `limit` records after `cursor`.
    pub fn read(&self, cursor: &Cursor, limit: usize) -> Result<ReadBatch, AuditError> {
        let head = self.tail.head_seq()?;
        let records = self.tail.after(cursor.seq, limit)?;
        let pruned = match records.first() {
            // From 0 (a new sink) nothing was ever the sink's to deliver before the first record.
            Some(first) if cursor.seq > 0 => first.seq.saturating_sub(cursor.seq + 1),
            _ => 0,
        };
        let mut events = Vec::new();
        for record in &records {
            if let Some(event) = self.event(record) {
                events.push(event);
            }
        }
        // The responses' exchanges, in one query for the batch.
        let ids: Vec<&str> = events
            .iter()
            .filter(|e| e.name == "response")
            .filter_map(|e| e.exchange_id.as_deref())
            .collect();
        if !ids.is_empty() {
            let mut summaries = self.tail.exchange_summaries(&ids)?;
            for event in events.iter_mut().filter(|e| e.name == "response") {
                event.exchange = event
                    .exchange_id
                    .as_deref()
                    .and_then(|id| summaries.remove(id));
            }
        }
        Ok(ReadBatch {
            events,
            last: records.last().map(|r| Cursor {
                seq: r.seq,
                hash: hex::encode(&r.hash),
            }),
            read: records.len(),
            head: head.max(records.last().map_or(0, |r| r.seq)),
            pruned,
        })
    }

    /// The event of one record (its exchange filled in by `read`), if the filter takes it.
    fn event(&self, stored: &StoredRecord) -> Option<SinkEvent> {
        let record = match parse_record(stored.kind, &stored.body, self.filter.include_bodies) {
            Ok(record) => record,
            // Shipped all the same (a gap would hide it); `audit verify` says more.
            Err(error) => {
                tracing::error!(seq = stored.seq, %error, "audit record unreadable; shipped as such");
                serde_json::json!({ "unreadable": error.to_string() })
            }
        };
        let (class, name) = classify(stored.kind, &record)?;
        if !self.filter.classes.contains(&class) {
            return None;
        }
        Some(SinkEvent {
            seq: stored.seq,
            class,
            name,
            at_us: stored.at_us,
            exchange_id: stored.exchange_id.clone(),
            record,
            exchange: None,
        })
    }
}
