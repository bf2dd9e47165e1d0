//! The fake OpenAI upstream every setup shares: chat completions over TLS (h1 and h2), with a set
//! latency, N streamed events, a gate that holds streams open after their first event, and counts
//! of what it received (for the soak's checks).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use warden_tests::fake_upstream::TestCa;

use crate::payload;

/// How the upstream answers.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamBehavior {
    /// Before the response headers, as a model's time to first token.
    pub latency: Duration,
    /// Events in a streamed response, before `data: [DONE]`.
    pub stream_events: usize,
}

/// The running upstream: its own runtime, CA and listener. Dropping it stops it.
pub struct FakeUpstream {
    addr: SocketAddr,
    ca_file: PathBuf,
    state: Arc<SharedState>,
    // Field order is drop order: the runtime (and every connection task) goes first.
    _runtime: Runtime,
    _dir: TempDir,
}

struct SharedState {
    behavior: UpstreamBehavior,
    chat_response: Bytes,
    stream_events: Vec<Bytes>,
    /// While `true`, streams stop after their first event until it turns `false`.
    hold_streams: watch::Sender<bool>,
    streams_held: AtomicUsize,
    requests_received: AtomicU64,
    /// Requests that arrived with [`payload::UNMASKED_EMAIL`] in them: masking failed.
    unmasked_received: AtomicU64,
}

impl FakeUpstream {
    pub fn start(behavior: UpstreamBehavior) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the upstream's tempdir")?;
        let ca = TestCa::new("Warden bench upstream CA");
        let ca_file = dir.path().join("upstream-ca.pem");
        std::fs::write(&ca_file, ca.pem()).context("writing the upstream CA")?;
        let names = ["api.openai.com", "localhost", "127.0.0.1"].map(str::to_owned);
        let acceptor = TlsAcceptor::from(ca.server_config(&names));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-upstream")
            .enable_all()
            .build()
            .context("starting the upstream's runtime")?;
        let listener = runtime
            .block_on(TcpListener::bind(("127.0.0.1", 0)))
            .context("binding the upstream on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SharedState {
            behavior,
            chat_response: payload::chat_response(),
            stream_events: payload::stream_events(behavior.stream_events),
            hold_streams: watch::channel(false).0,
            streams_held: AtomicUsize::new(0),
            requests_received: AtomicU64::new(0),
            unmasked_received: AtomicU64::new(0),
        });
        runtime.spawn(accept_loop(listener, acceptor, Arc::clone(&state)));
        Ok(Self {
            addr,
            ca_file,
            state,
            _runtime: runtime,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA that signed the upstream's certificate (for api.openai.com, localhost, 127.0.0.1).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// From now on, streams pause after their first event until [`FakeUpstream::release_streams`].
    pub fn hold_streams(&self) {
        self.state.hold_streams.send_replace(true);
    }

    /// Lets every held stream finish.
    pub fn release_streams(&self) {
        self.state.hold_streams.send_replace(false);
    }

    /// How many streams are paused after their first event right now.
    pub fn streams_held(&self) -> usize {
        self.state.streams_held.load(Ordering::SeqCst)
    }

    /// Requests received so far, whole bodies read.
    pub fn requests_received(&self) -> u64 {
        self.state.requests_received.load(Ordering::SeqCst)
    }

    /// Requests received with [`payload::UNMASKED_EMAIL`] still in them.
    pub fn unmasked_received(&self) -> u64 {
        self.state.unmasked_received.load(Ordering::SeqCst)
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<SharedState>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(respond(state, request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

type ResponseBody = BoxBody<Bytes, Infallible>;

async fn respond(state: Arc<SharedState>, request: Request<Incoming>) -> Response<ResponseBody> {
    // Read the whole request, as a real API does before it answers.
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return plain(StatusCode::BAD_REQUEST, "unreadable request body"),
    };
    state.requests_received.fetch_add(1, Ordering::SeqCst);
    if payload::contains(&body, payload::UNMASKED_EMAIL.as_bytes()) {
        state.unmasked_received.fetch_add(1, Ordering::SeqCst);
    }
    if !state.behavior.latency.is_zero() {
        tokio::time::sleep(state.behavior.latency).await;
    }
    if payload::asks_for_stream(&body) {
        let until_closed = payload::contains(&body, payload::HOLD_MARKER.as_bytes());
        stream(state, until_closed)
    } else {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(state.chat_response.clone()).boxed())
            .expect("static response headers are valid")
    }
}

/// A streamed response. With `until_closed`, only its first event: the stream then stays open
/// until the body is dropped (the proxy in front gave up on it).
fn stream(state: Arc<SharedState>, until_closed: bool) -> Response<ResponseBody> {
    let (mut sender, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
    // Dropped with the body (the closure below owns it): wakes the task holding the stream.
    let (body_alive, body_dropped) = tokio::sync::oneshot::channel::<()>();
    let body = body.map_frame(move |frame| {
        let _alive = &body_alive;
        frame
    });
    tokio::spawn(async move {
        let mut events = state.stream_events.iter();
        if let Some(first) = events.next() {
            if sender.send_data(first.clone()).await.is_err() {
                return;
            }
        }
        if until_closed {
            let _ = body_dropped.await;
            return;
        }
        let mut hold = state.hold_streams.subscribe();
        if *hold.borrow_and_update() {
            state.streams_held.fetch_add(1, Ordering::SeqCst);
            let _ = hold.wait_for(|held| !held).await;
            state.streams_held.fetch_sub(1, Ordering::SeqCst);
        }
        for event in events {
            if sender.send_data(event.clone()).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body.boxed())
        .expect("static response headers are valid")
}

fn plain(status: StatusCode, message: &'static str) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(message.as_bytes())).boxed())
        .expect("static response headers are valid")
}
