//! Relays a connection Warden does not decrypt to its original destination, byte for byte.
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tracing::Level;

use super::{audit::ConnectionAudit, reject, Attributed};
use crate::{
    audit::record::Disposition,
    identity_event,
    proxy::{counters::Counters, counting::CountingStream, prefixed::PrefixedStream},
};

pub const TUNNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection is tunneled, and what its ClientHello (if any) offered.
pub struct Tunneled {
    pub reason: &'static str,
    pub server_name: Option<String>,
    /// The ALPN protocols, comma-joined; None when the client offered none.
    pub alpn: Option<String>,
}

impl Tunneled {
    pub fn because(reason: &'static str) -> Self {
        Tunneled {
            reason,
            server_name: None,
            alpn: None,
        }
    }
}

/// The server end of a tunnel: connected already (and what it said first), or not yet.
pub enum Server {
    Connect,
    Connected(TcpStream, BytesMut),
}

/// Why Warden will not tunnel to the original destination, if it will not: an address an
/// intercepted host lives at could serve that host under another server name (domain fronting).
pub fn refusal_to_tunnel(at: &Attributed<'_>) -> Option<String> {
    let ip = at.origin.original_dst.ip();
    let host = at.context.learned.host_at(ip)?;
    Some(format!(
        "destination {ip} is an address of intercepted host {host}: not tunneled (domain fronting)"
    ))
}

pub async fn tunnel<S>(
    at: &Attributed<'_>,
    client: S,
    first_bytes: BytesMut,
    server: Server,
    why: Tunneled,
    mut audit: ConnectionAudit,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    audit.server_name = why.server_name.clone();
    if let Some(reason) = refusal_to_tunnel(at) {
        return reject(at, &reason, audit);
    }
    let started = Instant::now();
    let destination = at.origin.original_dst;
    let (server, server_first) = match server {
        Server::Connected(server, said) => (server, said),
        Server::Connect => match connect(destination).await {
            Ok(server) => (server, BytesMut::new()),
            Err(reason) => return reject(at, &reason, audit),
        },
    };
    let context = at.context;
    Counters::bump(&context.counters.tunneled);
    context.metrics.connection(Disposition::Tunneled);
    audit.disposition = Disposition::Tunneled;
    audit.reason = Some(why.reason.to_string());
    let mut server = PrefixedStream::new(server_first, server);
    let mut client = CountingStream::new(PrefixedStream::new(first_bytes, client));
    audit.counts = Some(client.counts());
    let result = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    let error = result.err().map(|error| error.to_string());
    identity_event!(
        Level::INFO,
        at.identity,
        destination = %destination,
        server_name = why.server_name.as_deref(),
        alpn = why.alpn.as_deref(),
        reason = why.reason,
        bytes_from_client = client.counts().read(),
        bytes_to_client = client.counts().written(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        error = error.as_deref(),
        "tunnel"
    );
}

/// Connects to `destination` (Warden's own connects are never redirected), or says why not.
pub async fn connect(destination: std::net::SocketAddr) -> Result<TcpStream, String> {
    match tokio::time::timeout(TUNNEL_CONNECT_TIMEOUT, TcpStream::connect(destination)).await {
        Ok(Ok(server)) => {
            let _ = server.set_nodelay(true);
            Ok(server)
        }
        Ok(Err(error)) => Err(format!("tunnel to {destination} failed: {error}")),
        Err(_) => Err(format!("tunnel to {destination} timed out")),
    }
}
