//! Learning the baselines from the audit store at start: one indexed scan of the `exchanges` rows
//! of the trailing window, through a read-only connection.
use std::{path::Path, time::Instant};

use rusqlite::params;

use super::{baseline::HOUR_US, detectors::Detectors, identity_key::identity_key};
use crate::audit::{schema, AuditError};

/// What learning took.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Learned {
    pub exchanges: u64,
    pub elapsed_us: u64,
}

/// Adds every exchange that started in `[until_us - days, until_us)` to `detectors`. A store
/// that does not exist yet holds nothing to learn.
pub fn learn_from_store(
    detectors: &mut Detectors,
    db: &Path,
    days: u32,
    until_us: i64,
) -> Result<Learned, AuditError> {
    let started = Instant::now();
    let conn = match schema::open_read_only(db) {
        Ok(conn) => conn,
        Err(AuditError::NoStore(_)) => return Ok(Learned::default()),
        Err(error) => return Err(error),
    };
    let since_us = until_us - i64::from(days) * 24 * HOUR_US;
    // exchanges_started serves the range; the rest are columns of the same row.
    let mut statement = conn.prepare(
        "SELECT account, unit, uid, model, started_us, \
         COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) \
         FROM exchanges WHERE started_us >= ?1 AND started_us < ?2",
    )?;
    let mut rows = statement.query(params![since_us, until_us])?;
    let mut exchanges = 0u64;
    while let Some(row) = rows.next()? {
        let account: Option<String> = row.get(0)?;
        let unit: Option<String> = row.get(1)?;
        let uid: i64 = row.get(2)?;
        let model: Option<String> = row.get(3)?;
        let started_us: i64 = row.get(4)?;
        let tokens: i64 = row.get(5)?;
        let key = identity_key(
            account.as_deref(),
            unit.as_deref(),
            u32::try_from(uid).unwrap_or(u32::MAX),
        );
        detectors.learn(
            &key,
            started_us,
            u64::try_from(tokens).unwrap_or(0),
            model.as_deref(),
        );
        exchanges += 1;
    }
    Ok(Learned {
        exchanges,
        elapsed_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    })
}
