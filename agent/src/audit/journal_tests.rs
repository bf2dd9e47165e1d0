//! Tests of the request journal with the writer: requests recorded through it reach the store,
//! a crash's leftovers are folded in at start exactly once, and folded segments are deleted.
use std::{path::Path, time::Duration};

use super::{
    chain::ChainRecord,
    journal::{self, Journal},
    testing::{identity, request, store, T0},
    verify::verify,
    AuditWriter, WriterOptions,
};

fn exchange_ids(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT exchange_id FROM records WHERE kind = 'request' ORDER BY seq")
        .unwrap();
    let ids = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap();
    ids
}

fn verifies(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    verify(&conn).expect("the chain verifies");
}

/// What a killed daemon leaves: requests appended to the journal that never reached the store.
fn journal_without_store(db: &Path, ids: &[&str]) {
    let journal = Journal::open(&journal::dir_of(db)).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let record = ChainRecord::Request(request(id, T0 + i as i64, identity(7, None)));
        let body = record.canonical_body().unwrap();
        journal.append(body, drop).unwrap();
    }
}

fn segment_count(db: &Path) -> usize {
    journal::segments(&journal::dir_of(db)).unwrap().len()
}

#[tokio::test]
async fn a_recorded_request_reaches_the_store_and_a_restart_adds_it_no_second_time() {
    let (_dir, db) = store();
    let writer = AuditWriter::start(&db, WriterOptions::default()).unwrap();
    for id in ["ex-1", "ex-2"] {
        writer
            .record_request(request(id, T0, identity(7, None)))
            .await
            .unwrap();
    }
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .unwrap();
    assert_eq!(exchange_ids(&db), ["ex-1", "ex-2"]);
    assert!(segment_count(&db) >= 1, "the journal still holds them");

    let writer = AuditWriter::start(&db, WriterOptions::default()).unwrap();
    writer.shutdown();
    assert_eq!(exchange_ids(&db), ["ex-1", "ex-2"]);
    // Replay deleted the old segments; only the new writer's own (empty) one is left.
    assert_eq!(segment_count(&db), 1);
    verifies(&db);
}

#[test]
fn a_start_folds_in_what_a_crash_left_in_the_journal_after_what_the_store_has() {
    let (_dir, db) = store();
    super::testing::write(
        &db,
        [super::AuditRecord::Request(request(
            "ex-stored",
            T0,
            identity(7, None),
        ))],
    );
    // ex-stored was journaled too (its writer folded it); ex-lost-* never reached the store.
    journal_without_store(&db, &["ex-stored", "ex-lost-1", "ex-lost-2"]);

    let writer = AuditWriter::start(&db, WriterOptions::default()).unwrap();
    writer.shutdown();
    assert_eq!(exchange_ids(&db), ["ex-stored", "ex-lost-1", "ex-lost-2"]);
    verifies(&db);
}

#[test]
fn a_start_under_every_commit_durability_still_folds_the_journal() {
    let (_dir, db) = store();
    journal_without_store(&db, &["ex-lost"]);
    let options = WriterOptions {
        durability: super::Durability::EveryCommit,
        ..WriterOptions::default()
    };
    let writer = AuditWriter::start(&db, options).unwrap();
    writer.shutdown();
    assert_eq!(exchange_ids(&db), ["ex-lost"]);
    assert_eq!(
        segment_count(&db),
        0,
        "no journal is kept without the interval"
    );
}

#[test]
fn an_unreadable_record_keeps_its_segment_and_the_rest_is_folded() {
    let (_dir, db) = store();
    journal_without_store(&db, &["ex-good"]);
    let journal = Journal::open(&journal::dir_of(&db)).unwrap();
    journal
        .append(r#"{"not":"a request"}"#.to_owned(), drop)
        .unwrap();
    drop(journal);

    let writer = AuditWriter::start(&db, WriterOptions::default()).unwrap();
    writer.shutdown();
    assert_eq!(exchange_ids(&db), ["ex-good"]);
    // The unreadable one's segment, and the new writer's own.
    assert_eq!(segment_count(&db), 2);
}

#[tokio::test]
async fn the_syncer_deletes_segments_once_folded_and_synced() {
    let (_dir, db) = store();
    let options = WriterOptions {
        durability: super::Durability::Interval(Duration::from_millis(20)),
        ..WriterOptions::default()
    };
    let writer = AuditWriter::start(&db, options).unwrap();
    let first = journal::segments(&journal::dir_of(&db)).unwrap()[0].0;
    writer
        .record_request(request("ex-1", T0, identity(7, None)))
        .await
        .unwrap();
    // Rotated within a second of its first append, folded, then deleted.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while journal::segments(&journal::dir_of(&db))
        .unwrap()
        .iter()
        .any(|(number, _)| *number == first)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first segment was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .unwrap();
    assert_eq!(exchange_ids(&db), ["ex-1"]);
}
