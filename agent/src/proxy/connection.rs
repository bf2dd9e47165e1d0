//! One redirected connection: claim its origin, attribute it, classify it, then intercept or tunnel.
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use hyper_util::rt::TokioIo;
use tokio::{io::AsyncReadExt, net::TcpStream, sync::watch};
use tracing::Level;

use super::close_reason;
use super::connection_watch::ConnectionWatch;
use super::http_server::{self, Timeouts};
use super::recording::{new_id, now_us};
use super::{
    client_hello::{classify, Classified},
    counters::Counters,
    counting::{ByteCounts, CountingStream},
    http,
    prefixed::PrefixedStream,
    stages::ConnectionInfo,
    ProxyContext,
};
use crate::{
    audit::{
        record::{AuditRecord, ConnectionRecord, Disposition, IdentitySnapshot},
        AuditWriter,
    },
    ebpf::origin::ConnectionOrigin,
    identity::Identity,
    identity_event,
};

/// Why a connection whose first bytes are not a TLS handshake record is refused.
const NOT_A_CLIENT_HELLO: &str = "not a TLS ClientHello (refused on an intercepted port)";

const TUNNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn handle(
    context: Arc<ProxyContext>,
    mut client: TcpStream,
    peer: SocketAddr,
    origin: Option<ConnectionOrigin>,
    shutdown: watch::Receiver<bool>,
) {
    Counters::bump(&context.counters.accepted);
    let Some(origin) = origin else {
        // Someone connected to the listener directly: there is no destination to serve.
        Counters::bump(&context.counters.rejected);
        context.metrics.connection(Disposition::Rejected);
        tracing::warn!(%peer, reason = "no origin recorded for this connection", "connection closed");
        return;
    };
    // A cache miss reads procfs, may ask NSS for a user name and, for an exited process, walk
    // cgroupfs: keep that off the async workers.
    let resolver = context.clone();
    let captured = origin.clone();
    let identity = match tokio::task::spawn_blocking(move || resolver.identities.resolve(&captured))
        .await
    {
        Ok(identity) => identity,
        Err(error) => {
            Counters::bump(&context.counters.rejected);
            context.metrics.connection(Disposition::Rejected);
            tracing::error!(%error, %peer, reason = "identity resolution failed", "connection closed");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let mut audit = ConnectionAudit::new(&context, &identity, &origin);

    let handshake_timeout = Timeouts::of(&context.config.limits).handshake;
    let (first_bytes, classified) = match read_first_bytes(&mut client, handshake_timeout).await {
        Ok(read) => read,
        Err((reason, bytes_read)) => {
            audit.bytes_from_client = bytes_read as u64;
            return reject(&context, &identity, &origin, &reason, audit);
        }
    };
    // What was read so far counts even if the connection goes no further.
    audit.bytes_from_client = first_bytes.len() as u64;
    match classified {
        // Intercepted ports carry TLS: tunneling anything else (plaintext, an SSLv2-style hello,
        // an alert or ChangeCipherSpec before the hello) would let any protocol past Warden.
        Classified::NotTls => reject(&context, &identity, &origin, NOT_A_CLIENT_HELLO, audit),
        Classified::ClientHello {
            server_name: None, ..
        } => reject(
            &context,
            &identity,
            &origin,
            "TLS ClientHello has no server name",
            audit,
        ),
        Classified::ClientHello {
            server_name: Some(name),
            ..
        } if context.config.is_intercepted_host(&name) => {
            audit.server_name = Some(name.clone());
            let client = PrefixedStream::new(first_bytes, client);
            intercept(&context, identity, &origin, client, name, shutdown, audit).await
        }
        Classified::ClientHello {
            server_name: Some(name),
            alpn,
        } => {
            let why = Tunneled {
                reason: "server name not intercepted",
                server_name: Some(name),
                alpn: (!alpn.is_empty()).then(|| alpn.join(",")),
            };
            tunnel(
                &context,
                &identity,
                &origin,
                client,
                first_bytes,
                why,
                audit,
            )
            .await
        }
        Classified::Malformed(what) => reject(
            &context,
            &identity,
            &origin,
            &format!("malformed TLS ClientHello: {what}"),
            audit,
        ),
        // read_first_bytes loops while more bytes could complete the hello.
        Classified::NeedMore => reject(
            &context,
            &identity,
            &origin,
            "incomplete ClientHello",
            audit,
        ),
    }
}

/// Reads until the first bytes say what the connection is: a complete ClientHello, or not TLS.
/// A failure says why and how many bytes had been read.
async fn read_first_bytes(
    client: &mut TcpStream,
    timeout: Duration,
) -> Result<(BytesMut, Classified), (String, usize)> {
    let mut buffer = BytesMut::with_capacity(2048);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let read = tokio::time::timeout_at(deadline, client.read_buf(&mut buffer)).await;
        match read {
            Err(_) => {
                let reason = format!(
                    "client sent no complete ClientHello within {}s ([limits] handshake_timeout_secs)",
                    timeout.as_secs()
                );
                return Err((reason, buffer.len()));
            }
            Ok(Err(error)) => {
                return Err((format!("reading from client failed: {error}"), buffer.len()))
            }
            Ok(Ok(0)) => {
                let reason = if buffer.is_empty() {
                    "client closed without sending anything"
                } else {
                    "client closed during TLS handshake (incomplete ClientHello)"
                };
                return Err((reason.to_string(), buffer.len()));
            }
            Ok(Ok(_)) => {}
        }
        match classify(&buffer) {
            Classified::NeedMore => continue,
            classified => return Ok((buffer, classified)),
        }
    }
}

fn reject(
    context: &ProxyContext,
    identity: &Identity,
    origin: &ConnectionOrigin,
    reason: &str,
    mut audit: ConnectionAudit,
) {
    Counters::bump(&context.counters.rejected);
    context.metrics.connection(Disposition::Rejected);
    identity_event!(Level::WARN, identity, destination = %origin.original_dst, reason, "connection closed");
    audit.reason = Some(reason.to_string());
    audit.disposition = Disposition::Rejected;
}

/// The connection's audit record, filled in as the connection goes and submitted when it is
/// dropped: however the connection task ends (done, rejected, cut at shutdown, panicked), the
/// record is written.
pub struct ConnectionAudit {
    writer: AuditWriter,
    pub id: String,
    identity: IdentitySnapshot,
    original_dst: String,
    pub server_name: Option<String>,
    pub disposition: Disposition,
    pub reason: Option<String>,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    /// Once the client stream is wrapped in a counter, the byte counts come from it.
    pub counts: Option<Arc<ByteCounts>>,
    started_at_us: i64,
}

impl ConnectionAudit {
    fn new(context: &ProxyContext, identity: &Identity, origin: &ConnectionOrigin) -> Self {
        ConnectionAudit {
            writer: context.audit.clone(),
            id: new_id("cn"),
            identity: IdentitySnapshot::from(identity),
            original_dst: origin.original_dst.to_string(),
            server_name: None,
            // Until a path claims it: a task that ends early leaves a rejected connection.
            disposition: Disposition::Rejected,
            reason: Some("connection ended before Warden finished with it".to_string()),
            bytes_from_client: 0,
            bytes_to_client: 0,
            counts: None,
            started_at_us: now_us(),
        }
    }
}

impl Drop for ConnectionAudit {
    fn drop(&mut self) {
        if let Some(counts) = &self.counts {
            self.bytes_from_client = counts.read();
            self.bytes_to_client = counts.written();
        }
        self.writer
            .submit(AuditRecord::Connection(ConnectionRecord {
                id: std::mem::take(&mut self.id),
                identity: std::mem::take(&mut self.identity),
                original_dst: std::mem::take(&mut self.original_dst),
                server_name: self.server_name.take(),
                disposition: self.disposition,
                reason: self.reason.take(),
                bytes_from_client: self.bytes_from_client,
                bytes_to_client: self.bytes_to_client,
                started_at_us: self.started_at_us,
                ended_at_us: now_us(),
            }));
    }
}

/// Why a connection is tunneled, and what its ClientHello (if any) offered.
struct Tunneled {
    reason: &'static str,
    server_name: Option<String>,
    /// The ALPN protocols, comma-joined; None when the client offered none.
    alpn: Option<String>,
}

async fn tunnel(
    context: &ProxyContext,
    identity: &Identity,
    origin: &ConnectionOrigin,
    mut client: TcpStream,
    first_bytes: BytesMut,
    why: Tunneled,
    mut audit: ConnectionAudit,
) {
    audit.server_name = why.server_name.clone();
    let started = Instant::now();
    let destination = origin.original_dst;
    let mut server =
        match tokio::time::timeout(TUNNEL_CONNECT_TIMEOUT, TcpStream::connect(destination)).await {
            Ok(Ok(server)) => server,
            Ok(Err(error)) => {
                return reject(
                    context,
                    identity,
                    origin,
                    &format!("tunnel to {destination} failed: {error}"),
                    audit,
                )
            }
            Err(_) => {
                return reject(
                    context,
                    identity,
                    origin,
                    &format!("tunnel to {destination} timed out"),
                    audit,
                )
            }
        };
    Counters::bump(&context.counters.tunneled);
    context.metrics.connection(Disposition::Tunneled);
    audit.disposition = Disposition::Tunneled;
    audit.reason = Some(why.reason.to_string());
    let _ = server.set_nodelay(true);
    let mut client = CountingStream::new(PrefixedStream::new(first_bytes, &mut client));
    audit.counts = Some(client.counts());
    let result = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    let error = result.err().map(|error| error.to_string());
    identity_event!(
        Level::INFO,
        identity,
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

async fn intercept(
    context: &Arc<ProxyContext>,
    identity: Arc<Identity>,
    origin: &ConnectionOrigin,
    client: PrefixedStream<TcpStream>,
    server_name: String,
    mut shutdown: watch::Receiver<bool>,
    mut audit: ConnectionAudit,
) {
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
                context,
                &identity,
                origin,
                &format!("TLS handshake with client failed: {error}"),
                audit,
            )
        }
        Err(_) => {
            return reject(
                context,
                &identity,
                origin,
                "TLS handshake with client timed out",
                audit,
            )
        }
    };
    Counters::bump(&context.counters.intercepted);
    context.metrics.connection(Disposition::Intercepted);
    audit.disposition = Disposition::Intercepted;
    audit.reason = None;
    let info = Arc::new(ConnectionInfo {
        context: context.clone(),
        identity: identity.clone(),
        server_name,
        destination_port: origin.original_dst.port(),
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
        identity_event!(Level::DEBUG, &identity, %error, "intercepted connection ended with an error");
    }
    let result = result.as_ref().map(|_| ()).map_err(|error| &**error as _);
    audit.reason = closed_by_warden.or_else(|| Some(close_reason::closed(result, shutting_down)));
}
