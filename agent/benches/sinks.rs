//! Criterion benchmarks of the sinks: how many records per second a sink ships from a 200k-record
//! store (to a JSONL file, and as signed webhook batches to a local hyper server), and the audit
//! writer's append throughput with and without a sink following the store meanwhile.
//!
//! Benchmarks, not tests: nothing here asserts on time; a failing call aborts the run. Under
//! `cargo test --benches` a small store is used.
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use warden::{
    audit::{audit_db_path, AuditWriter, Outcome, WriterOptions},
    config::{
        sinks::{
            FileSinkConfig, SinkCommonConfig, SinkConfig, SinkEventClass, SinkKindConfig,
            SinkStart, WebhookFormat, WebhookSinkConfig,
        },
        Config,
    },
    metrics::{LiveReadings, Metrics},
    sinks::Sinks,
};
use warden_tests::sinks::AcknowledgingReceiver;

#[path = "audit/synthetic.rs"]
#[allow(dead_code)] // shared with the audit bench, which uses all of it
mod synthetic;

use synthetic::{request, response, synthetic_shape, Payload};

/// Exchanges in the store: a request and a response record each.
const STORE_EXCHANGES: u64 = 100_000;
const SMOKE_EXCHANGES: u64 = 1_000;

fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A store of `exchanges` exchanges written by the real writer; returns its records count.
fn build_store(db: &Path, exchanges: u64) -> u64 {
    let payload = Payload::realistic();
    let writer = AuditWriter::start(db, WriterOptions::default()).expect("start writer");
    for n in 0..exchanges {
        let shape = synthetic_shape(n, exchanges);
        let record = request(&shape, &payload);
        if (n + 1) % 10_000 == 0 {
            writer.commit_blocking(record).expect("commit");
        } else {
            writer.submit(record);
        }
        writer.submit(response(
            &shape,
            shape.outcome.unwrap_or(Outcome::Ok),
            &payload,
        ));
    }
    writer.shutdown();
    writer.stats().records
}

fn common(name: &str) -> SinkCommonConfig {
    SinkCommonConfig {
        name: name.into(),
        events: vec![SinkEventClass::Exchanges],
        include_bodies: false,
        batch_max: 500,
        flush_interval_ms: 10,
        retry_max_backoff_secs: 1,
        start: SinkStart::Beginning,
    }
}

/// Runs the sinks of `config` over the store until `records` events were delivered; the time taken.
fn drain(runtime: &tokio::runtime::Runtime, config: &Config, db: &Path, records: u64) -> Duration {
    let metrics = Arc::new(Metrics::new(LiveReadings::zero()));
    runtime.block_on(async {
        let started = Instant::now();
        let sinks = Sinks::start(config, db, metrics.clone()).expect("start sinks");
        loop {
            let status = metrics.sinks.status();
            if status.iter().all(|s| s.delivered >= records) && !status.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = started.elapsed();
        sinks.finish(Duration::from_secs(10)).await;
        took
    })
}

fn fresh_state(base: &Path, n: u64) -> PathBuf {
    let dir = base.join(format!("state-{n}"));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// A sink kind's config, given the state directory of one run.
type KindFor<'a> = Box<dyn Fn(&Path) -> SinkKindConfig + 'a>;

fn bench_sink_throughput(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("sinks-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir under target/tmp");
    let exchanges = if measuring() {
        STORE_EXCHANGES
    } else {
        SMOKE_EXCHANGES
    };
    let db = audit_db_path(&dir.path().join("store"));
    let built = Instant::now();
    let records = build_store(&db, exchanges);
    eprintln!(
        "sinks: store of {records} records built in {:.1?}",
        built.elapsed()
    );
    let runtime = runtime();
    let secret = dir.path().join("webhook.key");
    fs::write(&secret, "bench-secret\n").expect("write the secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let receiver = AcknowledgingReceiver::start();
    let url = receiver.url().to_owned();

    let mut group = c.benchmark_group("sinks");
    group.throughput(Throughput::Elements(records));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    let mut run = 0;
    let out = dir.path().join("out");
    let kinds: [(&str, KindFor); 2] = [
        (
            "file",
            Box::new(|state: &Path| {
                SinkKindConfig::File(FileSinkConfig {
                    path: state.join("audit.jsonl"),
                    max_bytes: 0,
                    keep: 0,
                })
            }),
        ),
        (
            "webhook",
            Box::new(|_: &Path| {
                SinkKindConfig::Webhook(WebhookSinkConfig {
                    url: url.clone(),
                    format: WebhookFormat::Json,
                    secret_file: Some(secret.clone()),
                    ca_file: None,
                    timeout_secs: 10,
                })
            }),
        ),
    ];
    for (name, kind) in &kinds {
        group.bench_function(format!("ship_{name}"), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    run += 1;
                    let state = fresh_state(&out, run);
                    fs::create_dir_all(&state).expect("state dir");
                    let config = Config {
                        state_dir: state.clone(),
                        sinks: vec![SinkConfig {
                            common: common(name),
                            kind: kind(&state),
                        }],
                        ..Config::default()
                    };
                    total += drain(&runtime, &config, &db, records);
                    let _ = fs::remove_dir_all(&state);
                }
                total
            })
        });
    }
    group.finish();
    eprintln!(
        "sinks: the webhook receiver read {} MiB in all",
        receiver.bytes_received() / (1024 * 1024)
    );
}

