//! A proxy `CONNECT` (HTTPS_PROXY): to an intercepted host Warden answers it itself and
//! intercepts the TLS inside; to any other host the real proxy answers, and what the tunnel
//! says first is read before it is relayed, so a ClientHello for an intercepted host inside a
//! tunnel to a host that is not (an IP literal, a front) is intercepted all the same.
use std::time::Duration;

use bytes::BytesMut;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};

use super::super::http_server::Timeouts;
use super::{
    audit::ConnectionAudit,
    first_words::{self, FirstWords, Said},
    intercept::intercept,
    intercepted_host_named, plaintext, read_client_hello, reject,
    tunnel::{self, Server, Tunneled},
    Attributed, NO_SERVER_NAME,
};
use crate::{
    audit::record::Disposition,
    proxy::{
        client_hello::Classified,
        counters::Counters,
        http_head::{Authority, RequestHead, MAX_HEAD},
        prefixed::PrefixedStream,
    },
};

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
/// How long the real proxy may take to answer a CONNECT, and to send a refusal's body.
const PROXY_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A CONNECT to an intercepted host: Warden is the proxy. The tunnel must carry a ClientHello
/// for an intercepted host, which is intercepted as if it had come directly.
pub async fn answer_and_intercept(
    at: &Attributed<'_>,
    mut client: TcpStream,
    mut bytes: BytesMut,
    head: &RequestHead,
    authority: Authority,
    shutdown: watch::Receiver<bool>,
    audit: ConnectionAudit,
) {
    let inner = bytes.split_off(head.len);
    if let Err(error) = client.write_all(ESTABLISHED).await {
        return reject(at, &format!("answering CONNECT failed: {error}"), audit);
    }
    let timeout = Timeouts::of(&at.context.config.limits).handshake;
    let (inner, classified) = match read_client_hello(&mut client, inner, timeout).await {
        Ok(read) => read,
        Err((reason, _)) => return reject(at, &format!("in CONNECT tunnel: {reason}"), audit),
    };
    let host = &authority.host;
    match classified {
        Classified::ClientHello {
            server_name: Some(name),
            ..
        } if at.context.config.is_intercepted_host(&name) => {
            let client = PrefixedStream::new(inner, client);
            intercept(at, client, name, authority.port, shutdown, audit).await
        }
        Classified::ClientHello {
            server_name: Some(name),
            ..
        } => {
            let reason = format!(
                "in CONNECT tunnel to intercepted host {host}: TLS for {name}, which is not intercepted"
            );
            reject(at, &reason, audit)
        }
        Classified::ClientHello {
            server_name: None, ..
        } => reject(
            at,
            &format!("in CONNECT tunnel to {host}: {NO_SERVER_NAME}"),
            audit,
        ),
        Classified::Malformed(what) => reject(
            at,
            &format!("in CONNECT tunnel to {host}: malformed TLS ClientHello: {what}"),
            audit,
        ),
        Classified::NotTls | Classified::NeedMore => reject(
            at,
            &format!("in CONNECT tunnel to intercepted host {host}: not a TLS ClientHello"),
            audit,
        ),
    }
}

