//! The runner against a real store and a scripted transport: batching, filtering, retries, the
//! cursor (stored only after an acknowledgement), retention gaps and replaced stores.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use super::{
    cursor::{Cursor, CursorFile},
    event::{DeliveryError, DeliveryFuture, EventClass, SinkEvent, Transport},
    runner::Runner,
    source::{CursorCheck, Filter, Source},
};
use crate::{
    audit::testing::{self, T0},
    config::sinks::{SinkCommonConfig, SinkEventClass, SinkStart},
    metrics::{LiveReadings, Metrics},
};

/// Records what it was handed; fails the first `failures` calls.
#[derive(Clone, Default)]
struct Scripted {
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
    failures: Arc<Mutex<u32>>,
}

impl Transport for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn deliver<'a>(&'a mut self, batch: &'a [SinkEvent]) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(DeliveryError::Retryable("receiver down".into()));
            }
            self.batches
                .lock()
                .unwrap()
                .push(batch.iter().map(|e| e.seq).collect());
            Ok(())
        })
    }
}

impl Scripted {
    fn seqs(&self) -> Vec<u64> {
        self.batches.lock().unwrap().concat()
    }
}

fn every_class() -> Filter {
    Filter {
        classes: HashSet::from([
            EventClass::Exchanges,
            EventClass::Connections,
            EventClass::Approvals,
            EventClass::Alerts,
            EventClass::Admin,
        ]),
        include_bodies: false,
    }
}

fn common(batch_max: usize, events: Vec<SinkEventClass>) -> SinkCommonConfig {
    SinkCommonConfig {
        name: "t".into(),
        events,
        include_bodies: false,
        batch_max,
        flush_interval_ms: 10,
        retry_max_backoff_secs: 1,
        start: SinkStart::Beginning,
    }
}

/// A store with `n` exchanges (request, response, connection each: 3n records).
fn store_with(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, db) = testing::store();
    let records = (0..n).flat_map(|i| {
        testing::exchange(
            &format!("ex-{i}"),
            T0 + i as i64 * 1_000_000,
            testing::identity(10, Some("billing")),
        )
    });
    let records: Vec<_> = records.collect();
    // The writer's blocking commits may not run on an async test's thread.
    let at = db.clone();
    std::thread::spawn(move || testing::write(&at, records))
        .join()
        .unwrap();
    (dir, db)
}

#[test]
fn batches_follow_seq_order_and_the_filter_moves_the_cursor_past_what_it_skips() {
    let (_dir, db) = store_with(3);
    let mut filter = every_class();
    filter.classes.remove(&EventClass::Connections);
    let source = Source::open(&db, filter).unwrap();
    let first = source.read(&Cursor::default(), 4).unwrap();
    assert_eq!(first.read, 4);
    assert_eq!(first.head, 9);
    assert_eq!(first.last.as_ref().unwrap().seq, 4);
    let seqs: Vec<u64> = first.events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        vec![1, 2, 4],
        "seq 3 is a connection record: filtered"
    );
    let response = &first.events[1];
    assert_eq!(response.name, "response");
    assert_eq!(response.class, EventClass::Exchanges);
    let summary = response
        .exchange
        .as_ref()
        .expect("a response carries its exchange");
    assert_eq!(summary.id, "ex-0");
    assert_eq!(summary.account.as_deref(), Some("billing"));
    assert!(first.events[0].exchange.is_none(), "requests carry none");
    let rest = source.read(first.last.as_ref().unwrap(), 100).unwrap();
    assert_eq!(rest.read, 5);
    assert_eq!(rest.pruned, 0);
    let done = source.read(rest.last.as_ref().unwrap(), 100).unwrap();
    assert!(done.last.is_none() && done.events.is_empty());
}

#[test]
fn a_cursor_that_does_not_fit_the_store_is_told_apart() {
    let (_dir, db) = store_with(1);
    let source = Source::open(&db, every_class()).unwrap();
    let head = source.head().unwrap();
    assert_eq!(head.seq, 3);
    assert_eq!(source.check(&head).unwrap(), CursorCheck::Valid);
    let past = Cursor {
        seq: 10,
        hash: head.hash.clone(),
    };
    assert_eq!(
        source.check(&past).unwrap(),
        CursorCheck::PastHead { head: 3 }
    );
    let other = Cursor {
        seq: 2,
        hash: "00".repeat(32),
    };
    assert_eq!(source.check(&other).unwrap(), CursorCheck::Replaced);
}

#[test]
fn records_pruned_past_the_cursor_are_counted() {
    let (_dir, db) = store_with(3);
    // What retention does: the oldest records deleted.
    testing::attacker(&db)
        .execute("DELETE FROM records WHERE seq <= 5", [])
        .unwrap();
    let source = Source::open(&db, every_class()).unwrap();
    let cursor = Cursor {
        seq: 2,
        hash: String::new(),
    };
    let batch = source.read(&cursor, 100).unwrap();
    assert_eq!(batch.pruned, 3, "seqs 3, 4, 5 were never delivered");
    assert_eq!(batch.events.first().unwrap().seq, 6);
    let fresh = source.read(&Cursor::default(), 100).unwrap();
    assert_eq!(fresh.pruned, 0, "a new sink lost nothing");
}

