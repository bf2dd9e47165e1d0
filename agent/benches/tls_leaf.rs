//! Criterion benchmarks of the per-SNI leaf cache: minting a leaf for a new name, and a cache hit.
//!
//! Benchmarks, not tests: nothing here asserts on time. A CA or leaf that cannot be made, or a
//! cache that does not hand back the leaf it minted, aborts the run, hence the `expect`s and
//! `assert`s, checked once before measuring.
use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use warden::tls::{CertificateAuthority, LeafCache};

const SERVER_NAME: &str = "api.openai.com";

fn bench_leaf_cache(c: &mut Criterion) {
    let ca = Arc::new(CertificateAuthority::ephemeral().expect("an in-memory CA is generated"));

    // The cache is what it claims to be: a chain [leaf, CA], and the same leaf on a second ask.
    let cache = LeafCache::new(Arc::clone(&ca));
    let minted = cache.certified_key(SERVER_NAME).expect("a leaf is minted");
    assert_eq!(minted.cert.len(), 2, "the chain is [leaf, CA]");
    assert_eq!(minted.cert[1], ca.cert_der(), "the chain ends with the CA");
    let hit = cache
        .certified_key(SERVER_NAME)
        .expect("the leaf is cached");
    assert!(Arc::ptr_eq(&minted, &hit), "a second ask is a cache hit");

    let mut group = c.benchmark_group("tls_leaf");
    // A miss: a fresh (empty) cache per iteration, made untimed, so every ask mints (key
    // generation, signing, DER parsing) and inserts, and no eviction is ever measured.
    group.bench_function("mint_miss", |b| {
        b.iter_batched(
            || LeafCache::new(Arc::clone(&ca)),
            |cache| {
                let key = cache.certified_key(black_box(SERVER_NAME));
                // Returned so the cache and key are dropped outside the measurement.
                (cache, key)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("cache_hit", |b| {
        b.iter(|| cache.certified_key(black_box(SERVER_NAME)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short enough that all the micro-benchmarks together run in well under a minute on two
    // cores; the confidence intervals stay within about 1%.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench_leaf_cache
}
criterion_main!(benches);
