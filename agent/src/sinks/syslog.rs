//! The `syslog` sink kind: RFC 5424 messages over UDP, TCP, TLS or a unix datagram socket.
//!
//! Streams (tcp, tls) carry octet-counted frames and count as delivered once the whole batch is
//! written and flushed; a broken or closed connection is dropped and the batch is Retryable (the
//! next attempt reconnects). Datagrams (udp, unix) are one message each; for udp a successful send
//! is all the assurance there is.
use std::{sync::Arc, time::Duration};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket, UnixDatagram},
};
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::{
    event::DeliveryFuture,
    host_name::host_name,
    syslog_format::{self, Header},
    DeliveryError, SinkEvent, Transport,
};
use crate::{
    config::sink_syslog::{split_host_port, SyslogSinkConfig, SyslogTransportKind},
    tls,
};

/// Connecting (TCP, and the TLS handshake) must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A receiver that takes no bytes for this long is treated as down.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("TLS trust for the syslog sink: {0}")]
    Trust(#[from] tls::TlsError),
}

enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixDatagram),
}

pub struct SyslogTransport {
    config: SyslogSinkConfig,
    header: Header,
    tls: Option<Arc<ClientConfig>>,
    connection: Option<Connection>,
}

impl SyslogTransport {
    /// Checks the keys and loads the TLS trust (a bad `ca_file` fails here, at start-up);
    /// connects on the first delivery.
    pub fn new(config: &SyslogSinkConfig) -> Result<SyslogTransport, SyslogError> {
        config
            .validate()
            .map_err(|(key, reason)| SyslogError::Invalid { key, reason })?;
        let clear_text = matches!(
            config.transport,
            SyslogTransportKind::Udp | SyslogTransportKind::Tcp
        );
        if clear_text
            && !split_host_port(&config.address).is_some_and(|(host, _)| is_loopback(host))
        {
            tracing::warn!(
                address = config.address,
                transport = config.transport.as_str(),
                "the syslog sink sends records in clear text to a host that is not this one; use transport = \"tls\""
            );
        }
        let tls = match config.transport {
            SyslogTransportKind::Tls => {
                let upstream = tls::upstream_client_config(config.ca_file.as_deref())?;
                let mut client = ClientConfig::clone(&upstream);
                // RFC 5425 names no ALPN protocol; offering http/1.1 would be a lie.
                client.alpn_protocols.clear();
                Some(Arc::new(client))
            }
            _ => None,
        };
        Ok(SyslogTransport {
            header: Header::new(config.facility_code(), &host_name(), &config.app_name),
            config: config.clone(),
            tls,
            connection: None,
        })
    }

    async fn send(&mut self, batch: &[SinkEvent]) -> Result<(), DeliveryError> {
        if let Some(connection) = &mut self.connection {
            if peer_closed(connection).await {
                tracing::info!(
                    address = self.config.address,
                    "the syslog receiver closed the connection; reconnecting"
                );
                self.connection = None;
            }
        }
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.connect().await.map_err(|error| {
                DeliveryError::Retryable(format!(
                    "connecting to syslog receiver {} ({}): {error}",
                    self.config.address,
                    self.config.transport.as_str()
                ))
            })?,
        };
        let messages = batch
            .iter()
            .map(|event| syslog_format::message(&self.header, event));
        let max = self.config.max_message_bytes;
        let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
            match &mut connection {
                Connection::Tcp(stream) => write_frames(stream, messages).await,
                Connection::Tls(stream) => write_frames(stream.as_mut(), messages).await,
                Connection::Udp(socket) => {
                    for message in messages {
                        socket.send(syslog_format::datagram(&message, max)).await?;
                    }
                    Ok(())
                }
                Connection::Unix(socket) => {
                    for message in messages {
                        socket.send(syslog_format::datagram(&message, max)).await?;
                    }
                    Ok(())
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no progress within {WRITE_TIMEOUT:?}"),
            ))
        });
        match sent {
            Ok(()) => {
                self.connection = Some(connection);
                Ok(())
            }
            // A half-written stream cannot be resumed: the connection is dropped and the next
            // attempt starts a new one.
            Err(error) => Err(DeliveryError::Retryable(format!(
                "sending to syslog receiver {} ({}): {error}",
                self.config.address,
                self.config.transport.as_str()
            ))),
        }
    }

    async fn connect(&self) -> std::io::Result<Connection> {
        let address = self.config.address.as_str();
        let connecting = async {
            match self.config.transport {
                SyslogTransportKind::Unix => {
                    let socket = UnixDatagram::unbound()?;
                    socket.connect(address)?;
                    Ok(Connection::Unix(socket))
                }
                SyslogTransportKind::Udp => {
                    let target = tokio::net::lookup_host(host_port(address)?)
                        .await?
                        .next()
                        .ok_or_else(|| not_found(address))?;
                    let local = if target.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    let socket = UdpSocket::bind(local).await?;
                    // Connected, so an ICMP port unreachable surfaces as an error on a later send.
                    socket.connect(target).await?;
                    Ok(Connection::Udp(socket))
                }
                SyslogTransportKind::Tcp => {
                    let stream = TcpStream::connect(host_port(address)?).await?;
                    stream.set_nodelay(true)?;
                    Ok(Connection::Tcp(stream))
                }
                SyslogTransportKind::Tls => {
                    let (host, port) = host_port(address)?;
                    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("{host:?} is not a TLS server name"),
                        )
                    })?;
                    let stream = TcpStream::connect((host, port)).await?;
                    stream.set_nodelay(true)?;
                    let tls = self.tls.clone().ok_or_else(|| not_found("TLS config"))?;
                    let stream = TlsConnector::from(tls).connect(name, stream).await?;
                    Ok(Connection::Tls(Box::new(stream)))
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {CONNECT_TIMEOUT:?}"),
                ))
            })
    }
}

impl Transport for SyslogTransport {
    fn kind(&self) -> &'static str {
        "syslog"
    }

    fn deliver<'a>(&'a mut self, batch: &'a [SinkEvent]) -> DeliveryFuture<'a> {
        Box::pin(self.send(batch))
    }
}

/// The whole batch in one buffer, written and flushed (TLS records are only sent on flush).
async fn write_frames<S>(
    stream: &mut S,
    messages: impl Iterator<Item = String>,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let mut frames = Vec::new();
    for message in messages {
        frames.extend(syslog_format::octet_counted(&message));
    }
    stream.write_all(&frames).await?;
    stream.flush().await
}

/// A syslog receiver never talks back on a stream, so anything readable now means the peer has
/// closed (EOF), reset, or broken the protocol. Checked before each batch because a write to a
/// socket the peer already closed still succeeds once, and that batch would be lost.
async fn peer_closed(connection: &mut Connection) -> bool {
    match connection {
        Connection::Tcp(stream) => readable_now(stream).await,
        Connection::Tls(stream) => readable_now(stream.as_mut()).await,
        Connection::Udp(_) | Connection::Unix(_) => false,
    }
}

/// One poll of a read: pending means the connection is idle and alive.
async fn readable_now<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut scratch = [0u8; 512];
    // timeout polls the read once before it looks at the (already expired) deadline.
    match tokio::time::timeout(Duration::ZERO, stream.read(&mut scratch)).await {
        Err(_pending) => false,
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_unexpected)) => true,
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host_port(address: &str) -> std::io::Result<(&str, u16)> {
    split_host_port(address).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{address:?} is not host:port"),
        )
    })
}

fn not_found(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{what}: no address found"),
    )
}
