//! The HTTP server settings of an intercepted connection: `[limits]` timeouts, and the header and
//! HTTP/2 stream bounds that keep floods (oversized headers, rapid reset, CONTINUATION) cheap.
use std::time::Duration;

use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto,
};

use crate::config::LimitsConfig;

/// HTTP/1: the most header lines in one request; more are answered 431. An API call needs a
/// dozen.
const MAX_HEADERS: usize = 100;
/// HTTP/1: the read buffer, which bounds one request's head (request line and headers); a larger
/// head is answered 431.
const MAX_HTTP1_BUFFER: usize = 64 * 1024;
/// HTTP/2: SETTINGS_MAX_HEADER_LIST_SIZE. A larger header block is answered 431 and its stream
/// refused; h2 also bounds the CONTINUATION frames it accepts from this (GOAWAY past it).
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// HTTP/2: requests open at once on one connection.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// HTTP/2: streams the client resets before Warden accepted them, the CVE-2023-44487 pattern;
/// past it the connection gets GOAWAY (ENHANCE_YOUR_CALM).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// HTTP/2: streams Warden itself resets for protocol errors before the connection is closed.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// `[limits]` as durations.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub handshake: Duration,
    pub header_read: Duration,
    pub body_read: Duration,
    pub body_idle: Duration,
    pub http2_idle: Duration,
}

impl Timeouts {
    pub fn of(limits: &LimitsConfig) -> Self {
        Timeouts {
            handshake: Duration::from_secs(limits.handshake_timeout_secs),
            header_read: Duration::from_secs(limits.header_read_timeout_secs),
            body_read: Duration::from_secs(limits.body_read_timeout_secs),
            body_idle: Duration::from_secs(limits.body_idle_timeout_secs),
            http2_idle: Duration::from_secs(limits.http2_idle_timeout_secs),
        }
    }
}

/// The server for one intercepted connection (either protocol; the caller narrows it to the one
/// ALPN chose).
pub fn builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let timeouts = Timeouts::of(limits);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's timeouts only run with a timer.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HTTP1_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS);
    builder
}
