//! A fake OpenAI API over TLS (hyper 1 + tokio-rustls, ALPN h2 and http/1.1) with its own test CA,
//! listening on a loopback address, recording every request it gets.
//!
//! ```no_run
//! # use warden_tests::FakeUpstream;
//! let upstream = FakeUpstream::builder().reply("Hi there.").start();
//! ```

mod ca;
pub mod faults;
mod gate;
pub mod openai;
mod service;

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::background::BackgroundRuntime;
use crate::{net, wait};

pub use ca::TestCa;
pub use faults::Fault;
pub use gate::GATE_SAFETY_TIMEOUT;

pub const DEFAULT_REPLY: &str = "Hello from the fake upstream, one word at a time.";
const DEFAULT_CHUNK_DELAY: Duration = Duration::from_millis(100);

/// What the upstream does with a connection once TLS is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Answer like the OpenAI API.
    Serve,
    /// Wait for the first request bytes, then reset the TCP connection (RST).
    ResetAfterHandshake,
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// `:authority` (HTTP/2) or `Host` (HTTP/1.1).
    pub authority: Option<String>,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl RecordedRequest {
    fn new(parts: &http::request::Parts, body: Bytes) -> Self {
        let authority = parts.uri.authority().map(|a| a.to_string()).or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
        Self {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "/".to_owned()),
            authority,
            version: parts.version,
            headers: parts.headers.clone(),
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (`Null` if it isn't).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub(crate) struct State {
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicUsize,
    reply: String,
    /// The deltas a stream sends; they join into `reply`.
    pieces: Vec<String>,
    chunk_delay: Duration,
    response_delay: Duration,
    behavior: Behavior,
    gate: Arc<gate::Gate>,
}

impl State {
    fn record(&self, request: RecordedRequest) {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(request);
    }
}

/// How to build a fake upstream. Defaults: a fresh loopback address, port 443, a leaf for
/// `api.openai.com`, [`DEFAULT_REPLY`], 100 ms between stream events, no delay before answering,
/// [`Behavior::Serve`].
#[derive(Debug, Clone)]
pub struct FakeUpstreamBuilder {
    names: Vec<String>,
    ip: Option<IpAddr>,
    port: u16,
    reply: String,
    /// Exact stream deltas; `None`: the reply word by word.
    stream_deltas: Option<Vec<String>>,
    chunk_delay: Duration,
    response_delay: Duration,
    behavior: Behavior,
    gate_after: Option<usize>,
}

impl FakeUpstreamBuilder {
    /// Also presents a certificate valid for `name`.
    pub fn name(mut self, name: &str) -> Self {
        self.names.push(name.to_owned());
        self
    }

    pub fn ip(mut self, ip: impl Into<IpAddr>) -> Self {
        let ip = ip.into();
        assert!(ip.is_loopback(), "a fake upstream only listens on loopback");
        self.ip = Some(ip);
        self
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The assistant text every endpoint answers with (streams send it word by word).
    pub fn reply(mut self, reply: &str) -> Self {
        self.reply = reply.to_owned();
        self.stream_deltas = None;
        self
    }

    /// The reply is these deltas joined, and streams send exactly these deltas (one event each),
    /// so a test chooses where the text is split.
    pub fn stream_deltas<S: Into<String>>(mut self, deltas: impl IntoIterator<Item = S>) -> Self {
        let deltas: Vec<String> = deltas.into_iter().map(Into::into).collect();
        self.reply = deltas.concat();
        self.stream_deltas = Some(deltas);
        self
    }

    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Waits this long after recording a request before answering it, so that requests are in
    /// flight for a while (the request is recorded as soon as its body has arrived).
    pub fn response_delay(mut self, delay: Duration) -> Self {
        self.response_delay = delay;
        self
    }

    /// Streams send their first `events` events, then hold the rest until
    /// [`FakeUpstream::open_gate`] (or [`GATE_SAFETY_TIMEOUT`]).
    pub fn gate_after(mut self, events: usize) -> Self {
        self.gate_after = Some(events);
        self
    }

    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }

    fn bind(&self) -> StdTcpListener {
        if let Some(ip) = self.ip {
            return StdTcpListener::bind((ip, self.port)).unwrap_or_else(|e| {
                panic!("binding the fake upstream on {ip}:{}: {e}", self.port)
            });
        }
        for _ in 0..64 {
            match StdTcpListener::bind((net::fresh_loopback(), self.port)) {
                Ok(listener) => return listener,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => panic!("binding the fake upstream on port {}: {e}", self.port),
            }
        }
        panic!("no free loopback address for the fake upstream");
    }

    pub fn start(self) -> FakeUpstream {
        let ca = Arc::new(TestCa::new("Warden test upstream CA"));
        let dir = tempfile::tempdir().expect("creating the fake upstream's tempdir");
        let ca_pem_path = dir.path().join("upstream-ca.pem");
        fs::write(&ca_pem_path, ca.pem()).expect("writing the test CA");

        let listener = self.bind();
        let addr = listener
            .local_addr()
            .expect("local_addr of a bound listener");
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            pieces: self
                .stream_deltas
                .unwrap_or_else(|| openai::reply_pieces(&self.reply)),
            reply: self.reply,
            chunk_delay: self.chunk_delay,
            response_delay: self.response_delay,
            behavior: self.behavior,
            gate: Arc::new(gate::Gate::new(self.gate_after)),
        });
        let acceptor = TlsAcceptor::from(ca.server_config(&self.names));
        let served = Arc::clone(&state);
        let runtime = BackgroundRuntime::serve("the fake upstream", listener, |listener| {
            serve(listener, acceptor, served)
        });
        FakeUpstream {
            addr,
            ca,
            ca_pem_path,
            state,
            _runtime: runtime,
            _dir: dir,
        }
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<State>) {
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::Relaxed);
        let acceptor = acceptor.clone();
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            match state.behavior {
                Behavior::Serve => {
                    let service = hyper::service::service_fn(move |request| {
                        service::handle(request, Arc::clone(&state))
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                }
                Behavior::ResetAfterHandshake => {
                    let mut tls = tls;
                    let mut first = [0u8; 1];
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), tls.read(&mut first)).await;
                    let (tcp, _) = tls.into_inner();
                    // Zero linger turns the close into an RST.
                    let _ = tcp.set_zero_linger();
                    drop(tcp);
                }
            }
        });
    }
}

