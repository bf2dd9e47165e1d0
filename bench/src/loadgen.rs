//! The load generator (`warden-bench loadgen`, a process of its own so that it can run in a selected
//! cgroup): hyper clients over h1 or h2, every request's latency in an HDR histogram.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{header, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use crate::payload;
use crate::stats::{LatencySummary, NANOS_HISTOGRAM_MAX};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    H1,
    H2,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::H1 => "h1",
            Protocol::H2 => "h2",
        }
    }
}

/// What one loadgen run does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadSpec {
    /// `host:port`, resolved once before the first connection.
    pub connect: String,
    /// The TLS server name and HTTP authority: `api.openai.com`.
    pub server_name: String,
    /// The CA the client trusts (the upstream's, Warden's or mitmproxy's).
    pub ca_file: PathBuf,
    pub protocol: Protocol,
    /// Requests in flight at once. Over h1 one connection each; over h2 all share one connection.
    pub concurrency: usize,
    /// Streamed (`stream: true`) or not.
    pub stream: bool,
    /// A new TCP connection and a full TLS handshake (no resumption) for every request.
    pub new_connection_per_request: bool,
    pub warmup_secs: f64,
    pub measure_secs: f64,
}

/// What one loadgen run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    /// Requests answered 200 in full during the measured window.
    pub measured_ok: u64,
    pub measured_secs: f64,
    pub throughput_rps: f64,
    /// Request sent → last body byte.
    pub latency: LatencySummary,
    /// Request sent → first body byte, for streamed requests.
    pub first_event: Option<LatencySummary>,
    /// Every request answered 200 in full, warm-up included: what the audit store must hold.
    pub total_ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// The line `open_streams` prints once every stream has delivered its first event.
pub const STREAMS_OPEN_MARKER: &str = "streams-open";

/// Runs `spec` and returns what it measured.
pub fn run(spec: LoadSpec) -> Result<LoadResult> {
    raise_fd_limit();
    let runtime = runtime(spec.concurrency)?;
    runtime.block_on(async move {
        let target = Arc::new(Target::new(&spec).await?);
        let window = Window::after_warmup(&spec);
        let shared_h2 = if spec.protocol == Protocol::H2 && !spec.new_connection_per_request {
            Some(target.connect().await?)
        } else {
            None
        };
        let mut workers = Vec::with_capacity(spec.concurrency);
        for _ in 0..spec.concurrency {
            let target = Arc::clone(&target);
            let sender = shared_h2.as_ref().and_then(Sender::share);
            let fresh = spec.new_connection_per_request;
            workers.push(tokio::spawn(worker(target, sender, window, fresh)));
        }
        let mut tally = Tally::new();
        for worker in workers {
            tally.merge(worker.await.context("a load worker panicked")?);
        }
        Ok(tally.into_result(&spec, window))
    })
}

