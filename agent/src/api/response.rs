//! Response bodies of the HTTPS API (whole, or a stream for Server-Sent Events) and the headers
//! every answer carries.
use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde::Serialize;
use tokio::sync::mpsc;

pub type ApiBody = BoxBody<Bytes, std::io::Error>;
pub type ApiResponse = Response<ApiBody>;

/// The console's scripts and styles come from this origin only; nothing inline, nothing framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn full(bytes: impl Into<Bytes>) -> ApiBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json<T: Serialize>(value: &T) -> ApiResponse {
    let body = serde_json::to_vec(value).unwrap_or_default();
    with_type(StatusCode::OK, "application/json", body)
}

pub fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> ApiResponse {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A 303 to `location` (a path on this origin).
pub fn see_other(location: &str) -> ApiResponse {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The headers every answer carries: no caching, no sniffing, no framing, no referrer, HTTPS only.
pub fn secure_headers(headers: &mut HeaderMap) {
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// A streamed body fed by a task through a channel; the stream ends when the sender is dropped,
/// and the sender learns that the client left when a send fails.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl ChannelBody {
    pub fn channel(capacity: usize) -> (mpsc::Sender<Bytes>, ApiBody) {
        let (sender, receiver) = mpsc::channel(capacity);
        (sender, ChannelBody(receiver).boxed())
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}
