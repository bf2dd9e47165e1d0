//! Criterion benchmark of the request path: an allowed 1 KiB chat request through every stage
//! (intake, decide with the 10-rule bench policy, record, guard, approve, credential, forward,
//! respond) to a local TLS upstream, in-process, over one kept-alive HTTP/1.1 connection.
//!
//! Two cases: without custody, and with a `[[credential]]` serving the caller (the presented key
//! replaced by the custodied one on every request; run as root, which owns the secret file).
//!
//! What it leaves out, by design: the eBPF redirect, the client-side TLS termination and the
//! identity lookup (connection-level work, `cargo xtask bench` measures them). What it keeps: the
//! audit commit before forwarding, the upstream hop and the response's logging and recording.
//!
//! Benchmarks, not tests: nothing here asserts on time. A request that is not answered 200 with the
//! upstream's body aborts the run, checked once before measuring.
use std::{
    convert::Infallible, net::SocketAddr, os::unix::fs::PermissionsExt, path::Path, sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, client::conn::http1::SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpListener, runtime::Runtime};
use warden::{
    audit::AuditWriter,
    config::Config,
    credentials::CredentialStore,
    ebpf::origin::ConnectionOrigin,
    identity::IdentityResolver,
    metrics::{LiveReadings, Metrics},
    policy::active::{AbsentDir, ActivePolicy},
    proxy::{handle_request, upstream::Upstream, ConnectionInfo, ProxyContext},
    revocation::Revocations,
    tls::{server_config, CertificateAuthority, LeafCache},
};

const POLICY: &str = include_str!("../../bench/policy.toml");
const HOST: &str = "api.openai.com";
/// What the agent presents, and what Warden injects with custody.
const PRESENTED: &str = "Bearer sk-bench-placeholder";
const CUSTODIED_KEY: &str = "sk-bench-custodied-key-0123456789";
const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"gpt-4.1-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The reconciliation found two invoices that disagree with their purchase orders."},"finish_reason":"stop"}],"usage":{"prompt_tokens":250,"completion_tokens":14,"total_tokens":264}}"#;

/// A 1 KiB chat request without anything the policy's recognizers take.
fn chat_request() -> Bytes {
    let filler = "The quarterly reconciliation compares invoices against the ledger and flags any \
        line whose amount disagrees with the purchase order. ";
    let prompt = filler.repeat(1024 / filler.len() + 1);
    let body = serde_json::json!({
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": &prompt[..1000]}],
    });
    Bytes::from(serde_json::to_vec(&body).expect("the request serializes"))
}

/// The fake upstream: TLS with a leaf from its own CA, one canned completion for every request.
async fn start_upstream(ca: Arc<CertificateAuthority>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("upstream binds");
    let address = listener.local_addr().expect("upstream address");
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(Arc::new(LeafCache::new(ca))));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // Which key arrived, so the bench can check custody replaced the agent's.
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    let key = request
                        .headers()
                        .get("authorization")
                        .cloned()
                        .unwrap_or(http::HeaderValue::from_static(""));
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .header("x-bench-received-authorization", key)
                            .body(Full::new(Bytes::from_static(COMPLETION.as_bytes())))
                            .expect("a static response"),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    address
}

