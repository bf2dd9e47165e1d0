//! The proxy: listener, classify, tunnel, TLS interception, HTTP forwarding, upstream pool.
pub mod client_hello;
mod connection;
pub mod counters;
mod http;
mod log_fields;
mod prefixed;
pub mod upstream;

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{net::TcpListener, sync::watch};

use crate::{config::Config, ebpf::Redirector, identity::IdentityResolver};
use counters::Counters;
use upstream::Upstream;

/// What every connection task shares.
pub struct ProxyContext {
    pub config: Arc<Config>,
    pub redirector: Arc<Redirector>,
    pub identities: IdentityResolver,
    pub tls_server: Arc<rustls::ServerConfig>,
    pub upstream: Upstream,
    pub counters: Counters,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Warden's listeners: 127.0.0.1 and ::1 on the configured port (redirected IPv4 and IPv4-mapped
/// connects land on the first, IPv6 ones on the second).
pub struct Listeners(Vec<TcpListener>);

impl Listeners {
    pub async fn bind(port: u16) -> Result<Listeners, ListenError> {
        let mut listeners = Vec::new();
        for ip in [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()] {
            let address = SocketAddr::new(ip, port);
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| ListenError::Bind { address, source })?;
            listeners.push(listener);
        }
        Ok(Listeners(listeners))
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.0.iter().filter_map(|l| l.local_addr().ok()).collect()
    }
}

/// Accepts until `shutdown` turns true, then waits up to `drain` for open connections to finish
/// (HTTP connections are asked to close after their current request).
pub async fn serve(
    context: Arc<ProxyContext>,
    listeners: Listeners,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(tokio::sync::Notify::new());
    let mut accept_loops = Vec::new();
    for listener in listeners.0 {
        let context = context.clone();
        let mut shutdown = shutdown.clone();
        let open = open.clone();
        let drained = drained.clone();
        accept_loops.push(tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.changed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::error!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                open.fetch_add(1, Ordering::SeqCst);
                let context = context.clone();
                let shutdown = shutdown.clone();
                let open = open.clone();
                let drained = drained.clone();
                tokio::spawn(async move {
                    connection::handle(context, stream, peer, shutdown).await;
                    if open.fetch_sub(1, Ordering::SeqCst) == 1 {
                        drained.notify_waiters();
                    }
                });
            }
        }));
    }
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    let remaining = open.load(Ordering::SeqCst);
    if remaining == 0 {
        return;
    }
    tracing::info!(
        open_connections = remaining,
        drain_timeout_secs = drain.as_secs(),
        "draining connections"
    );
    let wait_all = async {
        while open.load(Ordering::SeqCst) > 0 {
            let notified = drained.notified();
            if open.load(Ordering::SeqCst) == 0 {
                break;
            }
            notified.await;
        }
    };
    if tokio::time::timeout(drain, wait_all).await.is_err() {
        tracing::warn!(
            open_connections = open.load(Ordering::SeqCst),
            "drain timeout: closing remaining connections"
        );
    }
}
