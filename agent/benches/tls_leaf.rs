//! Criterion benchmarks of interception's TLS: minting a leaf, a cache hit, and a full handshake.
//!
//! Benchmarks, not tests: nothing here asserts on time. A CA or leaf that cannot be made, or a
//! cache that does not hand back the leaf it minted, aborts the run, hence the `expect`s and
//! `assert`s, checked once before measuring.
use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};
use rustls_pki_types::ServerName;
use warden::tls::{crypto_provider, server_config, CertificateAuthority, LeafCache};

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
    handshake(&mut group, &ca);
    group.finish();
}

/// A full TLS 1.3 handshake (no resumption, as a new client process makes) with Warden's server
/// config and a cached leaf, in memory. `handshake_server_side` counts only the time spent in
/// the server's calls: what an intercepted new connection costs Warden on top of the TCP accept.
fn handshake(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    ca: &Arc<CertificateAuthority>,
) {
    let server = server_config(Arc::new(LeafCache::new(Arc::clone(ca))));
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der()).expect("the CA is a valid root");
    let mut client = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = rustls::client::Resumption::disabled();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = Arc::new(client);
    let name = ServerName::try_from(SERVER_NAME).expect("a valid server name");
    let complete = || {
        let mut client =
            ClientConnection::new(Arc::clone(&client), name.clone()).expect("a client connection");
        let mut server = ServerConnection::new(Arc::clone(&server)).expect("a server connection");
        let mut server_time = Duration::ZERO;
        let mut wire = Vec::new();
        while client.is_handshaking() || server.is_handshaking() {
            wire.clear();
            while client.wants_write() {
                client.write_tls(&mut wire).expect("client writes");
            }
            let started = Instant::now();
            if !wire.is_empty() {
                server.read_tls(&mut wire.as_slice()).expect("server reads");
                server
                    .process_new_packets()
                    .expect("the server accepts the client");
            }
            wire.clear();
            while server.wants_write() {
                server.write_tls(&mut wire).expect("server writes");
            }
            server_time += started.elapsed();
            if !wire.is_empty() {
                client.read_tls(&mut wire.as_slice()).expect("client reads");
                client
                    .process_new_packets()
                    .expect("the client accepts the server");
            }
        }
        assert_eq!(
            server.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3),
            "a TLS 1.3 handshake"
        );
        server_time
    };
    group.bench_function("handshake_both_sides", |b| b.iter(complete));
    group.bench_function("handshake_server_side", |b| {
        b.iter_custom(|iterations| (0..iterations).map(|_| complete()).sum())
    });
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
