//! Criterion benchmarks of the audit store: recording throughput and `sessions list` over 1M exchanges.
//!
//! Benchmarks, not tests: nothing here asserts on time. A failing store call aborts the run, hence
//! the `expect`s. Under `cargo test --benches` (criterion's test mode) the list benches use a small
//! store instead of building the million-exchange one.
use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use warden::{
    audit::{
        audit_db_path, schema::SCHEMA_VERSION, AuditReader, AuditRecord, AuditWriter,
        ConnectionRecord, Disposition, ExchangeFilter, Outcome, WriterOptions,
    },
    identity::selector::IdentitySelector,
};

// In a subdirectory so cargo does not take it for a bench target of its own.
#[path = "audit/synthetic.rs"]
mod synthetic;

use synthetic::{
    identity, request, response, synthetic_shape, Payload, MICROS_PER_DAY, STORE_END_US,
};

/// Bump when the synthetic data changes, so a cached list store is rebuilt.
const GENERATOR_VERSION: u32 = 1;
/// `warden sessions list`'s default `--limit`.
const CLI_LIMIT: Option<usize> = Some(50);

// ---- audit/commit_exchange_records -------------------------------------------------------------

const CONCURRENT_TASKS: u64 = 64;
const EXCHANGES_PER_TASK: u64 = 16;
const EXCHANGES_PER_BURST: u64 = CONCURRENT_TASKS * EXCHANGES_PER_TASK;

/// Records exchanges the way the proxy does: the request put on durable record (awaited), then
/// the response submitted (fire-and-forget).
#[derive(Clone)]
struct Recorder {
    writer: AuditWriter,
    payload: Arc<Payload>,
    next: Arc<AtomicU64>,
    /// The proxy's way (`record_request`: the journal), or each request's commit awaited.
    journaled: bool,
}

impl Recorder {
    async fn record_exchanges(self, count: u64) {
        for _ in 0..count {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let shape = synthetic_shape(n % 1_000_000, 1_000_000);
            match request(&shape, &self.payload) {
                AuditRecord::Request(request) if self.journaled => self
                    .writer
                    .record_request(request)
                    .await
                    .expect("journal request record"),
                request => drop(
                    self.writer
                        .commit(request)
                        .await
                        .expect("commit request record"),
                ),
            }
            self.writer
                .submit(response(&shape, Outcome::Ok, &self.payload));
        }
    }

    /// `CONCURRENT_TASKS` tasks each record `EXCHANGES_PER_TASK` exchanges; returns once every
    /// record, responses included, has committed.
    async fn record_burst(&self) {
        let tasks: Vec<_> = (0..CONCURRENT_TASKS)
            .map(|_| tokio::spawn(self.clone().record_exchanges(EXCHANGES_PER_TASK)))
            .collect();
        for task in tasks {
            task.await.expect("recording task");
        }
        // The writer appends in queue order, so once this commits the submitted responses
        // queued before it have committed too.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.writer
            .commit(AuditRecord::Connection(barrier_connection(n)))
            .await
            .expect("commit barrier record");
    }
}

fn barrier_connection(n: u64) -> ConnectionRecord {
    ConnectionRecord {
        id: format!("conn-barrier-{n:06x}"),
        identity: identity(1999, None, "bench.service", "ci"),
        original_dst: "192.0.2.10:443".into(),
        server_name: Some("api.openai.com".into()),
        disposition: Disposition::Intercepted,
        reason: None,
        bytes_from_client: 0,
        bytes_to_client: 0,
        started_at_us: STORE_END_US,
        ended_at_us: STORE_END_US,
    }
}

fn bench_commit_exchange_records(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("audit");
    // One element = one exchange: its request record and response record, both committed.
    group.throughput(Throughput::Elements(EXCHANGES_PER_BURST));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, journaled) in [
        ("commit_exchange_records", false),
        ("journal_exchange_records", true),
    ] {
        let dir = tempfile::Builder::new()
            .prefix("audit-bench-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir under target/tmp");
        let writer = AuditWriter::start(&audit_db_path(dir.path()), WriterOptions::default())
            .expect("start writer");
        let recorder = Recorder {
            writer: writer.clone(),
            payload: Arc::new(Payload::realistic()),
            next: Arc::new(AtomicU64::new(0)),
            journaled,
        };
        group.bench_function(name, |b| {
            b.iter_custom(|bursts| {
                let started = Instant::now();
                for _ in 0..bursts {
                    runtime.block_on(recorder.record_burst());
                }
                started.elapsed()
            })
        });
        let stats = writer.stats();
        if stats.transactions > 0 {
            eprintln!(
                "audit/{name}: writer committed {} records in {} transactions ({:.1} records per \
                 transaction, {} failed)",
                stats.records,
                stats.transactions,
                stats.records as f64 / stats.transactions as f64,
                stats.failed_transactions,
            );
        }
        writer.shutdown();
    }
    group.finish();
}

// ---- audit/list_1m ------------------------------------------------------------------------------

