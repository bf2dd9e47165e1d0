//! Tests of the writer: group commit, failure handling, shutdown, restart and retention.
use std::sync::Arc;

use super::*;
use crate::audit::{
    record::Outcome,
    testing::{self, attacker, identity, store, T0},
    AuditReader,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_share_transactions() {
    let (_dir, db) = store();
    let writer = AuditWriter::start(&db, None).unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let writer = writer.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                let request = testing::request(&format!("ex-{i}"), T0 + i, identity(1, None));
                start.wait().await;
                writer.commit(AuditRecord::Request(request)).await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=64).collect::<Vec<u64>>());
    let stats = writer.stats();
    assert_eq!(stats.records, 64);
    assert!(
        stats.transactions * 4 <= stats.records,
        "64 concurrent commits took {} transactions",
        stats.transactions
    );
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .unwrap();
    let report = AuditReader::open(&db).unwrap().verify().unwrap();
    assert_eq!(report.records, 64);
}

#[test]
fn a_failed_transaction_fails_its_batch_and_does_not_advance_the_head() {
    let (_dir, db) = store();
    let writer = AuditWriter::start(&db, None).unwrap();
    let record = |id: &str| AuditRecord::Request(testing::request(id, T0, identity(1, None)));
    assert_eq!(writer.commit_blocking(record("ex-1")).unwrap(), 1);

    let sabotage = attacker(&db);
    sabotage
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON records \
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
        )
        .unwrap();
    let err = writer.commit_blocking(record("ex-2")).unwrap_err();
    assert!(
        matches!(err, AuditError::CommitFailed(ref m) if m.contains("disk on fire")),
        "{err}"
    );
    assert_eq!(writer.stats().failed_transactions, 1);

    sabotage.execute_batch("DROP TRIGGER refuse").unwrap();
    assert_eq!(writer.commit_blocking(record("ex-3")).unwrap(), 2);
    writer.shutdown();
    let reader = AuditReader::open(&db).unwrap();
    assert_eq!(reader.verify().unwrap().last_seq, Some(2));
    assert!(reader.exchange("ex-2").unwrap().is_none());
}

#[test]
fn shutdown_commits_what_was_queued_and_refuses_later_records() {
    let (_dir, db) = store();
    let writer = AuditWriter::start(&db, None).unwrap();
    for i in 0..100 {
        let id = format!("ex-{i}");
        writer.submit(AuditRecord::Request(testing::request(
            &id,
            T0 + i,
            identity(1, None),
        )));
    }
    writer.shutdown();
    assert_eq!(writer.stats().records, 100);
    let late = AuditRecord::Request(testing::request("late", T0, identity(1, None)));
    assert!(matches!(
        writer.commit_blocking(late.clone()),
        Err(AuditError::WriterClosed)
    ));
    writer.submit(late);
    writer.shutdown();
    let report = AuditReader::open(&db).unwrap().verify().unwrap();
    assert_eq!(report.records, 100);
}

#[test]
fn a_restarted_writer_continues_the_chain() {
    let (_dir, db) = store();
    testing::write(&db, testing::exchange("ex-1", T0, identity(1, None)));
    testing::write(&db, testing::exchange("ex-2", T0 + 1, identity(2, None)));
    let reader = AuditReader::open(&db).unwrap();
    let report = reader.verify().unwrap();
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(6)));
    assert_eq!(reader.exchange("ex-2").unwrap().unwrap().request_seq, 4);
}

#[test]
fn a_response_without_its_request_is_chained_but_not_indexed() {
    let (_dir, db) = store();
    testing::write(
        &db,
        [AuditRecord::Response(testing::response(
            "ghost",
            T0,
            Outcome::Ok,
        ))],
    );
    let reader = AuditReader::open(&db).unwrap();
    assert_eq!(reader.verify().unwrap().records, 1);
    assert!(reader.exchange("ghost").unwrap().is_none());
    assert!(reader.list(&Default::default()).unwrap().is_empty());
}

#[test]
fn retention_prunes_old_records_and_keeps_the_chain_verifiable() {
    let (_dir, db) = store();
    let now = now_us();
    let day = MICROS_PER_DAY;
    let mut records = testing::exchange("old-1", now - 10 * day, identity(1, None));
    records.extend(testing::exchange("old-2", now - 9 * day, identity(1, None)));
    records.extend(testing::exchange("new-1", now - day / 2, identity(1, None)));
    testing::write(&db, records);

    let writer = AuditWriter::start(&db, Some(2)).unwrap();
    writer.shutdown();
    assert_eq!(writer.stats().prunes, 1);

    let reader = AuditReader::open(&db).unwrap();
    let report = reader.verify().unwrap();
    assert_eq!(report.anchor_seq, Some(6));
    assert_eq!((report.first_seq, report.last_seq), (Some(7), Some(10)));
    assert!(reader.exchange("old-1").unwrap().is_none());
    assert!(reader.exchange("new-1").unwrap().is_some());
    let ids: Vec<String> = reader
        .list(&Default::default())
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["new-1"]);
    let conn = attacker(&db);
    let (prune_body, leftover): (String, i64) = conn
        .query_row(
            "SELECT (SELECT body FROM records WHERE kind = 'prune'), \
             (SELECT count(*) FROM connections WHERE id LIKE 'conn-old%')",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert!(prune_body.contains(r#""through_seq":6"#), "{prune_body}");
    assert_eq!(leftover, 0);

    // Appending after a prune continues from the prune record.
    testing::write(&db, testing::exchange("new-2", now, identity(1, None)));
    assert_eq!(reader.verify().unwrap().last_seq, Some(13));

    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'anchor_hash'",
        [to_hex(&[7u8; 32])],
    )
    .unwrap();
    let err = reader.verify().unwrap_err();
    assert!(
        matches!(err, AuditError::ChainBroken { seq: 7, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("retention anchor"), "{err}");
}

#[test]
fn retention_moves_the_anchor_when_only_the_previous_prune_is_old() {
    let (_dir, db) = store();
    let now = now_us();
    testing::write(
        &db,
        testing::exchange("old", now - 10 * MICROS_PER_DAY, identity(1, None)),
    );
    let writer = AuditWriter::start(&db, Some(2)).unwrap();
    writer.shutdown();
    // Everything was old: the chain is now the prune record alone, linked to the anchor.
    let reader = AuditReader::open(&db).unwrap();
    let report = reader.verify().unwrap();
    assert_eq!((report.anchor_seq, report.first_seq), (Some(3), Some(4)));
    // A writer started now loads its head from that prune record.
    testing::write(&db, testing::exchange("new", now, identity(1, None)));
    assert_eq!(reader.verify().unwrap().last_seq, Some(7));
}

#[test]
fn a_reader_sees_commits_while_the_writer_runs() {
    let (_dir, db) = store();
    let writer = AuditWriter::start(&db, None).unwrap();
    let request = |id: &str| AuditRecord::Request(testing::request(id, T0, identity(1, None)));
    writer.commit_blocking(request("ex-1")).unwrap();
    let reader = AuditReader::open(&db).unwrap();
    assert_eq!(reader.list(&Default::default()).unwrap().len(), 1);
    writer.commit_blocking(request("ex-2")).unwrap();
    assert_eq!(reader.list(&Default::default()).unwrap().len(), 2);
    assert_eq!(reader.verify().unwrap().records, 2);
    writer.shutdown();
}
