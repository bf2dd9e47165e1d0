//! One HTTP(S) POST to a receiver Warden notifies (the approval webhook, the HTTP sinks), with its answer.
//!
//! A connection per POST (HTTP/1.1, rustls with the system roots plus an optional extra CA): the
//! receivers get a batch at a time, so a handshake per POST costs little, and no pool outlives a
//! receiver's restart.
use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

/// The most of a receiver's answer that is read (HEC's acknowledgement is a few bytes).
const ANSWER_LIMIT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("invalid URL")]
    Url,
    #[error("connecting: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] http::Error),
    #[error("TLS trust: {0}")]
    Trust(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What the receiver answered: the status and the beginning of the body.
#[derive(Debug)]
pub struct PostAnswer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Where POSTs go and how the TLS peer is trusted; built once, used for every POST.
#[derive(Clone)]
pub struct HttpPoster {
    uri: Uri,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
}

impl HttpPoster {
    /// `url` must be http:// or https:// with a host; `ca_file` adds roots to the system's.
    pub fn new(url: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<Self, PostError> {
        let uri: Uri = url.parse().map_err(|_| PostError::Url)?;
        uri.host().ok_or(PostError::Url)?;
        let tls = match uri.scheme_str() {
            Some("https") => Some(
                crate::tls::upstream_client_config(ca_file)
                    .map_err(|e| PostError::Trust(e.to_string()))?,
            ),
            Some("http") => None,
            _ => return Err(PostError::Url),
        };
        Ok(HttpPoster { uri, tls, timeout })
    }

    /// POSTs `body` with `headers` (content type and user agent are set here) and reads the
    /// answer, all within the timeout.
    pub async fn post(&self, headers: HeaderMap, body: Bytes) -> Result<PostAnswer, PostError> {
        tokio::time::timeout(self.timeout, self.post_now(headers, body))
            .await
            .unwrap_or(Err(PostError::Timeout(self.timeout)))
    }

    async fn post_now(&self, headers: HeaderMap, body: Bytes) -> Result<PostAnswer, PostError> {
        let uri = &self.uri;
        let host = uri.host().ok_or(PostError::Url)?;
        let port = uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tcp = TcpStream::connect((bare_host.as_str(), port)).await?;
        let mut request = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, uri.authority().map_or(host, |a| a.as_str()))
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("warden/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))?;
        request.headers_mut().extend(headers);
        match &self.tls {
            Some(config) => {
                let name = ServerName::try_from(bare_host).map_err(|_| PostError::Url)?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                send(TokioIo::new(tls), request).await
            }
            None => send(TokioIo::new(tcp), request).await,
        }
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<PostAnswer, PostError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    // An answer too long (or cut) is read as empty: the status still says whether it was taken.
    let body = Limited::new(response.into_body(), ANSWER_LIMIT)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    Ok(PostAnswer { status, body })
}
