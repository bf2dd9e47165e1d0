//! After the soak, the audit store against what was sent: one finished exchange per request, each
//! with the outcome its kind calls for, and the chain verified by `warden audit verify`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use warden_tests::{Client, Daemon};

use crate::setups::AuditCounts;

/// How long the writer may take to record the last exchanges once the load has ended.
const SETTLE_DEADLINE: Duration = Duration::from_secs(120);
/// `warden audit verify` re-hashes every record; on a loaded 2-core machine that takes a while.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize)]
pub struct RecordsCheck {
    /// Requests the load generators sent.
    pub sent: u64,
    pub counts: AuditCounts,
    /// Requests without a finished exchange on record (negative: more exchanges than requests).
    pub missing: i64,
    /// By outcome, what the kinds sent call for and what the store holds.
    pub outcomes_expected: BTreeMap<String, u64>,
    pub outcomes_recorded: BTreeMap<String, u64>,
    pub chain_verified: bool,
    /// `warden audit verify`'s own words.
    pub verify_output: String,
    pub verify_secs: f64,
}

/// Waits (with a deadline) for the store to hold `sent` finished exchanges, then counts them by
/// outcome and verifies the chain.
pub fn check(
    daemon: &Daemon,
    warden_bin: &Path,
    sent: u64,
    outcomes_expected: BTreeMap<String, u64>,
) -> Result<RecordsCheck> {
    let db = daemon.state_dir().join("audit.db");
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let counts = loop {
        let counts = AuditCounts::read(&db)?;
        if counts.complete_exchanges >= sent || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let outcomes_recorded = outcomes(&db)?;
    let started = Instant::now();
    let verify = Client::new([
        warden_bin.as_os_str(),
        "audit".as_ref(),
        "verify".as_ref(),
        "--config".as_ref(),
        daemon.config_path().as_os_str(),
    ])
    .timeout(VERIFY_TIMEOUT)
    .run();
    let chain_verified = verify.status.success() && verify.stdout.contains("audit chain ok");
    Ok(RecordsCheck {
        sent,
        counts,
        missing: sent as i64 - counts.complete_exchanges as i64,
        outcomes_expected,
        outcomes_recorded,
        chain_verified,
        verify_output: format!("{}{}", verify.stdout.trim(), verify.stderr.trim()),
        verify_secs: started.elapsed().as_secs_f64(),
    })
}

/// Finished exchanges by outcome.
fn outcomes(db: &Path) -> Result<BTreeMap<String, u64>> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut statement = conn.prepare(
        "SELECT outcome, count(*) FROM exchanges WHERE outcome IS NOT NULL GROUP BY outcome",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