/// Exchanges appended per measured burst (request and response each), from 64 tasks.
const BURST_TASKS: u64 = 64;
const BURST_EXCHANGES_PER_TASK: u64 = 16;

fn bench_append_with_a_sink(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("sinks-append-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir under target/tmp");
    let runtime = runtime();
    let payload = Arc::new(Payload::realistic());
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("sinks");
    group.throughput(Throughput::Elements(BURST_TASKS * BURST_EXCHANGES_PER_TASK));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for with_sink in [false, true] {
        let state = dir.path().join(format!("with-sink-{with_sink}"));
        let db = audit_db_path(&state);
        let writer = AuditWriter::start(&db, WriterOptions::default()).expect("start writer");
        let metrics = Arc::new(Metrics::new(LiveReadings::zero()));
        let sinks = with_sink.then(|| {
            let config = Config {
                state_dir: state.clone(),
                sinks: vec![SinkConfig {
                    common: common("follower"),
                    kind: SinkKindConfig::File(FileSinkConfig {
                        path: state.join("audit.jsonl"),
                        max_bytes: 0,
                        keep: 0,
                    }),
                }],
                ..Config::default()
            };
            let _entered = runtime.enter();
            Sinks::start(&config, &db, metrics.clone()).expect("start sinks")
        });
        let name = if with_sink {
            "append_with_file_sink"
        } else {
            "append_without_sink"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|bursts| {
                let started = Instant::now();
                for _ in 0..bursts {
                    runtime.block_on(async {
                        let tasks: Vec<_> = (0..BURST_TASKS)
                            .map(|_| {
                                let (writer, payload, next) =
                                    (writer.clone(), payload.clone(), next.clone());
                                tokio::spawn(async move {
                                    for _ in 0..BURST_EXCHANGES_PER_TASK {
                                        let n = next.fetch_add(1, Ordering::Relaxed);
                                        let shape = synthetic_shape(n % 1_000_000, 1_000_000);
                                        writer
                                            .commit(request(&shape, &payload))
                                            .await
                                            .expect("commit");
                                        writer
                                            .commit(response(&shape, Outcome::Ok, &payload))
                                            .await
                                            .expect("commit");
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.expect("task");
                        }
                    });
                }
                started.elapsed()
            })
        });
        if let Some(sinks) = sinks {
            let shipped: u64 = metrics.sinks.status().iter().map(|s| s.delivered).sum();
            eprintln!(
                "sinks/append_with_file_sink: the sink shipped {shipped} of {} records meanwhile",
                writer.stats().records
            );
            runtime.block_on(sinks.finish(Duration::from_secs(30)));
        }
        writer.shutdown();
    }
    group.finish();
}

criterion_group!(benches, bench_sink_throughput, bench_append_with_a_sink);
criterion_main!(benches);
