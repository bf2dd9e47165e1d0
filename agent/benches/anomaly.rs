//! Criterion benchmarks of anomaly detection: learning the baselines from an audit store at start
//! (the reload cost), and judging one exchange (the per-exchange cost on the anomaly thread).
//!
//! Benchmarks, not tests: nothing here asserts on time. A failing store call aborts the run.
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warden::{
    anomaly::{load::learn_from_store, Detectors, ExchangeFacts},
    audit::AuditWriter,
    config::anomaly::AnomalyConfig,
};

// Shared with the audit bench, which uses the rest of it.
#[allow(dead_code)]
#[path = "audit/synthetic.rs"]
mod synthetic;

use synthetic::{request, response, synthetic_shape, Payload, STORE_END_US};

/// Exchanges in the store, spread over 30 days; the default 14-day window reads ~47% of them.
const EXCHANGES: u64 = 200_000;

fn build_store(db: &Path) {
    let writer = AuditWriter::start(db, Default::default()).expect("the bench store opens");
    let payload = Payload::compact();
    for n in 0..EXCHANGES {
        let shape = synthetic_shape(n, EXCHANGES);
        writer.submit(request(&shape, &payload));
        if let Some(outcome) = shape.outcome {
            writer.submit(response(&shape, outcome, &payload));
        }
    }
    writer.shutdown();
}

fn learn(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("audit.db");
    build_store(&db);
    let config = AnomalyConfig::default();
    let mut detectors = Detectors::new(config.clone());
    let learned = learn_from_store(&mut detectors, &db, config.baseline_days, STORE_END_US)
        .expect("the store is read");
    let mut group = c.benchmark_group("anomaly");
    group.sample_size(10);
    group.throughput(Throughput::Elements(learned.exchanges));
    group.bench_function(
        format!("learn_baseline_{}_exchanges", learned.exchanges),
        |b| {
            b.iter(|| {
                let mut detectors = Detectors::new(config.clone());
                learn_from_store(&mut detectors, &db, config.baseline_days, STORE_END_US)
                    .expect("the store is read")
            })
        },
    );
    group.finish();

    // One exchange judged against that baseline: every detector, the same hour (stats cached).
    let mut group = c.benchmark_group("anomaly");
    group.throughput(Throughput::Elements(1));
    let mut n = 0i64;
    group.bench_function("observe_one_exchange", |b| {
        b.iter(|| {
            n += 1;
            let facts = ExchangeFacts {
                exchange_id: "ex-bench".into(),
                started_us: STORE_END_US + n,
                model: Some("gpt-4.1".into()),
                tokens: 700,
                denied: n % 50 == 0,
                masked: u64::from(n % 20 == 0),
                presented_real_key: false,
            };
            detectors.observe("account:billing-agent", &facts, STORE_END_US + n)
        })
    });
    group.finish();
}

criterion_group!(benches, learn);
criterion_main!(benches);
