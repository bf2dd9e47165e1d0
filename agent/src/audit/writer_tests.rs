//! Tests of the writer: group commit, failure handling, shutdown, restart and retention.
use std::{
    path::Path,
    sync::{atomic::Ordering, mpsc, Arc},
    time::{Duration, Instant},
};

use super::*;
use crate::audit::{
    chain::{to_hex, ChainRecord, RecordKind},
    record::Outcome,
    retention::MICROS_PER_DAY,
    testing::{self, attacker, identity, store, T0},
    writer_thread::Pending,
    AuditReader,
};

/// A writer thread that has not started running, so records can be queued or batched by hand.
fn thread(
    db: &Path,
    retention_days: Option<u32>,
    prune_chunk: usize,
) -> (Thread, mpsc::Sender<Message>, Arc<Counters>) {
    let conn = schema::open_for_writing(db, Durability::default()).unwrap();
    let head = load_head(&conn).unwrap();
    let (sender, receiver) = mpsc::channel();
    let counters = Arc::new(Counters::default());
    let thread = Thread {
        conn,
        head,
        receiver,
        retention_days,
        prune_chunk,
        counters: Arc::clone(&counters),
        folded: None,
        failed_at_barrier: 0,
    };
    (thread, sender, counters)
}

/// A request record for a hand-made batch: journaled (its canonical body already in the
/// request journal) or not, with `ack` answered once it commits.
fn pending_request(id: &str, journaled: bool, ack: Option<Ack>) -> Pending {
    let record = ChainRecord::from(AuditRecord::Request(testing::request(
        id,
        T0,
        identity(1, None),
    )));
    Pending {
        journaled: journaled.then(|| record.canonical_body().unwrap()),
        record,
        ack,
    }
}

/// A writer thread whose store an operator holds locked (`BEGIN IMMEDIATE`), with a busy
/// timeout of 50 ms instead of the production 5 s: the behaviour is the same, only faster.
fn thread_behind_a_lock(db: &Path) -> (Thread, Arc<Counters>, rusqlite::Connection) {
    let (thread, _sender, counters) = thread(db, None, PRUNE_CHUNK);
    thread.conn.busy_timeout(Duration::from_millis(50)).unwrap();
    let operator = attacker(db);
    operator.execute_batch("BEGIN IMMEDIATE").unwrap();
    (thread, counters, operator)
}