struct Running {
    transport: Scripted,
    cursor_file: CursorFile,
    metrics: Arc<Metrics>,
    finish: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start(
    db: &std::path::Path,
    state: &std::path::Path,
    common: SinkCommonConfig,
    failures: u32,
) -> Running {
    let transport = Scripted::default();
    *transport.failures.lock().unwrap() = failures;
    let cursor_file = CursorFile::new(state, &common.name).unwrap();
    let metrics = Arc::new(Metrics::new(LiveReadings::zero()));
    let (finish, finishing) = watch::channel(false);
    let runner = Runner {
        name: common.name.clone(),
        db: db.to_owned(),
        common,
        transport: Box::new(transport.clone()),
        cursor_file: cursor_file.clone(),
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(runner.run(finishing));
    Running {
        transport,
        cursor_file,
        metrics,
        finish,
        task,
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_runner_retries_until_acknowledged_and_stores_the_cursor_after() {
    let (dir, db) = store_with(4);
    let running = start(
        &db,
        dir.path(),
        common(
            5,
            vec![SinkEventClass::Exchanges, SinkEventClass::Connections],
        ),
        2,
    );
    let transport = running.transport.clone();
    wait_for("every record", || transport.seqs().len() == 12).await;
    assert_eq!(
        transport.seqs(),
        (1..=12).collect::<Vec<_>>(),
        "in order, none twice"
    );
    let batches = transport.batches.lock().unwrap().clone();
    assert!(batches.iter().all(|b| b.len() <= 5), "{batches:?}");
    wait_for("the cursor", || {
        running
            .cursor_file
            .load()
            .unwrap()
            .is_some_and(|c| c.seq == 12)
    })
    .await;
    let metrics = running.metrics.clone();
    wait_for("a backlog of 0", || metrics.sinks.status()[0].backlog == 0).await;
    let text = running.metrics.encode().unwrap();
    assert!(
        text.contains("warden_sink_failures_total{sink=\"t\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("warden_sink_delivered_records_total{sink=\"t\"} 12"),
        "{text}"
    );
    assert!(
        text.contains("warden_sink_backlog_records{sink=\"t\"} 0"),
        "{text}"
    );
    let status = running.metrics.sinks.status();
    assert_eq!(status[0].last_error, None, "cleared once delivered");
    running.finish.send(true).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn a_restarted_runner_resumes_from_its_cursor_and_a_stale_one_starts_over() {
    let (dir, db) = store_with(2);
    let file = CursorFile::new(dir.path(), "t").unwrap();
    let source = Source::open(&db, every_class()).unwrap();
    let at_three = source.read(&Cursor::default(), 3).unwrap().last.unwrap();
    file.store(&at_three).unwrap();
    let every = vec![SinkEventClass::Exchanges, SinkEventClass::Connections];
    let running = start(&db, dir.path(), common(100, every.clone()), 0);
    let transport = running.transport.clone();
    wait_for("the rest", || transport.seqs().len() == 3).await;
    assert_eq!(transport.seqs(), vec![4, 5, 6]);
    running.finish.send(true).unwrap();
    running.task.await.unwrap();

    // A cursor past the head: the store was replaced; everything is shipped again.
    file.store(&Cursor {
        seq: 99,
        hash: String::new(),
    })
    .unwrap();
    let running = start(&db, dir.path(), common(100, every), 0);
    let transport = running.transport.clone();
    wait_for("the whole store", || transport.seqs().len() == 6).await;
    assert_eq!(transport.seqs(), (1..=6).collect::<Vec<_>>());
    running.finish.send(true).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn a_new_sink_starting_now_skips_history() {
    let (dir, db) = store_with(2);
    let mut config = common(100, vec![SinkEventClass::Exchanges]);
    config.start = SinkStart::Now;
    let running = start(&db, dir.path(), config, 0);
    wait_for("the cursor at the head", || {
        running
            .cursor_file
            .load()
            .unwrap()
            .is_some_and(|c| c.seq == 6)
    })
    .await;
    running.finish.send(true).unwrap();
    running.task.await.unwrap();
    assert!(running.transport.seqs().is_empty());
}

#[test]
fn a_secret_others_can_read_refuses_the_sink_without_showing_the_secret() {
    use std::os::unix::fs::PermissionsExt;

    use crate::config::sinks::{SinkConfig, SinkKindConfig, WebhookFormat, WebhookSinkConfig};

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook.key");
    std::fs::write(&secret, "very-secret-value\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sink = SinkConfig {
        common: common(1, vec![SinkEventClass::Exchanges]),
        kind: SinkKindConfig::Webhook(WebhookSinkConfig {
            url: "https://siem.example/in".into(),
            format: WebhookFormat::Json,
            secret_file: Some(secret.clone()),
            ca_file: None,
            timeout_secs: 5,
        }),
    };
    let error = match super::transport_for(&sink) {
        Ok(_) => panic!("a secret readable by others must refuse the sink"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.starts_with("[[sink]] \"t\": secret_file: "),
        "{error}"
    );
    assert!(error.contains(&secret.display().to_string()), "{error}");
    assert!(!error.contains("very-secret-value"), "{error}");
}
