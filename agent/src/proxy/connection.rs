//! One redirected connection: claim its origin, attribute it, classify what it says, then
//! intercept, refuse or tunnel it.
mod audit;
mod first_words;
mod intercept;
mod plaintext;
mod proxy_connect;
mod tunnel;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use tokio::{io::AsyncReadExt, net::TcpStream, sync::watch};
use tracing::Level;

use super::http_server::Timeouts;

use super::{
    client_hello::{classify, Classified},
    counters::Counters,
    http_head::RequestHead,
    prefixed::PrefixedStream,
    ProxyContext,
};
use crate::{
    audit::record::Disposition, ebpf::origin::ConnectionOrigin, identity::Identity, identity_event,
};
pub use audit::ConnectionAudit;
use first_words::{FirstWords, Said};
use tunnel::{Server, Tunneled};

/// Why a connection whose first bytes are not a TLS handshake record is refused.
const NOT_A_CLIENT_HELLO: &str = "not a TLS ClientHello (refused on an intercepted port)";
const NO_SERVER_NAME: &str = "TLS ClientHello has no server name";

/// Who a connection is from and where it was going: what every path of it records and logs.
pub struct Attributed<'a> {
    pub context: &'a Arc<ProxyContext>,
    pub identity: &'a Arc<Identity>,
    pub origin: &'a ConnectionOrigin,
}

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
    let identity = match context.identities.cached(&origin) {
        Some(identity) => Ok(identity),
        None => {
            // A cache miss reads procfs, may ask NSS for a user name and, for an exited
            // process, walk cgroupfs: keep that off the async workers.
            let resolver = context.clone();
            let captured = origin.clone();
            tokio::task::spawn_blocking(move || resolver.identities.resolve(&captured)).await
        }
    };
    let identity = match identity {
        Ok(identity) => identity,
        Err(error) => {
            Counters::bump(&context.counters.rejected);
            context.metrics.connection(Disposition::Rejected);
            tracing::error!(%error, %peer, reason = "identity resolution failed", "connection closed");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let at = Attributed {
        context: &context,
        identity: &identity,
        origin: &origin,
    };
    let mut audit = ConnectionAudit::new(&context, &identity, &origin);
    let destination = origin.original_dst;
    if is_own_listener(&context, destination) {
        // Under intercept_ports = "all" a selected process may connect to Warden's own port:
        // tunneling that back to the listener would only come back again.
        let reason = "destination is Warden's own listener";
        return reject(&at, reason, audit);
    }

    let first = if context.config.proxy.is_tls_port(destination.port()) {
        let timeout = Timeouts::of(&context.config.limits).handshake;
        read_client_hello(&mut client, BytesMut::with_capacity(2048), timeout)
            .await
            .map(|(bytes, classified)| FirstWords::Client {
                bytes,
                said: Said::Tls(classified),
                server: Server::Connect,
            })
    } else {
        let may_connect = tunnel::refusal_to_tunnel(&at).is_none();
        first_words::listen(&mut client, BytesMut::new(), None, destination, may_connect).await
    };
    match first {
        Err((reason, bytes_read)) => {
            audit.bytes_from_client = bytes_read as u64;
            reject(&at, &reason, audit)
        }
        Ok(FirstWords::Server { server, bytes }) => {
            let why = Tunneled::because("the server spoke first");
            let server = Server::Connected(server, bytes);
            tunnel::tunnel(&at, client, BytesMut::new(), server, why, audit).await
        }
        Ok(FirstWords::Client {
            bytes,
            said,
            server,
        }) => {
            // What was read so far counts even if the connection goes no further.
            audit.bytes_from_client = bytes.len() as u64;
            let first = First {
                bytes,
                said,
                server,
            };
            on_first_words(&at, client, first, shutdown, audit).await
        }
    }
}

/// A connection's first words, and its server if Warden connected already.
struct First {
    bytes: BytesMut,
    said: Said,
    server: Server,
}

async fn on_first_words(
    at: &Attributed<'_>,
    mut client: TcpStream,
    first: First,
    shutdown: watch::Receiver<bool>,
    mut audit: ConnectionAudit,
) {
    let First {
        bytes,
        said,
        server,
    } = first;
    let context = at.context;
    match said {
        // TLS-only ports carry TLS: tunneling anything else (plaintext, an SSLv2-style hello,
        // an alert or ChangeCipherSpec before the hello) would let any protocol past Warden.
        Said::Tls(Classified::NotTls) => reject(at, NOT_A_CLIENT_HELLO, audit),
        Said::Tls(Classified::ClientHello {
            server_name: None, ..
        }) => reject(at, NO_SERVER_NAME, audit),
        Said::Tls(Classified::ClientHello {
            server_name: Some(name),
            ..
        }) if context.config.is_intercepted_host(&name) => {
            // The workload resolved this host to this address: no tunnel may reach it now.
            context.learned.learn(at.origin.original_dst.ip(), &name);
            audit.server_name = Some(name.clone());
            let client = PrefixedStream::new(bytes, client);
            let port = at.origin.original_dst.port();
            intercept::intercept(at, client, name, port, shutdown, audit).await
        }
        Said::Tls(Classified::ClientHello {
            server_name: Some(name),
            alpn,
        }) => {
            let why = Tunneled {
                reason: "server name not intercepted",
                server_name: Some(name),
                alpn: (!alpn.is_empty()).then(|| alpn.join(",")),
            };
            tunnel::tunnel(at, client, bytes, server, why, audit).await
        }
        Said::Tls(Classified::Malformed(what)) => {
            reject(at, &format!("malformed TLS ClientHello: {what}"), audit)
        }
        // read_client_hello loops while more bytes could complete the hello.
        Said::Tls(Classified::NeedMore) => reject(at, "incomplete ClientHello", audit),
        Said::MalformedHttp(what) => {
            reject(at, &format!("malformed HTTP request head: {what}"), audit)
        }
        Said::Http(head) => match (&head.connect, intercepted_host_named(at, &head)) {
            (Some(authority), Some(host)) => {
                audit.server_name = Some(host);
                let authority = authority.clone();
                proxy_connect::answer_and_intercept(
                    at, client, bytes, &head, authority, shutdown, audit,
                )
                .await
            }
            (Some(_), None) => {
                proxy_connect::through_proxy(at, client, bytes, head, server, shutdown, audit).await
            }
            (None, Some(host)) => plaintext::refuse(at, &mut client, &host, audit).await,
            (None, None) => {
                let why = Tunneled::because("plaintext HTTP to a host not intercepted");
                tunnel::tunnel(at, client, bytes, server, why, audit).await
            }
        },
        Said::Other => {
            let why = Tunneled::because("neither TLS nor HTTP");
            tunnel::tunnel(at, client, bytes, server, why, audit).await
        }
    }
}

/// The intercepted host a plaintext request or CONNECT names, if any: by name, or by an address
/// an intercepted host is known at.
fn intercepted_host_named(at: &Attributed<'_>, head: &RequestHead) -> Option<String> {
    head.hosts.iter().find_map(|host| {
        if at.context.config.is_intercepted_host(host) {
            return Some(host.clone());
        }
        let ip = host.parse().ok()?;
        at.context.learned.host_at(ip)
    })
}

fn is_own_listener(context: &ProxyContext, destination: SocketAddr) -> bool {
    destination.port() == context.config.proxy.listen_port
        && (destination.ip().is_loopback() || destination.ip().is_unspecified())
}

/// Reads (after the bytes already in `buffer`) until they say what the connection is: a
/// complete ClientHello, or not TLS. A failure says why and how many bytes had been read.
async fn read_client_hello(
    client: &mut TcpStream,
    mut buffer: BytesMut,
    timeout: Duration,
) -> Result<(BytesMut, Classified), (String, usize)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match classify(&buffer) {
            Classified::NeedMore => {}
            classified => return Ok((buffer, classified)),
        }
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
    }
}

fn reject(at: &Attributed<'_>, reason: &str, mut audit: ConnectionAudit) {
    Counters::bump(&at.context.counters.rejected);
    at.context.metrics.connection(Disposition::Rejected);
    identity_event!(Level::WARN, at.identity, destination = %at.origin.original_dst, reason, "connection closed");
    audit.reason = Some(reason.to_string());
    audit.disposition = Disposition::Rejected;
}
