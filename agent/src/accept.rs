//! The steps every accept loop shares: the next connection, or none once shutdown fires; and, for
//! the small HTTP/1 servers (metrics, the admin API), serving one connection until shutdown.
use std::{future::Future, io, time::Duration};

use hyper::{body::Incoming, server::conn::http1, service::HttpService};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves one HTTP/1.1 connection until it ends or, once `shutdown` changes, until the request in
/// progress is answered.
pub async fn serve_http1<I, S, B>(
    stream: I,
    service: S,
    header_read_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// How long an accept loop waits after a failed accept (EMFILE and friends) before trying again,
/// instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Waits for `accept` to give a connection, retrying after failures (logged with `listener`),
/// and returns `None` as soon as `shutdown` changes.
pub async fn next_connection<T, F>(
    mut accept: impl FnMut() -> F,
    shutdown: &mut watch::Receiver<bool>,
    listener: &'static str,
) -> Option<T>
where
    F: Future<Output = io::Result<T>>,
{
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return None,
            accepted = accept() => accepted,
        };
        match accepted {
            Ok(connection) => return Some(connection),
            Err(error) => {
                tracing::error!(%error, listener, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_accept_is_retried_and_shutdown_ends_the_wait() {
        let (shutdown_tx, mut shutdown) = watch::channel(false);
        let mut attempts = 0;
        let accept = || {
            attempts += 1;
            let attempt = attempts;
            async move {
                if attempt < 3 {
                    Err(io::Error::from_raw_os_error(libc::EMFILE))
                } else {
                    Ok(attempt)
                }
            }
        };
        assert_eq!(
            next_connection(accept, &mut shutdown, "test").await,
            Some(3)
        );

        let pending = || std::future::pending::<io::Result<u32>>();
        shutdown_tx.send(true).unwrap();
        assert_eq!(next_connection(pending, &mut shutdown, "test").await, None);
    }
}