/// Opens `spec.concurrency` streamed requests, each on a connection of its own, waits until every
/// one has delivered its first event, prints [`STREAMS_OPEN_MARKER`], then reads them all to the end.
pub fn open_streams(spec: LoadSpec) -> Result<LoadResult> {
    raise_fd_limit();
    let runtime = runtime(spec.concurrency)?;
    runtime.block_on(async move {
        let target = Arc::new(Target::new(&spec).await?);
        // Each stream reports once: Ok when its first event arrived, Err if it failed before.
        let (first_events, mut reports) = tokio::sync::mpsc::unbounded_channel::<Result<()>>();
        // Handshakes a few at a time, as a pool warming up would; the streams then stay open together.
        let connecting = Arc::new(Semaphore::new(32));
        let started = Instant::now();
        let mut streams = Vec::with_capacity(spec.concurrency);
        for _ in 0..spec.concurrency {
            let (target, connecting) = (Arc::clone(&target), Arc::clone(&connecting));
            let first_events = first_events.clone();
            streams.push(tokio::spawn(async move {
                let opened = async {
                    let permit = connecting.acquire_owned().await;
                    let mut sender = target.connect().await?;
                    drop(permit);
                    let response = sender.send(target.request()).await?;
                    if response.status() != http::StatusCode::OK {
                        bail!("HTTP {}", response.status());
                    }
                    let mut body = response.into_body();
                    while let Some(frame) = body.frame().await {
                        if frame?.data_ref().is_some_and(|d| !d.is_empty()) {
                            return Ok(body);
                        }
                    }
                    bail!("the stream ended before its first event")
                };
                let sent = Instant::now();
                let mut body = match opened.await {
                    Ok(body) => {
                        let _ = first_events.send(Ok(()));
                        body
                    }
                    Err(err) => {
                        let message = format!("{err:#}");
                        let _ = first_events.send(Err(err));
                        bail!(message)
                    }
                };
                while let Some(frame) = body.frame().await {
                    frame?;
                }
                anyhow::Ok(sent.elapsed())
            }));
        }
        drop(first_events);
        let deadline = tokio::time::sleep(Duration::from_secs(120));
        tokio::pin!(deadline);
        for opened in 0..spec.concurrency {
            tokio::select! {
                report = reports.recv() => match report {
                    Some(Ok(())) => {}
                    Some(Err(err)) => return Err(err.context(format!("after {opened} streams opened"))),
                    None => bail!("the streams' tasks ended early"),
                },
                _ = &mut deadline => bail!("only {opened} of {} streams opened within 120 s", spec.concurrency),
            }
        }
        println!("{STREAMS_OPEN_MARKER} {}", spec.concurrency);
        let mut tally = Tally::new();
        for stream in streams {
            match stream.await.context("a stream task panicked")? {
                Ok(latency) => tally.record_ok(latency, None, true),
                Err(err) => tally.record_error(&err),
            }
        }
        let window = Window {
            measure_from: started,
            end: Instant::now(),
        };
        Ok(tally.into_result(&spec, window))
    })
}

pub(crate) fn runtime(concurrency: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = if concurrency == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    };
    builder
        .enable_all()
        .build()
        .context("starting the loadgen runtime")
}

/// 1,000 streams need more than the default 1,024 descriptors on some machines.
pub(crate) fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The measured window: requests that start before `measure_from` warm up and are not recorded.
#[derive(Debug, Clone, Copy)]
struct Window {
    measure_from: Instant,
    end: Instant,
}

impl Window {
    fn after_warmup(spec: &LoadSpec) -> Self {
        let measure_from = Instant::now() + Duration::from_secs_f64(spec.warmup_secs);
        Self {
            measure_from,
            end: measure_from + Duration::from_secs_f64(spec.measure_secs),
        }
    }
}

async fn worker(
    target: Arc<Target>,
    mut sender: Option<Sender>,
    window: Window,
    fresh_connections: bool,
) -> Tally {
    let mut tally = Tally::new();
    loop {
        let started = Instant::now();
        if started >= window.end {
            return tally;
        }
        if fresh_connections {
            sender = None;
        }
        let outcome = async {
            let active = match &mut sender {
                Some(active) => active,
                None => sender.insert(target.connect().await?),
            };
            let response = active.send(target.request()).await?;
            if response.status() != http::StatusCode::OK {
                bail!("HTTP {}", response.status());
            }
            let mut body = response.into_body();
            let mut first_byte = None;
            while let Some(frame) = body.frame().await {
                let frame = frame?;
                if first_byte.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                    first_byte = Some(started.elapsed());
                }
            }
            anyhow::Ok(first_byte)
        }
        .await;
        match outcome {
            Ok(first_byte) => tally.record_ok(
                started.elapsed(),
                first_byte,
                started >= window.measure_from,
            ),
            Err(err) => {
                tally.record_error(&err);
                sender = None;
            }
        }
    }
}

/// The address, TLS client and request every connection of a run shares.
pub(crate) struct Target {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    protocol: Protocol,
    uri: Uri,
    host: HeaderValue,
    body: Bytes,
}

