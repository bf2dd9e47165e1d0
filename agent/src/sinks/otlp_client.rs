//! One kept-alive HTTP/1.1 connection to an OTLP receiver (plain or TLS), re-made when it breaks.
use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls;

/// Connect, send and read the whole answer within this.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// An export response is a small protobuf (or an error text).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting: {0}")]
    Connect(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("reading the response: {0}")]
    Body(String),
    #[error("no answer within {EXPORT_TIMEOUT:?}")]
    Timeout,
}

pub struct OtlpClient {
    host: String,
    port: u16,
    /// Some for https endpoints.
    tls: Option<Arc<ClientConfig>>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl OtlpClient {
    /// For `endpoint`'s scheme, host and port; https trusts the system roots plus `ca_file`.
    pub fn new(
        endpoint: &Uri,
        ca_file: Option<&std::path::Path>,
    ) -> Result<OtlpClient, tls::TlsError> {
        let https = endpoint.scheme_str() == Some("https");
        let host = endpoint
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = endpoint.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            Some(tls::upstream_client_config(ca_file)?)
        } else {
            None
        };
        Ok(OtlpClient {
            host,
            port,
            tls,
            sender: None,
        })
    }

    /// Sends one request on the kept connection (or a new one) and reads the whole response.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, ClientError> {
        tokio::time::timeout(EXPORT_TIMEOUT, self.exchange(request))
            .await
            .unwrap_or(Err(ClientError::Timeout))
            .inspect_err(|_| self.sender = None)
    }

    async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, ClientError> {
        let reusable = self
            .sender
            .as_mut()
            .is_some_and(|sender| !sender.is_closed());
        if !reusable {
            self.sender = Some(self.connect().await?);
        }
        let Some(sender) = self.sender.as_mut() else {
            unreachable!("a sender was just set");
        };
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| ClientError::Body(e.to_string()))?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(ClientError::Connect)?;
        tcp.set_nodelay(true).map_err(ClientError::Connect)?;
        match &self.tls {
            None => handshake(tcp).await,
            Some(config) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|_| {
                    ClientError::Connect(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{:?} is not a TLS server name", self.host),
                    ))
                })?;
                let stream = TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(ClientError::Connect)?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends when the sender is dropped or the peer closes.
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "OTLP connection ended");
        }
    });
    Ok(sender)
}
