//! Tests of verification: a clean store passes; each kind of tampering, done with plain SQL like
//! an attacker with the sqlite3 shell, is caught and the first bad record named.
use std::path::Path;

use crate::audit::{
    record::AuditRecord,
    testing::{self, attacker, identity, store, T0},
    AuditError, AuditReader,
};

/// Three complete exchanges: seqs 1-3 (ex-1), 4-6 (ex-2), 7-9 (ex-3); each is request, response,
/// connection.
fn three_exchanges() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, db) = store();
    let mut records: Vec<AuditRecord> = Vec::new();
    for (i, id) in ["ex-1", "ex-2", "ex-3"].into_iter().enumerate() {
        records.extend(testing::exchange(
            id,
            T0 + i as i64 * 1_000_000,
            identity(7, Some("billing")),
        ));
    }
    testing::write(&db, records);
    (dir, db)
}

fn tamper_and_verify(db: &Path, sql: &str) -> (u64, String) {
    attacker(db).execute_batch(sql).unwrap();
    match AuditReader::open(db).unwrap().verify() {
        Err(AuditError::ChainBroken { seq, what }) => (seq, what),
        other => panic!("verify after {sql:?} returned {other:?}"),
    }
}

#[test]
fn a_clean_store_verifies() {
    let (_dir, db) = three_exchanges();
    let report = AuditReader::open(&db).unwrap().verify().unwrap();
    assert_eq!(report.records, 9);
    assert_eq!(
        (report.first_seq, report.last_seq, report.anchor_seq),
        (Some(1), Some(9), None)
    );
}

#[test]
fn an_empty_store_verifies() {
    let (_dir, db) = store();
    testing::write(&db, []);
    let report = AuditReader::open(&db).unwrap().verify().unwrap();
    assert_eq!((report.records, report.first_seq), (0, None));
}

#[test]
fn an_edited_body_is_named() {
    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(
        &db,
        "UPDATE records SET body = replace(body, 'gpt-4o', 'gpt-3.5') WHERE seq = 4",
    );
    assert_eq!(seq, 4);
    assert_eq!(
        what,
        "record 4 (request of exchange ex-2) was altered: its hash does not match"
    );
}

#[test]
fn an_edited_response_is_named_before_its_index_row() {
    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(
        &db,
        "UPDATE records SET body = replace(body, '\"outcome\":\"ok\"', '\"outcome\":\"denied\"') \
         WHERE seq = 5; UPDATE exchanges SET outcome = 'denied' WHERE id = 'ex-2'",
    );
    assert_eq!(seq, 5);
    assert!(
        what.starts_with("record 5 (response of exchange ex-2) was altered"),
        "{what}"
    );
}

#[test]
fn a_deleted_record_is_named() {
    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(&db, "DELETE FROM records WHERE seq = 5");
    assert_eq!(seq, 5);
    assert_eq!(what, "record 5 is missing (the chain goes from 4 to 6)");

    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(&db, "DELETE FROM records WHERE seq <= 3");
    assert_eq!(seq, 1);
    assert_eq!(what, "record 1 is missing (the chain starts at 4)");
}

#[test]
fn swapped_records_are_named() {
    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(
        &db,
        "UPDATE records SET seq = -1 WHERE seq = 5; \
         UPDATE records SET seq = 5 WHERE seq = 6; \
         UPDATE records SET seq = 6 WHERE seq = -1;",
    );
    assert_eq!(seq, 5);
    assert_eq!(what, "records out of order at 5");
}

#[test]
fn an_edited_column_outside_the_hash_is_named() {
    let (_dir, db) = three_exchanges();
    let (seq, what) =
        tamper_and_verify(&db, "UPDATE records SET exchange_id = 'ex-9' WHERE seq = 7");
    assert_eq!(seq, 7);
    assert_eq!(
        what,
        "record 7 (request of exchange ex-9) was altered: its exchange_id column does not match its body"
    );
}

#[test]
fn an_edited_exchange_row_is_named() {
    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(
        &db,
        "UPDATE exchanges SET model = 'gpt-3.5' WHERE id = 'ex-2'",
    );
    assert_eq!(seq, 4);
    assert_eq!(
        what,
        "exchange ex-2 index row does not match its records (model)"
    );

    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(
        &db,
        "UPDATE exchanges SET total_tokens = 1 WHERE id = 'ex-3'",
    );
    assert_eq!(seq, 8);
    assert_eq!(
        what,
        "exchange ex-3 index row does not match its records (total_tokens)"
    );

    // Hiding a response: the row looks incomplete although a response record exists.
    let (_dir, db) = three_exchanges();
    let sql =
        "UPDATE exchanges SET ended_us = NULL, status = NULL, outcome = NULL, reason = NULL, \
               input_tokens = NULL, output_tokens = NULL, total_tokens = NULL, ttfb_ms = NULL, \
               duration_ms = NULL, response_seq = NULL WHERE id = 'ex-1'";
    let (seq, what) = tamper_and_verify(&db, sql);
    assert_eq!(seq, 2);
    assert_eq!(
        what,
        "exchange ex-1 index row does not match its records (response_seq)"
    );
}

#[test]
fn a_deleted_exchange_row_is_named() {
    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(&db, "DELETE FROM exchanges WHERE id = 'ex-2'");
    assert_eq!(seq, 4);
    assert_eq!(what, "exchange ex-2 index row was deleted");
}

#[test]
fn an_inserted_exchange_row_is_named() {
    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(
        &db,
        "INSERT INTO exchanges (id, connection_id, started_us, pid, uid, method, host, path, \
         endpoint, request_seq) VALUES ('ex-fake', 'c', 0, 1, 0, 'POST', 'h', '/', 'other', 2)",
    );
    assert_eq!(seq, 2);
    assert_eq!(
        what,
        "exchange ex-fake index row has no request record (it names seq 2)"
    );
}

#[test]
fn connection_rows_are_checked_too() {
    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(&db, "DELETE FROM connections WHERE id = 'conn-ex-1'");
    assert_eq!(
        (seq, what.as_str()),
        (3, "connection conn-ex-1 index row was deleted")
    );

    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(
        &db,
        "UPDATE connections SET bytes_to_client = 0 WHERE id = 'conn-ex-2'",
    );
    assert_eq!(seq, 6);
    assert_eq!(
        what,
        "connection conn-ex-2 index row does not match its records (bytes_to_client)"
    );
}

#[test]
fn a_forged_anchor_without_a_prune_record_is_named() {
    let (_dir, db) = three_exchanges();
    let (seq, what) = tamper_and_verify(
        &db,
        "DELETE FROM records WHERE seq <= 3; \
         INSERT INTO meta (key, value) SELECT 'anchor_seq', '3'; \
         INSERT INTO meta (key, value) SELECT 'anchor_hash', lower(hex(prev_hash)) FROM records WHERE seq = 4;",
    );
    assert_eq!(seq, 3);
    assert!(what.contains("has no prune record in the chain"), "{what}");
}