impl Target {
    pub(crate) async fn new(spec: &LoadSpec) -> Result<Self> {
        let addr = tokio::net::lookup_host(&spec.connect)
            .await
            .with_context(|| format!("resolving {}", spec.connect))?
            .next()
            .with_context(|| format!("{} resolves to nothing", spec.connect))?;
        if !addr.ip().is_loopback() {
            bail!(
                "{} resolves to {addr}: the bench only ever connects to loopback",
                spec.connect
            );
        }
        let pem = std::fs::read(&spec.ca_file)
            .with_context(|| format!("reading {}", spec.ca_file.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
            roots.add(cert.context("parsing the trusted CA")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // A new connection is measured with a full handshake, as a fresh client process does.
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = vec![match spec.protocol {
            Protocol::H1 => b"http/1.1".to_vec(),
            Protocol::H2 => b"h2".to_vec(),
        }];
        let uri = match spec.protocol {
            Protocol::H1 => Uri::from_static("/v1/chat/completions"),
            Protocol::H2 => format!("https://{}/v1/chat/completions", spec.server_name).parse()?,
        };
        Ok(Self {
            addr,
            server_name: ServerName::try_from(spec.server_name.clone())?,
            tls: TlsConnector::from(Arc::new(config)),
            protocol: spec.protocol,
            uri,
            host: HeaderValue::from_str(&spec.server_name)?,
            body: payload::chat_request(spec.stream),
        })
    }

    pub(crate) async fn connect(&self) -> Result<Sender> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        let io = TokioIo::new(tls);
        Ok(match self.protocol {
            Protocol::H1 => {
                let (sender, connection) = http1::handshake(io).await?;
                tokio::spawn(connection);
                Sender::H1(sender)
            }
            Protocol::H2 => {
                let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(connection);
                Sender::H2(sender)
            }
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        self.request_with(self.body.clone())
    }

    /// The run's request with another body.
    pub(crate) fn request_with(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        if self.protocol == Protocol::H1 {
            headers.insert(header::HOST, self.host.clone());
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-bench-not-a-real-key"),
        );
        request
    }
}

pub(crate) enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    /// Another handle on the same h2 connection; h1 connections carry one request at a time.
    pub(crate) fn share(&self) -> Option<Sender> {
        match self {
            Sender::H2(sender) => Some(Sender::H2(sender.clone())),
            Sender::H1(_) => None,
        }
    }

    pub(crate) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>> {
        Ok(match self {
            Sender::H1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        })
    }
}

/// One worker's counts and histograms, merged at the end of a run.
pub(crate) struct Tally {
    latency: Histogram<u64>,
    first_event: Histogram<u64>,
    measured_ok: u64,
    total_ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        let histogram = || {
            Histogram::new_with_bounds(1, NANOS_HISTOGRAM_MAX, 3)
                .expect("static histogram bounds are valid")
        };
        Self {
            latency: histogram(),
            first_event: histogram(),
            measured_ok: 0,
            total_ok: 0,
            errors: 0,
            first_error: None,
        }
    }

    pub(crate) fn record_ok(
        &mut self,
        latency: Duration,
        first_byte: Option<Duration>,
        measured: bool,
    ) {
        self.total_ok += 1;
        if !measured {
            return;
        }
        self.measured_ok += 1;
        self.latency.saturating_record(latency.as_nanos() as u64);
        if let Some(first) = first_byte {
            self.first_event.saturating_record(first.as_nanos() as u64);
        }
    }

    pub(crate) fn record_error(&mut self, err: &anyhow::Error) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| format!("{err:#}"));
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds merge");
        self.first_event
            .add(&other.first_event)
            .expect("histograms with the same bounds merge");
        self.measured_ok += other.measured_ok;
        self.total_ok += other.total_ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn into_result(self, spec: &LoadSpec, window: Window) -> LoadResult {
        let measured_secs = (window.end - window.measure_from).as_secs_f64();
        self.into_summary(spec.stream, measured_secs)
    }

    /// The result, over `measured_secs`; first-event latencies only when `stream`.
    pub(crate) fn into_summary(self, stream: bool, measured_secs: f64) -> LoadResult {
        LoadResult {
            measured_ok: self.measured_ok,
            measured_secs,
            throughput_rps: self.measured_ok as f64 / measured_secs,
            latency: LatencySummary::of(&self.latency),
            first_event: stream.then(|| LatencySummary::of(&self.first_event)),
            total_ok: self.total_ok,
            errors: self.errors,
            first_error: self.first_error,
        }
    }
}
