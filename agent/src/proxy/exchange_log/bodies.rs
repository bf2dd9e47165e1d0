//! The bodies an exchange log follows: a streamed request body (counted) and the upstream's
//! response body (logged when it ends, however it ends, and cut if its identity is revoked).
use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::{BoxError, ExchangeLog, CLIENT_LEFT_MID_RESPONSE};
use crate::{
    audit::record::Outcome, proxy::stages::revoked::cut_reason, revocation::RevocationCut,
};

/// A streamed request body, passed through frame by frame, counting its data bytes.
pub struct CountedBody<B = Incoming> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> CountedBody<B> {
    pub(super) fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        CountedBody { inner, count }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for CountedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream response body, passed through frame by frame, logging the exchange when it ends
/// (or when the agent goes away first).
pub struct LoggedBody<B: Body = Incoming> {
    inner: B,
    response_bytes: u64,
    status: StatusCode,
    streamed: bool,
    log: ExchangeLog,
    /// Fires when the exchange's identity is revoked: the body then ends with an error.
    cut: Option<RevocationCut>,
    /// Ends the body with an error when the upstream sends nothing for this long.
    idle: Option<IdleTimer>,
}

/// The upstream's silence allowed between two frames, and when the current one runs out.
struct IdleTimer {
    limit: Duration,
    expires: Pin<Box<Sleep>>,
    /// A frame was handed on: the silence is counted afresh from the next time the agent's side
    /// asks for one (an agent that reads slowly is not the upstream stalling).
    rearm: bool,
}

/// What a response body ends with when the upstream stalled mid-response (the client then sees
/// the stream end with an error, as for a revocation cut).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StalledUpstream(String);

/// What a response body ends with when a revocation cuts it (hyper then resets the HTTP/2 stream
/// or closes the HTTP/1.1 connection mid-body, so the client sees an error, not an end).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CutByRevocation(String);

impl<B: Body> LoggedBody<B> {
    pub(super) fn new(inner: B, status: StatusCode, streamed: bool, log: ExchangeLog) -> Self {
        LoggedBody {
            inner,
            response_bytes: 0,
            status,
            streamed,
            log,
            cut: None,
            idle: None,
        }
    }

    /// Ends the body, mid-stream if need be, when the upstream sends nothing for `limit`.
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle = Some(IdleTimer {
            limit,
            expires: Box::pin(tokio::time::sleep(limit)),
            rearm: false,
        });
        self
    }

    /// Ends the body, mid-stream if need be, as soon as `revoked` resolves.
    pub fn cut_when(mut self, revoked: RevocationCut) -> Self {
        self.cut = Some(revoked);
        self
    }

    fn finish(&mut self, error: Option<&str>, outcome: Outcome) {
        self.log.emit(
            Some(self.status),
            self.streamed,
            self.response_bytes,
            error,
            outcome,
        );
    }

    /// A response that arrived whole: `upstream_error` when the upstream answered with an error.
    fn completed(&mut self) {
        if self.status.is_client_error() || self.status.is_server_error() {
            let reason = format!("the upstream answered {}", self.status);
            self.finish(Some(&reason), Outcome::UpstreamError);
        } else {
            self.finish(None, Outcome::Ok);
        }
    }
}

impl<B> Body for LoggedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display + Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // An atomic load per frame while no revocation happens (see RevocationCut).
        if let Some(Poll::Ready(revocation)) = self.cut.as_mut().map(|cut| cut.poll_revoked(cx)) {
            self.cut = None;
            let reason = format!("{} mid-response", cut_reason(&revocation));
            self.finish(Some(&reason), Outcome::Revoked);
            return Poll::Ready(Some(Err(CutByRevocation(reason).into())));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into);
        if let Some(idle) = self.idle.as_mut() {
            if polled.is_pending() {
                if std::mem::take(&mut idle.rearm) {
                    let deadline = tokio::time::Instant::now() + idle.limit;
                    idle.expires.as_mut().reset(deadline);
                }
                if idle.expires.as_mut().poll(cx).is_ready() {
                    let reason = format!(
                        "the upstream sent nothing for {}s mid-response ([upstream] idle_timeout_secs)",
                        idle.limit.as_secs()
                    );
                    self.idle = None;
                    self.finish(Some(&reason), Outcome::Timeout);
                    return Poll::Ready(Some(Err(StalledUpstream(reason).into())));
                }
            } else {
                idle.rearm = true;
            }
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.response_bytes += data.len() as u64;
                    self.log.on_response_data(data);
                }
                // hyper may stop polling once the body says it has ended, before Ready(None).
                if self.inner.is_end_stream() || self.log.stream_complete() {
                    self.completed();
                }
            }
            Poll::Ready(Some(Err(error))) => {
                let reason = format!("upstream response failed: {error}");
                self.finish(Some(&reason), Outcome::UpstreamError);
            }
            Poll::Ready(None) => self.completed(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        // Runs before the inner ExchangeLog's own drop, so the line carries the response status.
        // A client that leaves after the stream's final event has had all of it: SDKs stop
        // reading at `[DONE]`, and over HTTP/1.1 the end of the chunked body can come after.
        if self.inner.is_end_stream() || self.log.stream_complete() {
            self.completed();
        } else {
            self.finish(Some(CLIENT_LEFT_MID_RESPONSE), Outcome::ClientAborted);
        }
    }
}