/// The default options, with retention.
fn retaining_days(days: u32) -> WriterOptions {
    WriterOptions {
        retention_days: Some(days),
        ..WriterOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_share_transactions() {
    let (_dir, db) = store();
    let writer = AuditWriter::start(&db, WriterOptions::default()).unwrap();
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
    let writer = AuditWriter::start(&db, WriterOptions::default()).unwrap();
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
    // The batch, then its one record retried alone.
    assert_eq!(writer.stats().failed_transactions, 2);
    assert_eq!(writer.stats().failed_records, 1);

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
    let writer = AuditWriter::start(&db, WriterOptions::default()).unwrap();
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

    let writer = AuditWriter::start(&db, retaining_days(2)).unwrap();
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
    let writer = AuditWriter::start(&db, retaining_days(2)).unwrap();
    writer.shutdown();
    // Everything was old: the chain is now the prune record alone, linked to the anchor.
    let reader = AuditReader::open(&db).unwrap();
    let report = reader.verify().unwrap();
    assert_eq!((report.anchor_seq, report.first_seq), (Some(3), Some(4)));
    // A writer started now loads its head from that prune record.
    testing::write(&db, testing::exchange("new", now, identity(1, None)));
    assert_eq!(reader.verify().unwrap().last_seq, Some(7));
}

/// How many records the database file holds on its own, as if its WAL were gone: what has been
/// checkpointed into it.
fn records_checkpointed(db: &Path) -> i64 {
    let copy = db.with_file_name("checkpointed-copy.db");
    std::fs::copy(db, &copy).unwrap();
    // Before the first checkpoint the file does not even hold the schema.
    let count = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row("SELECT count(*) FROM records", [], |row| row.get(0))
        .unwrap_or(0);
    std::fs::remove_file(&copy).unwrap();
    count
}

#[test]
fn with_interval_durability_the_syncer_checkpoints_the_wal_off_the_writer() {
    let (_dir, db) = store();
    let options = WriterOptions {
        retention_days: None,
        durability: Durability::Interval(Duration::from_millis(10)),
    };
    let writer = AuditWriter::start(&db, options).unwrap();
    for i in 0..20 {
        let record = testing::request(&format!("ex-{i}"), T0, identity(1, None));
        writer
            .commit_blocking(AuditRecord::Request(record))
            .unwrap();
    }
    // The writer does not checkpoint (wal_autocheckpoint=0); the syncer does, within its interval.
    let deadline = Instant::now() + Duration::from_secs(5);
    while records_checkpointed(&db) < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(records_checkpointed(&db), 20);
    writer.shutdown();
}

#[test]
fn a_reader_sees_commits_while_the_writer_runs() {
    let (_dir, db) = store();
    let writer = AuditWriter::start(&db, WriterOptions::default()).unwrap();
    let request = |id: &str| AuditRecord::Request(testing::request(id, T0, identity(1, None)));
    writer.commit_blocking(request("ex-1")).unwrap();
    let reader = AuditReader::open(&db).unwrap();
    assert_eq!(reader.list(&Default::default()).unwrap().len(), 1);
    writer.commit_blocking(request("ex-2")).unwrap();
    assert_eq!(reader.list(&Default::default()).unwrap().len(), 2);
    assert_eq!(reader.verify().unwrap().records, 2);
    writer.shutdown();
}

#[test]
fn a_failed_batch_is_retried_record_by_record_so_a_bad_record_fails_alone() {
    let (_dir, db) = store();
    testing::write(
        &db,
        [AuditRecord::Request(testing::request(
            "ex-0",
            T0,
            identity(1, None),
        ))],
    );
    let (mut thread, _sender, counters) = thread(&db, None, PRUNE_CHUNK);
    let sabotage = attacker(&db);
    sabotage
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.exchange_id = 'ex-bad' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        )
        .unwrap();
    let queued = |record: AuditRecord| {
        let (ack, done) = oneshot::channel();
        let pending = Pending {
            journaled: None,
            record: record.into(),
            ack: Some(ack),
        };
        (pending, done)
    };
    let fire_and_forget = |record: AuditRecord| Pending {
        journaled: None,
        record: record.into(),
        ack: None,
    };
    let (first, mut first_done) = queued(AuditRecord::Request(testing::request(
        "ex-1",
        T0 + 1,
        identity(1, None),
    )));
    let (bad, mut bad_done) = queued(AuditRecord::Request(testing::request(
        "ex-bad",
        T0 + 2,
        identity(1, None),
    )));
    let (last, mut last_done) = queued(AuditRecord::Request(testing::request(
        "ex-2",
        T0 + 3,
        identity(1, None),
    )));
    thread.commit_batch(vec![
        first,
        bad,
        fire_and_forget(AuditRecord::Response(testing::response(
            "ex-1",
            T0 + 4,
            Outcome::Ok,
        ))),
        fire_and_forget(AuditRecord::Connection(testing::connection(
            "conn-ex-1",
            T0 + 5,
            identity(1, None),
        ))),
        last,
    ]);

    assert_eq!(first_done.try_recv().unwrap().unwrap(), 2);
    let err = bad_done.try_recv().unwrap().unwrap_err();
    assert!(
        matches!(err, AuditError::CommitFailed(ref m) if m.contains("refused by the test")),
        "{err}"
    );
    // Its neighbours took the seqs after it: the chain has no gap where it would have been.
    assert_eq!(last_done.try_recv().unwrap().unwrap(), 5);
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    assert_eq!(count(&counters.records), 4);
    assert_eq!(count(&counters.transactions), 4);
    assert_eq!(count(&counters.failed_transactions), 2);
    assert_eq!(count(&counters.failed_records), 1);

    sabotage.execute_batch("DROP TRIGGER refuse").unwrap();
    drop(thread);
    let reader = AuditReader::open(&db).unwrap();
    let report = reader.verify().unwrap();
    assert_eq!((report.records, report.last_seq), (5, Some(5)));
    let ex1 = reader.exchange("ex-1").unwrap().unwrap();
    assert_eq!((ex1.request_seq, ex1.response_seq), (2, Some(3)));
    assert!(ex1.connection.is_some());
    assert!(reader.exchange("ex-bad").unwrap().is_none());
    assert_eq!(reader.exchange("ex-2").unwrap().unwrap().request_seq, 5);
}

#[test]
fn retention_prunes_in_chunks_and_commits_queued_records_between_them() {
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
    records.extend(testing::exchange(
        "new-1",
        now - MICROS_PER_DAY / 2,
        identity(1, None),
    ));
    testing::write(&db, records);

    // Seqs 1..=15 are old, in chunks of 4: through 4, 8, 12, then 15.
    let (thread, sender, counters) = thread(&db, Some(2), 4);
    // Queued before the thread starts: committed after the first chunk, not after the pass.
    let between = testing::request("between", now, identity(1, None));
    sender
        .send(Message::Append {
            journaled: None,
            record: AuditRecord::Request(between).into(),
            ack: None,
        })
        .unwrap();
    let running = std::thread::spawn(move || thread.run());
    let deadline = Instant::now() + Duration::from_secs(10);
    while counters.prunes.load(Ordering::Relaxed) < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    sender.send(Message::Shutdown).unwrap();
    running.join().unwrap();
    assert_eq!(counters.prunes.load(Ordering::Relaxed), 4);

    let reader = AuditReader::open(&db).unwrap();
    let report = reader.verify().unwrap();
    assert_eq!(report.anchor_seq, Some(15));
    assert_eq!((report.first_seq, report.last_seq), (Some(16), Some(23)));
    let conn = attacker(&db);
    let mut statement = conn
        .prepare("SELECT seq, kind, body FROM records WHERE seq > 18 ORDER BY seq")
        .unwrap();
    let tail: Vec<(i64, String, u64)> = statement
        .query_map([], |row| {
            let (seq, kind, body): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let record = ChainRecord::parse(RecordKind::parse(&kind).unwrap(), &body).unwrap();
            let through = match record {
                ChainRecord::Prune(prune) => prune.through_seq,
                _ => 0,
            };
            Ok((seq, kind, through))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let tail: Vec<(i64, &str, u64)> = tail.iter().map(|(s, k, t)| (*s, k.as_str(), *t)).collect();
    assert_eq!(
        tail,
        [
            (19, "prune", 4),
            (20, "request", 0),
            (21, "prune", 8),
            (22, "prune", 12),
            (23, "prune", 15),
        ]
    );
    let ids: Vec<String> = reader
        .list(&Default::default())
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["between", "new-1"]);
}

#[test]
fn a_batch_still_locked_on_retry_fails_the_rest_without_waiting_for_each() {
    let (_dir, db) = store();
    let (mut thread, counters, operator) = thread_behind_a_lock(&db);
    let batch = (0..3)
        .map(|i| pending_request(&format!("ex-{i}"), false, None))
        .collect();
    thread.commit_batch(batch);
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    // The batch and the first retry waited on the lock; the other two were failed at once.
    assert_eq!(count(&counters.failed_transactions), 2);
    assert_eq!(count(&counters.failed_records), 3);
    operator.execute_batch("ROLLBACK").unwrap();

    let (ack, mut done) = oneshot::channel();
    thread.commit_batch(vec![pending_request("ex-after", false, Some(ack))]);
    assert_eq!(done.try_recv().unwrap().unwrap(), 1);
    drop(thread);
    assert_eq!(AuditReader::open(&db).unwrap().verify().unwrap().records, 1);
}

#[test]
fn a_journaled_request_behind_a_lock_stalls_the_writer_instead_of_being_dropped() {
    let (_dir, db) = store();
    let (mut thread, counters, operator) = thread_behind_a_lock(&db);
    // The first fails under the lock and makes the retry fail the rest fast, but the journaled
    // request's record must not be among them.
    let batch = vec![
        pending_request("ex-plain", false, None),
        pending_request("ex-journaled", true, None),
        pending_request("ex-after", false, None),
    ];
    let running = std::thread::spawn(move || thread.commit_batch(batch));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !counters.failing.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the writer never stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(counters.failing().unwrap().contains("locked"));
    operator.execute_batch("ROLLBACK").unwrap();
    running.join().unwrap();

    assert!(counters.failing().is_none(), "the stall ended");
    assert_eq!(counters.failed_records.load(Ordering::Relaxed), 1);
    let ids: Vec<String> = AuditReader::open(&db)
        .unwrap()
        .list(&Default::default())
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(ids.contains(&"ex-journaled".to_owned()), "{ids:?}");
    assert!(ids.contains(&"ex-after".to_owned()), "{ids:?}");
    assert!(!ids.contains(&"ex-plain".to_owned()), "{ids:?}");
}

#[test]
fn the_queue_depth_counts_records_the_thread_has_not_taken_and_commits_are_observed() {
    let (_dir, db) = store();
    let writer = AuditWriter::start(&db, WriterOptions::default()).unwrap();
    let (observed_tx, observed) = mpsc::channel::<Duration>();
    let (release_tx, release) = mpsc::channel::<()>();
    let release = std::sync::Mutex::new(release);
    // Holds the writer thread inside its first commit until released (or the sender is dropped).
    writer.observe_commits(Box::new(move |took| {
        let _ = observed_tx.send(took);
        let _ = release.lock().unwrap().recv();
    }));
    let record = |i: i64| {
        AuditRecord::Request(testing::request(
            &format!("ex-q{i}"),
            T0 + i,
            identity(1, None),
        ))
    };

    writer.submit(record(0));
    observed
        .recv_timeout(Duration::from_secs(10))
        .expect("the first commit is observed");
    for i in 1..=3 {
        writer.submit(record(i));
    }
    assert_eq!(
        writer.queue_depth(),
        3,
        "the thread is held: three records wait"
    );

    drop(release_tx);
    writer.shutdown();
    assert_eq!(writer.queue_depth(), 0, "every queued record was taken");
    assert_eq!(writer.stats().records, 4);
    assert!(
        observed.try_iter().count() >= 1,
        "later commits are observed too"
    );
}
