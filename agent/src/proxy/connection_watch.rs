//! Watches one intercepted connection's requests: closes it when no request has been open for
//! the idle timeout, or when its client abandons requests in a flood (HTTP/2 rapid reset after
//! Warden accepted the streams, which h2's own pending-reset bound does not see).
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::{sync::Notify, time::Instant};

use super::{exchange_log::BoxError, http::AgentBody};

/// Requests a client may abandon (reset, or drop before the answer) within one window.
const MAX_ABANDONED_PER_WINDOW: u64 = 200;
const ABANDON_WINDOW: Duration = Duration::from_secs(10);

/// Why Warden closes a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseWanted {
    Idle,
    ClientResets,
}

impl CloseWanted {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseWanted::Idle => "idle",
            CloseWanted::ClientResets => "client_resets",
        }
    }

    /// The connection record's reason.
    pub fn reason(self, idle: Duration) -> String {
        match self {
            CloseWanted::Idle => format!(
                "closed by Warden: no request for {}s ([limits] http2_idle_timeout_secs)",
                idle.as_secs()
            ),
            CloseWanted::ClientResets => format!(
                "closed by Warden: the client abandoned more than {MAX_ABANDONED_PER_WINDOW} requests within {}s (stream reset flood)",
                ABANDON_WINDOW.as_secs()
            ),
        }
    }
}

struct Abandoned {
    window_start: Instant,
    count: u64,
}

/// One connection's open requests and abandoned ones.
pub struct ConnectionWatch {
    idle: Duration,
    open: AtomicUsize,
    /// Bumped at each request's end: an idle wait that saw it change starts over.
    ended: AtomicU64,
    abandoned: Mutex<Abandoned>,
    changed: Notify,
}

impl ConnectionWatch {
    pub fn new(idle: Duration) -> Arc<Self> {
        Arc::new(ConnectionWatch {
            idle,
            open: AtomicUsize::new(0),
            ended: AtomicU64::new(0),
            abandoned: Mutex::new(Abandoned {
                window_start: Instant::now(),
                count: 0,
            }),
            changed: Notify::new(),
        })
    }

    /// Runs one request's handler, counting the request open until its response body ends (or
    /// is dropped), and as abandoned if the handler is dropped before it answered.
    pub async fn track(
        self: Arc<Self>,
        handler: impl Future<Output = Result<Response<AgentBody>, Infallible>>,
    ) -> Result<Response<AgentBody>, Infallible> {
        let mut open = OpenRequest {
            watch: self.clone(),
            answered: false,
        };
        self.open.fetch_add(1, Ordering::SeqCst);
        let response = handler.await?;
        open.answered = true;
        Ok(response.map(|body| TrackedBody { body, _open: open }.boxed_unsync()))
    }

    /// Resolves when the connection should be closed, and why.
    pub async fn close_wanted(&self) -> CloseWanted {
        loop {
            if self.too_many_abandoned() {
                return CloseWanted::ClientResets;
            }
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.open.load(Ordering::SeqCst) > 0 {
                changed.await;
                continue;
            }
            let ended = self.ended.load(Ordering::SeqCst);
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(self.idle) => {
                    if self.open.load(Ordering::SeqCst) == 0
                        && self.ended.load(Ordering::SeqCst) == ended
                    {
                        return CloseWanted::Idle;
                    }
                }
            }
        }
    }

    fn too_many_abandoned(&self) -> bool {
        let abandoned = self.abandoned.lock().unwrap_or_else(|p| p.into_inner());
        abandoned.count > MAX_ABANDONED_PER_WINDOW
    }

    fn request_ended(&self, answered: bool) {
        if !answered {
            let mut abandoned = self.abandoned.lock().unwrap_or_else(|p| p.into_inner());
            if abandoned.window_start.elapsed() >= ABANDON_WINDOW {
                abandoned.window_start = Instant::now();
                abandoned.count = 0;
            }
            abandoned.count += 1;
        }
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.ended.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// One request counted open until dropped.
struct OpenRequest {
    watch: Arc<ConnectionWatch>,
    /// The handler produced a response (its body may still be streaming).
    answered: bool,
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.watch.request_ended(self.answered);
    }
}

/// A response body that keeps its request counted open until it ends or is dropped.
struct TrackedBody {
    body: AgentBody,
    _open: OpenRequest,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;

    fn empty() -> Result<Response<AgentBody>, Infallible> {
        Ok(Response::new(
            Empty::new().map_err(|never| match never {}).boxed_unsync(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_requests_is_idle_after_the_timeout() {
        let watch = ConnectionWatch::new(Duration::from_secs(5));
        assert_eq!(watch.close_wanted().await, CloseWanted::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_still_streaming_keeps_the_connection_busy() {
        let watch = ConnectionWatch::new(Duration::from_secs(5));
        let response = watch.clone().track(async { empty() }).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_secs(60), watch.close_wanted()).await;
        assert!(waiting.is_err(), "not idle while the body is open");
        drop(response);
        assert_eq!(watch.close_wanted().await, CloseWanted::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_abandoned_requests_closes_the_connection() {
        let watch = ConnectionWatch::new(Duration::from_secs(3600));
        for _ in 0..=MAX_ABANDONED_PER_WINDOW {
            // A handler dropped before it answered: the client reset its stream.
            let abandoned = watch.clone().track(std::future::pending());
            let polled = tokio::time::timeout(Duration::from_millis(1), abandoned).await;
            assert!(polled.is_err());
        }
        let wanted = tokio::time::timeout(Duration::from_secs(1), watch.close_wanted()).await;
        assert_eq!(wanted, Ok(CloseWanted::ClientResets));
    }

    #[tokio::test(start_paused = true)]
    async fn answered_requests_are_not_abandoned() {
        let watch = ConnectionWatch::new(Duration::from_secs(3600));
        for _ in 0..=MAX_ABANDONED_PER_WINDOW {
            drop(watch.clone().track(async { empty() }).await);
        }
        let wanted = tokio::time::timeout(Duration::from_secs(1), watch.close_wanted()).await;
        assert!(wanted.is_err(), "{wanted:?}");
    }
}