/// A running fake upstream; stops when dropped.
pub struct FakeUpstream {
    addr: SocketAddr,
    ca: Arc<TestCa>,
    ca_pem_path: PathBuf,
    state: Arc<State>,
    _runtime: BackgroundRuntime,
    _dir: TempDir,
}

impl std::fmt::Debug for FakeUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeUpstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeUpstream {
    pub fn builder() -> FakeUpstreamBuilder {
        FakeUpstreamBuilder {
            names: vec!["api.openai.com".to_owned()],
            ip: None,
            port: 443,
            reply: DEFAULT_REPLY.to_owned(),
            stream_deltas: None,
            chunk_delay: DEFAULT_CHUNK_DELAY,
            response_delay: Duration::ZERO,
            behavior: Behavior::Serve,
            gate_after: None,
        }
    }

    /// A fake upstream with the defaults.
    pub fn start() -> Self {
        Self::builder().start()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The test CA certificate (PEM file): trust this and nothing else to reach it directly.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    pub fn reply(&self) -> &str {
        &self.state.reply
    }

    pub fn chunk_delay(&self) -> Duration {
        self.state.chunk_delay
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits until at least `n` requests arrived.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        wait::until(
            &format!("{n} request(s) at the fake upstream {}", self.addr),
            timeout,
            || {
                let requests = self.requests();
                (requests.len() >= n).then_some(requests)
            },
        )
    }

    /// The `Authorization` header of every request received so far, in order (`None`: absent);
    /// what the upstream was handed as the key.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.requests()
            .iter()
            .map(|r| r.header("authorization").map(str::to_owned))
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
