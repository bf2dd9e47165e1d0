//! What a connection says first: a ClientHello, an HTTP request head, something else, or nothing
//! while its server speaks first (SSH, SMTP, MySQL).
//!
//! On a port that is not TLS-only the client may be a protocol whose server talks first. Warden
//! waits [`QUIET_BEFORE_CONNECT`] for the client; if it is still silent, Warden connects to the
//! original destination and relays whoever speaks first: the server's greeting makes the
//! connection a tunnel, the client's bytes are classified as if the wait had not happened.
use std::{net::SocketAddr, time::Duration};

use bytes::BytesMut;
use tokio::{io::AsyncReadExt, net::TcpStream};

use super::tunnel;
use crate::proxy::{
    client_hello::{self, Classified},
    http_head::{self, Head, RequestHead},
};

/// How long a silent client is waited for before Warden connects to the destination in case its
/// server speaks first. Short: a server-speaks-first protocol waits this long for its greeting.
pub const QUIET_BEFORE_CONNECT: Duration = Duration::from_millis(250);
/// How long a client may take to say enough to be classified.
pub const FIRST_WORDS_TIMEOUT: Duration = Duration::from_secs(30);

/// What the client's first bytes are.
#[derive(Debug)]
pub enum Said {
    /// A TLS record: a complete ClientHello, malformed, or (on a TLS-only port) not TLS at all.
    Tls(Classified),
    Http(RequestHead),
    /// Starts like an HTTP request but breaks its grammar.
    MalformedHttp(&'static str),
    /// Neither TLS nor HTTP.
    Other,
}

/// Names `buf`, or None while more bytes could change the answer.
pub fn said(buf: &[u8]) -> Option<Said> {
    match buf.first()? {
        0x16 => match client_hello::classify(buf) {
            Classified::NeedMore => None,
            Classified::NotTls => Some(Said::Other),
            classified => Some(Said::Tls(classified)),
        },
        _ => match http_head::parse(buf) {
            Head::NeedMore => None,
            Head::NotHttp => Some(Said::Other),
            Head::Malformed(what) => Some(Said::MalformedHttp(what)),
            Head::Request(head) => Some(Said::Http(head)),
        },
    }
}

pub enum FirstWords {
    /// The client spoke: its bytes, what they are, and the server if Warden connected already.
    Client {
        bytes: BytesMut,
        said: Said,
        server: tunnel::Server,
    },
    /// The server spoke first (the client is silent): a tunnel, with the server's first bytes.
    Server { server: TcpStream, bytes: BytesMut },
}

/// Waits for the first words on `client` (after the bytes already in `buffer`). `server` is the
/// destination's connection when there is one already (a proxy's tunnel); otherwise, when
/// `may_connect`, Warden connects to `destination` once the client has been quiet a while.
/// A failure says why and how many client bytes had been read.
pub async fn listen(
    client: &mut TcpStream,
    mut buffer: BytesMut,
    server: Option<TcpStream>,
    destination: SocketAddr,
    may_connect: bool,
) -> Result<FirstWords, (String, usize)> {
    let mut server = server;
    // A destination that cannot be reached while the client is quiet is not the client's
    // answer: it may still speak (its request could be one Warden refuses or answers itself).
    let mut may_connect = may_connect;
    let mut server_bytes = BytesMut::new();
    let deadline = tokio::time::Instant::now() + FIRST_WORDS_TIMEOUT;
    let quiet = tokio::time::sleep(QUIET_BEFORE_CONNECT);
    tokio::pin!(quiet);
    loop {
        if let Some(said) = said(&buffer) {
            let server = match server {
                Some(server) => tunnel::Server::Connected(server, server_bytes),
                None => tunnel::Server::Connect,
            };
            return Ok(FirstWords::Client {
                bytes: buffer,
                said,
                server,
            });
        }
        let silent = buffer.is_empty();
        let waiting_to_connect = silent && may_connect && server.is_none();
        let server_read = async {
            match server.as_mut() {
                // Only a server that speaks before the client does decides anything.
                Some(server) if silent => server.read_buf(&mut server_bytes).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            read = client.read_buf(&mut buffer) => match read {
                Ok(0) if buffer.is_empty() => {
                    return Err(("client closed without sending anything".into(), 0))
                }
                Ok(0) => {
                    let reason = "client closed before its first bytes could be classified";
                    return Err((reason.into(), buffer.len()));
                }
                Ok(_) => {}
                Err(error) => {
                    return Err((format!("reading from client failed: {error}"), buffer.len()))
                }
            },
            read = server_read => match read {
                Ok(0) => return Err(("server closed before anyone spoke".into(), 0)),
                Ok(_) => {
                    let server = server.take().expect("the server read only runs with a server");
                    return Ok(FirstWords::Server { server, bytes: server_bytes });
                }
                Err(error) => {
                    return Err((format!("reading from {destination} failed: {error}"), 0))
                }
            },
            _ = &mut quiet, if waiting_to_connect => {
                match tunnel::connect(destination).await {
                    Ok(connected) => server = Some(connected),
                    Err(reason) => {
                        tracing::debug!(%destination, reason, "early connect failed; waiting for the client");
                        may_connect = false;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let reason = format!(
                    "client said nothing classifiable within {}s",
                    FIRST_WORDS_TIMEOUT.as_secs()
                );
                return Err((reason, buffer.len()));
            }
        }
    }
}