/// Warden's request-path state, as `warden run` builds it, minus the kernel side.
fn context(
    dir: &Path,
    upstream: SocketAddr,
    ca: &CertificateAuthority,
    custody: bool,
) -> Arc<ProxyContext> {
    let ca_file = dir.join("upstream-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("the upstream CA is written");
    let policy_dir = dir.join("policy");
    std::fs::create_dir_all(&policy_dir).expect("the policy dir is created");
    std::fs::write(policy_dir.join("bench.toml"), POLICY).expect("the policy is written");
    let mut config_text = format!(
        "state_dir = {state:?}\n[policy]\ndir = {policy:?}\n\
         [[upstream.override]]\nhost = {HOST:?}\naddress = \"{upstream}\"\nca_file = {ca_file:?}\n",
        state = dir.join("state"),
        policy = policy_dir,
    );
    if custody {
        let secret = dir.join("openai-key");
        std::fs::write(&secret, format!("{CUSTODIED_KEY}\n")).expect("the key is written");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
            .expect("the key is made private");
        config_text.push_str(&format!(
            "[[credential]]\nname = \"bench\"\nsecret_file = {secret:?}\nidentity = [\"uid:0\"]\n"
        ));
    }
    let config = Arc::new(
        Config::from_toml(&config_text, Path::new("bench.toml")).expect("the config is valid"),
    );
    let audit = AuditWriter::start(&dir.join("state/audit.db"), config.audit.writer_options())
        .expect("the audit store opens");
    let policy = ActivePolicy::load(&policy_dir, AbsentDir::Refuse).expect("the policy loads");
    let queue = audit.clone();
    let metrics = Metrics::new(LiveReadings {
        selected_cgroups: Box::new(|| 0),
        ebpf_redirects: Box::new(|| 0),
        audit_queue_depth: Box::new(move || queue.queue_depth()),
        audit_store_refusing: Box::new(|| 0),
        audit_write_failures: Box::new(Vec::new),
    });
    let metrics = Arc::new(metrics);
    let approvals = warden::approvals::Approvals::new(&config, audit.clone(), metrics.clone());
    let own_ca = Arc::new(CertificateAuthority::ephemeral().expect("Warden's CA"));
    let credentials = Arc::new(
        CredentialStore::load(&config.credential_entries, config.credentials.presented)
            .expect("the credential loads (run as root: the key file must be root's)"),
    );
    Arc::new(ProxyContext {
        tls_server: server_config(Arc::new(LeafCache::new(own_ca))),
        upstream: Upstream::new(&config).expect("the upstream client is built"),
        identities: IdentityResolver::new(Vec::new(), None),
        config,
        audit,
        policy: Arc::new(policy),
        counters: Default::default(),
        metrics,
        credentials,
        approvals,
        revocations: Arc::new(Revocations::load(&dir.join("state")).expect("no revocations")),
        limits: Arc::new(
            warden::identity_limits::Limits::load(
                &dir.join("state"),
                warden::identity_limits::prices::PriceTable::shipped(),
                4096,
            )
            .expect("no ledger yet"),
        ),
        body_budget: warden::proxy::body_budget::BodyBudget::new(
            u64::MAX,
            Default::default(),
            Default::default(),
        ),
        learned: Default::default(),
        anomaly: warden::anomaly::AnomalyFeed::disabled(),
    })
}

/// One intercepted connection's request handler, served over an in-memory pipe; returns the
/// client end.
async fn connect(context: Arc<ProxyContext>) -> SendRequest<Full<Bytes>> {
    // A pid that cannot exist: the identity is the kernel's capture alone, as for an exited process.
    let origin = ConnectionOrigin {
        original_dst: SocketAddr::from(([127, 0, 0, 1], 443)),
        tgid: u32::MAX,
        uid: 0,
        gid: 0,
        cgroup_id: 1,
        comm: "agent".to_string(),
    };
    let info = Arc::new(ConnectionInfo {
        identity: context.identities.resolve(&origin),
        context,
        server_name: HOST.to_string(),
        destination_port: 443,
        connection_id: "bench-connection".to_string(),
    });
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let service = hyper::service::service_fn(move |request| handle_request(info.clone(), request));
    tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server_io), service),
    );
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
        .await
        .expect("the client handshake");
    tokio::spawn(connection);
    sender
}

/// One exchange: the answer's body, and the authorization the upstream received.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    body: &Bytes,
) -> (Bytes, Option<http::HeaderValue>) {
    let request = Request::post(format!("https://{HOST}/v1/chat/completions"))
        .header("host", HOST)
        .header("content-type", "application/json")
        .header("authorization", PRESENTED)
        .body(Full::new(body.clone()))
        .expect("a valid request");
    sender.ready().await.expect("the connection is open");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.status(), 200, "the bench request is allowed");
    let received = response
        .headers()
        .get("x-bench-received-authorization")
        .cloned();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body arrives")
        .to_bytes();
    (body, received)
}

fn bench_request_path(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let upstream_ca = Arc::new(CertificateAuthority::ephemeral().expect("the upstream's CA"));
    let upstream = runtime.block_on(start_upstream(upstream_ca.clone()));
    let body = chat_request();

    let mut group = c.benchmark_group("request_path");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    for (name, custody) in [
        ("allowed_chat_1kib", false),
        ("allowed_chat_1kib_custody", true),
    ] {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut sender = runtime.block_on(async {
            let context = context(dir.path(), upstream, &upstream_ca, custody);
            let mut sender = connect(context).await;
            let (answer, received) = exchange(&mut sender, &body).await;
            assert_eq!(
                answer,
                COMPLETION.as_bytes(),
                "the upstream's body comes back"
            );
            let expected = match custody {
                true => format!("Bearer {CUSTODIED_KEY}"),
                false => PRESENTED.to_string(),
            };
            assert_eq!(
                received.as_ref().and_then(|v| v.to_str().ok()),
                Some(expected.as_str()),
                "the upstream gets the custodied key with custody, the presented one without"
            );
            sender
        });
        group.bench_function(name, |b| {
            b.iter(|| runtime.block_on(exchange(&mut sender, &body)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_request_path);
criterion_main!(benches);
