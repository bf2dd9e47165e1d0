//! Refuses plaintext HTTP to an intercepted host (HTTP_PROXY, or port 80) with an OpenAI-shaped error.
use std::time::Duration;

use http::StatusCode;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::Instant,
};

use super::{audit::ConnectionAudit, reject, Attributed};
use crate::openai::error::ApiError;

/// After answering, the rest of the request is read and dropped for this long (up to
/// [`DRAIN_LIMIT`] bytes), so that closing with unread bytes does not reset the connection
/// before the client has read the answer.
const DRAIN_FOR: Duration = Duration::from_secs(5);
const DRAIN_LIMIT: usize = 1024 * 1024;

/// The error an agent gets: the request names an API host Warden governs, in plaintext.
pub fn plaintext_refused(host: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "invalid_request_error",
        format!(
            "Warden refuses plaintext HTTP to {host}: call https://{host}/ (through a proxy or not)"
        ),
    )
    .with_code("plaintext_http_refused")
    .with_should_retry(false)
}

/// The whole HTTP/1.1 response carrying `error`, closing the connection.
pub fn response_bytes(error: &ApiError) -> Vec<u8> {
    let body = error.body();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if let Some(retry) = error.should_retry {
        head.push_str(&format!("x-should-retry: {retry}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

pub async fn refuse<S>(at: &Attributed<'_>, client: &mut S, host: &str, mut audit: ConnectionAudit)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    audit.server_name.get_or_insert_with(|| host.to_owned());
    let reason = format!("plaintext HTTP to intercepted host {host}");
    let answer = response_bytes(&plaintext_refused(host));
    if client.write_all(&answer).await.is_ok() && client.shutdown().await.is_ok() {
        drain(client).await;
    }
    reject(at, &reason, audit);
}

async fn drain<S: AsyncRead + Unpin>(client: &mut S) {
    let deadline = Instant::now() + DRAIN_FOR;
    let mut buffer = vec![0u8; 16 * 1024];
    let mut drained = 0;
    while drained < DRAIN_LIMIT {
        match tokio::time::timeout_at(deadline, client.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}
