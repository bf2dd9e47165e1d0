//! The proxy: listener, classify, tunnel, TLS interception, HTTP forwarding, upstream pool.
pub mod body_budget;
pub mod client_hello;
mod close_reason;
mod connection;
mod connection_watch;
pub mod counters;
mod counting;
mod exchange_log;
mod http;
mod http_head;
mod http_server;
mod injected_usage;
pub mod learned;
mod limits;
mod log_fields;
mod over_limit;
mod prefixed;
mod recording;
mod response_mask;
mod stages;
pub mod upstream;

/// The request path on its own, for the criterion bench of the stage sequence.
pub use {http::handle as handle_request, stages::ConnectionInfo};

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

/// What every connection task and request stage shares. The redirector is not part of it: only
/// accepting a connection needs it, so the request path can run without eBPF (benches, tests).
pub struct ProxyContext {
    pub config: Arc<Config>,
    pub identities: IdentityResolver,
    pub tls_server: Arc<rustls::ServerConfig>,
    pub upstream: Upstream,
    pub audit: crate::audit::AuditWriter,
    pub policy: Arc<crate::policy::active::ActivePolicy>,
    /// Shared with exchange logs, which can outlive their request handler.
    pub counters: Arc<Counters>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Held requests, their decisions and duration grants.
    pub approvals: Arc<crate::approvals::Approvals>,
    /// The keys Warden injects (credential custody).
    pub credentials: Arc<crate::credentials::CredentialStore>,
    pub revocations: Arc<crate::revocation::Revocations>,
    /// `[[limit]]` admission: the ledger and the price table.
    pub limits: Arc<crate::identity_limits::Limits>,
    /// `[limits] body_memory_budget_bytes`: request bodies held in memory, all clients together.
    pub body_budget: Arc<body_budget::BodyBudget>,
    /// Addresses of intercepted hosts: never tunneled to (domain fronting).
    pub learned: Arc<learned::LearnedAddresses>,
    /// Where ended exchanges go to be judged by the anomaly detectors.
    pub anomaly: crate::anomaly::AnomalyFeed,
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
        let ipv4 = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        let listener = TcpListener::bind(ipv4)
            .await
            .map_err(|source| ListenError::Bind {
                address: ipv4,
                source,
            })?;
        listeners.push(listener);
        let ipv6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port);
        match TcpListener::bind(ipv6).await {
            Ok(listener) => listeners.push(listener),
            // A host booted with ipv6.disable=1 has no ::1; its IPv6 connects fail anyway.
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
                ) =>
            {
                tracing::warn!(%error, "IPv6 loopback unavailable: listening on 127.0.0.1 only");
            }
            Err(source) => {
                return Err(ListenError::Bind {
                    address: ipv6,
                    source,
                })
            }
        }
        Ok(Listeners(listeners))
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.0.iter().filter_map(|l| l.local_addr().ok()).collect()
    }
}

/// Counts one open connection until dropped, also when its task panics or is aborted, so that
/// drain never waits for a connection that is gone.
struct OpenConnection {
    open: Arc<AtomicUsize>,
    drained: Arc<tokio::sync::Notify>,
}

impl OpenConnection {
    fn new(open: Arc<AtomicUsize>, drained: Arc<tokio::sync::Notify>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        OpenConnection { open, drained }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.drained.notify_waiters();
        }
    }
}

