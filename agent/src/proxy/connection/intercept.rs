//! Serves an intercepted connection: TLS with Warden's leaf, then HTTP through the request pipeline.
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};
use tracing::Level;

use super::{audit::ConnectionAudit, reject, Attributed};
use crate::{
    audit::record::Disposition,
    identity_event,
    proxy::{
        close_reason,
        connection_watch::ConnectionWatch,
        counters::Counters,
        counting::CountingStream,
        http,
        http_server::{self, Timeouts},
        stages::ConnectionInfo,
    },
};

/// Terminates TLS with a leaf for `server_name` and serves the HTTP inside through the request
/// pipeline. `destination_port` is the port the client asked for (the upstream's).
pub async fn intercept<S>(
    at: &Attributed<'_>,
    client: S,
    server_name: String,
    destination_port: u16,
    mut shutdown: watch::Receiver<bool>,
    mut audit: ConnectionAudit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let context = at.context;
    let identity = at.identity;
    let acceptor = tokio_rustls::TlsAcceptor::from(context.tls_server.clone());
    let counted = CountingStream::new(client);
    let counts = counted.counts();
    let timeouts = Timeouts::of(&context.config.limits);
    let handshake = tokio::time::timeout(timeouts.handshake, acceptor.accept(counted)).await;
    audit.counts = Some(counts);
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            return reject(
                at,
                &format!("TLS handshake with client failed: {error}"),
                audit,
            )
        }
        Err(_) => return reject(at, "TLS handshake with client timed out", audit),
    };
    Counters::bump(&context.counters.intercepted);
    context.metrics.connection(Disposition::Intercepted);
    audit.disposition = Disposition::Intercepted;
    audit.reason = None;
    let info = Arc::new(ConnectionInfo {
        context: context.clone(),
        identity: identity.clone(),
        server_name,
        destination_port,
        connection_id: audit.id.clone(),
    });
    let watch = ConnectionWatch::new(timeouts.http2_idle);
    let tracking = watch.clone();
    let service = hyper::service::service_fn(move |request| {
        tracking.clone().track(http::handle(info.clone(), request))
    });
    let builder = http_server::builder(&context.config.limits);
    // Serving the protocol ALPN chose, instead of sniffing the first bytes for it, puts a client
    // that never sends anything under the header read timeout too.
    let builder = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => builder.http2_only(),
        Some(b"http/1.1") => builder.http1_only(),
        _ => builder,
    };
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let mut closed_by_warden = None;
    let (result, shutting_down) = tokio::select! {
        result = connection.as_mut() => (result, false),
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            (connection.await, true)
        }
        wanted = watch.close_wanted() => {
            context.metrics.limits.http2_closed(wanted.as_str());
            closed_by_warden = Some(wanted.reason(timeouts.http2_idle));
            connection.as_mut().graceful_shutdown();
            (connection.await, false)
        }
    };
    if let Err(error) = &result {
        identity_event!(Level::DEBUG, identity, %error, "intercepted connection ended with an error");
    }
    let result = result.as_ref().map(|_| ()).map_err(|error| &**error as _);
    audit.reason = closed_by_warden.or_else(|| Some(close_reason::closed(result, shutting_down)));
}