const LIST_STORE_EXCHANGES: u64 = 1_000_000;
/// Criterion's test mode (`cargo test --benches`) runs each bench once: a small store will do.
const SMOKE_STORE_EXCHANGES: u64 = 2_000;
/// Exchanges queued before waiting for the writer, which bounds the build's memory.
const BUILD_CHUNK: u64 = 20_000;

/// Whether criterion measures (`cargo bench`) rather than runs each bench once as a test; the
/// same rule criterion applies to its arguments.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// The list store, built once and cached under target/bench-data: a stamp file names the schema
/// and generator versions it was built with, and any mismatch rebuilds it.
fn cached_list_store(name: &str, exchanges: u64) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory");
    let dir = target.join("bench-data");
    let db = dir.join(format!("{name}.db"));
    let stamp_path = dir.join(format!("{name}.stamp"));
    let stamp =
        format!("schema {SCHEMA_VERSION}, generator {GENERATOR_VERSION}, {exchanges} exchanges\n");
    if db.is_file() && fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        return db;
    }
    for stale in [
        &stamp_path,
        &db,
        &dir.join(format!("{name}.db-wal")),
        &dir.join(format!("{name}.db-shm")),
    ] {
        match fs::remove_file(stale) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                panic!("remove {}: {err}", stale.display())
            }
            _ => {}
        }
    }
    build_list_store(&db, exchanges);
    fs::write(&stamp_path, stamp).expect("write the list store's stamp");
    db
}

/// Fills the store through the real writer, `submit` in a loop.
fn build_list_store(db: &Path, exchanges: u64) {
    eprintln!(
        "audit/list_1m: building {exchanges} exchanges in {}",
        db.display()
    );
    let started = Instant::now();
    let payload = Payload::compact();
    let writer = AuditWriter::start(db, WriterOptions::default()).expect("start writer");
    for n in 0..exchanges {
        let shape = synthetic_shape(n, exchanges);
        let request = request(&shape, &payload);
        if (n + 1) % BUILD_CHUNK == 0 {
            // submit never waits: committing one request per chunk keeps the queue bounded.
            writer.commit_blocking(request).expect("commit request");
        } else {
            writer.submit(request);
        }
        if let Some(outcome) = shape.outcome {
            writer.submit(response(&shape, outcome, &payload));
        }
    }
    writer.shutdown();
    let stats = writer.stats();
    eprintln!(
        "audit/list_1m: built in {:.0?} ({} records, {:.0} records/s, {} failed transactions)",
        started.elapsed(),
        stats.records,
        stats.records as f64 / started.elapsed().as_secs_f64(),
        stats.failed_transactions,
    );
}

fn selector(text: &str) -> Option<IdentitySelector> {
    Some(IdentitySelector::parse(text).expect("valid selector"))
}

/// Each case as `warden sessions list` would pass it (with its default `--limit 50`).
fn list_cases() -> Vec<(&'static str, ExchangeFilter)> {
    let since_days = |days: i64| Some(STORE_END_US - days * MICROS_PER_DAY);
    let with_limit = |filter: ExchangeFilter| ExchangeFilter {
        limit: CLI_LIMIT,
        ..filter
    };
    vec![
        ("no_filter", with_limit(ExchangeFilter::default())),
        (
            "since_1d",
            with_limit(ExchangeFilter {
                since_us: since_days(1),
                ..Default::default()
            }),
        ),
        (
            "identity_account_billing",
            with_limit(ExchangeFilter {
                identity: selector("account:billing-*"),
                ..Default::default()
            }),
        ),
        (
            "model_gpt_4_1",
            with_limit(ExchangeFilter {
                model: Some("gpt-4.1*".into()),
                ..Default::default()
            }),
        ),
        (
            "combined_since_7d_billing_gpt_4_1",
            with_limit(ExchangeFilter {
                since_us: since_days(7),
                identity: selector("account:billing-*"),
                model: Some("gpt-4.1*".into()),
                ..Default::default()
            }),
        ),
        (
            "rare_legal_review_o3_timeout",
            with_limit(ExchangeFilter {
                identity: selector("account:legal-review"),
                model: Some("o3".into()),
                outcome: Some("timeout".into()),
                ..Default::default()
            }),
        ),
    ]
}

fn list_once(db: &Path, filter: &ExchangeFilter) -> usize {
    let reader = AuditReader::open(db).expect("open the list store");
    reader.list(filter).expect("list").len()
}

fn bench_list_1m(c: &mut Criterion) {
    let cache = OnceLock::new();
    // Built on first use, so filtering the run down to the commit bench never builds it.
    let store = || {
        cache.get_or_init(|| {
            if measuring() {
                cached_list_store("audit-1m", LIST_STORE_EXCHANGES)
            } else {
                cached_list_store("audit-smoke", SMOKE_STORE_EXCHANGES)
            }
        })
    };
    let mut group = c.benchmark_group("audit/list_1m");
    for (name, filter) in list_cases() {
        let mut reported = false;
        group.bench_function(name, |b| {
            let db = store();
            if !reported {
                eprintln!("audit/list_1m/{name}: {} rows", list_once(db, &filter));
                reported = true;
            }
            // A CLI run: open the store read-only, then list.
            b.iter(|| list_once(db, &filter))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_commit_exchange_records, bench_list_1m);
criterion_main!(benches);