/// Accepts until `shutdown` turns true, then waits up to `drain` for open connections to finish
/// (HTTP connections are asked to close after their current request).
pub async fn serve(
    context: Arc<ProxyContext>,
    redirector: Arc<Redirector>,
    listeners: Listeners,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(tokio::sync::Notify::new());
    // After the drain timeout, the connections still open are cut: their tasks drop what they
    // hold, and the drop guards write their log lines and audit records.
    let (abort_tx, abort) = watch::channel(false);
    let (caps, over_limit) = limits_for(&context);
    let summarizer = tokio::spawn(over_limit.clone().summarize(shutdown.clone()));
    let mut accept_loops = Vec::new();
    for listener in listeners.0 {
        let context = context.clone();
        let redirector = redirector.clone();
        let mut shutdown = shutdown.clone();
        let open = open.clone();
        let drained = drained.clone();
        let abort = abort.clone();
        let (caps, over_limit) = (caps.clone(), over_limit.clone());
        accept_loops.push(tokio::spawn(async move {
            let accept = || listener.accept();
            while let Some((stream, peer)) =
                crate::accept::next_connection(accept, &mut shutdown, "proxy").await
            {
                let origin = redirector.take_origin(peer);
                // Over a cap: reset before any work (identity, TLS) is spent on it.
                let admitted = match &origin {
                    Some(found) => match caps.admit(found) {
                        Ok(admitted) => Some(admitted),
                        Err(over) => {
                            over_limit.refuse(stream, found.clone(), over);
                            continue;
                        }
                    },
                    None => None,
                };
                let guard = OpenConnection::new(open.clone(), drained.clone());
                let context = context.clone();
                let shutdown = shutdown.clone();
                let mut abort = abort.clone();
                tokio::spawn(async move {
                    let _open = (guard, admitted);
                    tokio::select! {
                        _ = connection::handle(context, stream, peer, origin, shutdown) => {}
                        _ = abort.changed() => {}
                    }
                });
            }
        }));
    }
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    // Its last summary of refused connections goes on record before the audit store closes.
    let _ = tokio::time::timeout(EXCHANGES_END_TIMEOUT, summarizer).await;
    let remaining = open.load(Ordering::SeqCst);
    if remaining > 0 {
        tracing::info!(
            open_connections = remaining,
            drain_timeout_secs = drain.as_secs(),
            "draining connections"
        );
    }
    let wait_all = async {
        while open.load(Ordering::SeqCst) > 0 {
            let notified = drained.notified();
            if open.load(Ordering::SeqCst) == 0 {
                break;
            }
            notified.await;
        }
    };
    if remaining > 0 && tokio::time::timeout(drain, wait_all).await.is_err() {
        tracing::warn!(
            open_connections = open.load(Ordering::SeqCst),
            "drain timeout: closing remaining connections"
        );
        let _ = abort_tx.send(true);
    }
    // hyper runs each h2 request in a task of its own, which ends soon after its connection: wait
    // for every exchange to have ended (and submitted its records) before the caller closes the
    // audit store.
    let ended = async {
        while open.load(Ordering::SeqCst) > 0
            || context.counters.open_exchanges.load(Ordering::SeqCst) > 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(EXCHANGES_END_TIMEOUT, ended)
        .await
        .is_err()
    {
        tracing::error!(
            open_exchanges = context.counters.open_exchanges.load(Ordering::SeqCst),
            "exchanges still open at shutdown: their response records are lost"
        );
    }
}

/// The connection caps of `[limits]` (the daemon-wide one from the open-file limit, read after
/// `warden run` raised it), and what refuses connections over them.
fn limits_for(
    context: &Arc<ProxyContext>,
) -> (
    Arc<limits::ConnectionLimits>,
    Arc<over_limit::OverLimitRefusals>,
) {
    let caps = limits::ConnectionLimits::new(
        &context.config.limits,
        limits::open_file_limit(),
        context.metrics.limits.open_connections.clone(),
    );
    let per_cgroup = context.config.limits.max_connections_per_cgroup;
    let ports = limits::ephemeral_ports();
    tracing::info!(
        max_connections_per_process = context.config.limits.max_connections_per_process,
        max_connections_per_cgroup = per_cgroup,
        max_connections = caps.daemon_cap(),
        ephemeral_ports = ports,
        "connection limits"
    );
    // All redirected connects share 127.0.0.1:listen_port as destination: one cgroup allowed as
    // many connections as there are ephemeral ports could leave none for the others.
    if ports.is_some_and(|ports| u64::from(per_cgroup) >= ports) {
        tracing::warn!(
            max_connections_per_cgroup = per_cgroup,
            ephemeral_ports = ports,
            "[limits] max_connections_per_cgroup is not below the host's ephemeral port count (net.ipv4.ip_local_port_range): one cgroup could take every port to Warden's listener"
        );
    }
    (caps, over_limit::OverLimitRefusals::new(context.clone()))
}

/// How long shutdown waits for cut connections' exchanges to end.
const EXCHANGES_END_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_connection_task_still_leaves_the_open_count() {
        let open = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(tokio::sync::Notify::new());
        let guard = OpenConnection::new(open.clone(), drained.clone());
        assert_eq!(open.load(Ordering::SeqCst), 1);
        let notified = drained.notified();
        let task = tokio::spawn(async move {
            let _open = guard;
            panic!("connection task panicked on purpose");
        });
        assert!(task.await.is_err_and(|error| error.is_panic()));
        assert_eq!(open.load(Ordering::SeqCst), 0);
        tokio::time::timeout(Duration::from_secs(5), notified)
            .await
            .expect("drain is notified when the last connection ends");
    }
}