/// A CONNECT to a host that is not intercepted: relayed to the real proxy (the original
/// destination). Once the proxy has opened the tunnel, its first words decide as on a direct
/// connection: a ClientHello for an intercepted host is intercepted here (the proxy's tunnel is
/// dropped unused), anything else is relayed untouched. A proxy that refuses the CONNECT has its
/// answer relayed and the connection closed, so that every CONNECT on a connection is read.
pub async fn through_proxy(
    at: &Attributed<'_>,
    mut client: TcpStream,
    mut bytes: BytesMut,
    head: RequestHead,
    server: Server,
    shutdown: watch::Receiver<bool>,
    mut audit: ConnectionAudit,
) {
    if let Some(reason) = tunnel::refusal_to_tunnel(at) {
        return reject(at, &reason, audit);
    }
    let inner = bytes.split_off(head.len);
    let mut proxy = match server {
        Server::Connected(proxy, said) if said.is_empty() => proxy,
        Server::Connected(..) => {
            return reject(at, "proxy spoke before the client's CONNECT", audit);
        }
        Server::Connect => match tunnel::connect(at.origin.original_dst).await {
            Ok(proxy) => proxy,
            Err(reason) => return reject(at, &reason, audit),
        },
    };
    let answer = match ask_proxy(&mut proxy, &bytes).await {
        Ok(answer) => answer,
        Err(reason) => return reject(at, &reason, audit),
    };
    if let Err(error) = client.write_all(&answer.head).await {
        return reject(
            at,
            &format!("relaying the proxy's answer failed: {error}"),
            audit,
        );
    }
    if !(200..300).contains(&answer.status) {
        Counters::bump(&at.context.counters.tunneled);
        at.context.metrics.connection(Disposition::Tunneled);
        audit.disposition = Disposition::Tunneled;
        audit.reason = Some(format!(
            "proxy answered CONNECT with {}; closed after the answer",
            answer.status
        ));
        relay_refusal_body(&mut proxy, &mut client, answer).await;
        return;
    }
    let destination = at.origin.original_dst;
    let (first, pipelined) = if answer.after.is_empty() {
        let first = first_words::listen(&mut client, inner, Some(proxy), destination, false);
        (first.await, BytesMut::new())
    } else {
        // The destination behind the proxy spoke first; what the client sent on is relayed.
        let server_first = FirstWords::Server {
            server: proxy,
            bytes: answer.after,
        };
        (Ok(server_first), inner)
    };
    let host = head.connect.as_ref().map(|a| a.host.clone());
    match first {
        Err((reason, _)) => reject(at, &format!("in CONNECT tunnel: {reason}"), audit),
        Ok(FirstWords::Server { server, bytes }) => {
            let why = Tunneled::because("CONNECT through a proxy; the server spoke first");
            let server = Server::Connected(server, bytes);
            tunnel::tunnel(at, client, pipelined, server, why, audit).await
        }
        Ok(FirstWords::Client {
            bytes,
            said,
            server,
        }) => match said {
            Said::Tls(Classified::ClientHello {
                server_name: Some(name),
                ..
            }) if at.context.config.is_intercepted_host(&name) => {
                drop(server);
                audit.server_name = Some(name.clone());
                let client = PrefixedStream::new(bytes, client);
                let port = head.connect.as_ref().map_or(443, |a| a.port);
                intercept(at, client, name, port, shutdown, audit).await
            }
            Said::Tls(Classified::ClientHello {
                server_name: None, ..
            }) => reject(at, &format!("in CONNECT tunnel: {NO_SERVER_NAME}"), audit),
            Said::Tls(Classified::Malformed(what)) => reject(
                at,
                &format!("in CONNECT tunnel: malformed TLS ClientHello: {what}"),
                audit,
            ),
            Said::MalformedHttp(what) => reject(
                at,
                &format!("in CONNECT tunnel: malformed HTTP request head: {what}"),
                audit,
            ),
            Said::Http(inner_head) if intercepted_host_named(at, &inner_head).is_some() => {
                let named = intercepted_host_named(at, &inner_head).unwrap_or_default();
                plaintext::refuse(at, &mut client, &named, audit).await
            }
            Said::Tls(Classified::ClientHello { server_name, alpn }) => {
                let why = Tunneled {
                    reason: "CONNECT through a proxy; server name not intercepted",
                    server_name: server_name.or(host),
                    alpn: (!alpn.is_empty()).then(|| alpn.join(",")),
                };
                tunnel::tunnel(at, client, bytes, server, why, audit).await
            }
            Said::Tls(_) | Said::Http(_) | Said::Other => {
                let why = Tunneled {
                    reason: "CONNECT through a proxy to a host not intercepted",
                    server_name: host,
                    alpn: None,
                };
                tunnel::tunnel(at, client, bytes, server, why, audit).await
            }
        },
    }
}

/// The proxy's answer to a CONNECT: its status, its head, and the bytes read after the head.
struct ProxyAnswer {
    status: u16,
    head: BytesMut,
    after: BytesMut,
    content_length: Option<u64>,
}

async fn ask_proxy(proxy: &mut TcpStream, request: &[u8]) -> Result<ProxyAnswer, String> {
    let at = proxy
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    proxy
        .write_all(request)
        .await
        .map_err(|error| format!("sending CONNECT to proxy {at} failed: {error}"))?;
    let mut buffer = BytesMut::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + PROXY_ANSWER_TIMEOUT;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buffer) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                let content_length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
                let after = buffer.split_off(len);
                return Ok(ProxyAnswer {
                    status,
                    head: buffer,
                    after,
                    content_length,
                });
            }
            Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(format!("proxy {at} answered CONNECT with an overlong head"))
            }
            Err(error) => {
                return Err(format!(
                    "proxy {at} answered CONNECT with no HTTP response: {error}"
                ))
            }
        }
        match tokio::time::timeout_at(deadline, proxy.read_buf(&mut buffer)).await {
            Ok(Ok(0)) => return Err(format!("proxy {at} closed without answering CONNECT")),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(format!("reading from proxy {at} failed: {error}")),
            Err(_) => return Err(format!("proxy {at} did not answer CONNECT in time")),
        }
    }
}

/// Relays the body of a proxy's refusal (its Content-Length, or up to the proxy closing).
async fn relay_refusal_body(proxy: &mut TcpStream, client: &mut TcpStream, answer: ProxyAnswer) {
    let mut left = answer.content_length.unwrap_or(u64::MAX);
    let first = answer
        .after
        .len()
        .min(usize::try_from(left).unwrap_or(usize::MAX));
    if client.write_all(&answer.after[..first]).await.is_err() {
        return;
    }
    left = left.saturating_sub(first as u64);
    let deadline = tokio::time::Instant::now() + PROXY_ANSWER_TIMEOUT;
    let mut buffer = vec![0u8; 16 * 1024];
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        match tokio::time::timeout_at(deadline, proxy.read(&mut buffer[..want])).await {
            Ok(Ok(n)) if n > 0 => {
                if client.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
                left -= n as u64;
            }
            _ => return,
        }
    }
    let _ = client.shutdown().await;
}
