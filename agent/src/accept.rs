//! The step every accept loop shares: the next connection, or none once shutdown fires.
use std::{future::Future, io, time::Duration};

use tokio::sync::watch;

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
