//! The pooled HTTPS client that carries intercepted requests to the real host or its override.
//!
//! One hyper-util client for all hosts: connections are pooled per host. The connector decides
//! where a host's connection goes (an `[[upstream.override]]` address, else DNS) and which roots it
//! trusts (system roots, plus the override's `ca_file`), and speaks HTTP/1.1 (never h2: see `tls::upstream`).
use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::{
    client::legacy::{
        connect::{Connected, Connection},
        Client,
    },
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};

use crate::{config::Config, tls};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

pub type UpstreamBody = UnsyncBoxBody<Bytes, hyper::Error>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream override for {host}: {source}")]
    OverrideTrust {
        host: String,
        #[source]
        source: tls::TlsError,
    },
    #[error("upstream trust: {0}")]
    Trust(#[source] tls::TlsError),
}

/// The HTTP client of the intercepted path.
#[derive(Clone)]
pub struct Upstream {
    client: Client<UpstreamConnector, UpstreamBody>,
}

impl Upstream {
    /// Builds the trust for every upstream once, at startup: a bad `ca_file` fails here, not on the
    /// first request.
    pub fn new(config: &Config) -> Result<Upstream, UpstreamError> {
        let default_tls = tls::upstream_client_config(None).map_err(UpstreamError::Trust)?;
        let mut overrides = HashMap::new();
        for entry in &config.upstream.overrides {
            let tls = match &entry.ca_file {
                Some(ca_file) => tls::upstream_client_config(Some(ca_file)).map_err(|source| {
                    UpstreamError::OverrideTrust {
                        host: entry.host.clone(),
                        source,
                    }
                })?,
                None => default_tls.clone(),
            };
            overrides.insert(
                entry.host.to_ascii_lowercase(),
                Route {
                    address: Some(entry.address),
                    tls,
                },
            );
        }
        let connector = UpstreamConnector {
            overrides: Arc::new(overrides),
            default_tls,
        };
        // Without a timer the pool never expires idle connections.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Upstream { client })
    }

    pub async fn send(
        &self,
        request: http::Request<UpstreamBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(request).await
    }
}

#[derive(Clone)]
struct Route {
    /// None: resolve the host name.
    address: Option<SocketAddr>,
    tls: Arc<ClientConfig>,
}

#[derive(Clone)]
pub struct UpstreamConnector {
    overrides: Arc<HashMap<String, Route>>,
    default_tls: Arc<ClientConfig>,
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<UpstreamIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(443);
        let route = self.overrides.get(&host).cloned().unwrap_or_else(|| Route {
            address: None,
            tls: self.default_tls.clone(),
        });
        Box::pin(async move {
            let address = match route.address {
                Some(address) => address,
                None => tokio::net::lookup_host((host.as_str(), port))
                    .await?
                    .next()
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
                    })?,
            };
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {address} timed out"),
                    )
                })??;
            tcp.set_nodelay(true)?;
            let server_name = ServerName::try_from(host.clone()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{host:?} is not a valid server name"),
                )
            })?;
            let tls = TlsConnector::from(route.tls)
                .connect(server_name, tcp)
                .await?;
            Ok(UpstreamIo(TokioIo::new(tls)))
        })
    }
}

/// A TLS connection to an upstream (HTTP/1.1: see `tls::upstream` for why never h2).
pub struct UpstreamIo(TokioIo<TlsStream<TcpStream>>);

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
