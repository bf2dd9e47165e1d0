//! The HTTP client for the provider's documents and token endpoint: HTTPS, or plain HTTP to loopback.
//!
//! Trust is `tls::upstream_client_config` (system roots plus an optional CA file), the same as the
//! intercepted path's upstream connections. Every request has a deadline and a response-size cap:
//! a provider that stalls or floods must not hold a login or a key refresh forever.
use std::{
    future::Future,
    io,
    net::IpAddr,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{
        connect::{Connected, Connection},
        Client,
    },
    rt::{TokioExecutor, TokioIo},
};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::OidcError;
use crate::tls;

/// The whole exchange (connect, TLS, request, full response body) must finish within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery documents and key sets are a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A cheap-to-clone client for an OIDC provider (connections are pooled per host).
#[derive(Clone)]
pub struct OidcHttp {
    client: Client<OidcConnector, Full<bytes::Bytes>>,
}

impl std::fmt::Debug for OidcHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OidcHttp")
    }
}

impl OidcHttp {
    /// Trusts the system roots plus every certificate in `ca_file` (PEM); a bad file fails here.
    pub fn new(ca_file: Option<&Path>) -> Result<OidcHttp, OidcError> {
        let tls = tls::upstream_client_config(ca_file).map_err(OidcError::Trust)?;
        let client = Client::builder(TokioExecutor::new()).build(OidcConnector { tls });
        Ok(OidcHttp { client })
    }

    /// GETs `url` and parses a 2xx JSON body.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| invalid_url(url, e))?;
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(OidcError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        serde_json::from_slice(response.body()).map_err(|e| OidcError::Json {
            url: url.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Sends one request and returns the response whatever its status (OAuth errors are 4xx JSON).
    pub async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OidcError> {
        let url = request.uri().to_string();
        check_url(request.uri(), &url)?;
        let request = request.map(|body| Full::new(bytes::Bytes::from(body)));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| OidcError::Request {
                    url: url.clone(),
                    reason: error_chain(&e),
                })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        OidcError::TooLarge { url: url.clone() }
                    } else {
                        OidcError::Request {
                            url: url.clone(),
                            reason: format!("reading the response: {e}"),
                        }
                    }
                })?;
            Ok(http::Response::from_parts(parts, body.to_bytes().to_vec()))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| OidcError::Timeout { url: url.clone() })?
    }
}

/// Lets openidconnect's flows (`exchange_code(..).request_async(&http)`) use this client.
impl<'c> openidconnect::AsyncHttpClient<'c> for OidcHttp {
    type Error = OidcError;
    type Future =
        Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, OidcError>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// https:// anywhere; http:// only to a loopback host, where nothing on the network can read or
/// change the keys and tokens.
fn check_url(uri: &Uri, url: &str) -> Result<(), OidcError> {
    let host = uri
        .host()
        .ok_or_else(|| invalid_url(url, "it has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err(OidcError::InsecureUrl {
            url: url.to_owned(),
        }),
        _ => Err(invalid_url(url, "only https:// is supported")),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn invalid_url(url: &str, reason: impl std::fmt::Display) -> OidcError {
    OidcError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_string(),
    }
}

/// hyper's top-level errors say little ("client error (Connect)"); the cause says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Clone)]
struct OidcConnector {
    tls: Arc<ClientConfig>,
}

impl tower_service::Service<Uri> for OidcConnector {
    type Response = TokioIo<OidcStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<OidcStream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            if !https {
                return Ok(TokioIo::new(OidcStream::Plain(tcp)));
            }
            let server_name = ServerName::try_from(host.clone()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{host:?} is not a valid server name"),
                )
            })?;
            let stream = TlsConnector::from(tls).connect(server_name, tcp).await?;
            Ok(TokioIo::new(OidcStream::Tls(Box::new(stream))))
        })
    }
}

enum OidcStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for OidcStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for OidcStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OidcStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            OidcStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for OidcStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            OidcStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            OidcStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OidcStream::Plain(s) => Pin::new(s).poll_flush(cx),
            OidcStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OidcStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            OidcStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::test_support::FakeIssuer;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8080/x",
            "http://127.9.9.9/x",
            "http://[::1]:9/x",
            "http://localhost/x",
            "https://idp.example/x",
        ] {
            check_url(&ok.parse().unwrap(), ok).unwrap();
        }
        for insecure in [
            "http://idp.example/x",
            "http://10.0.0.1/x",
            "http://[::2]/x",
        ] {
            let err = check_url(&insecure.parse().unwrap(), insecure).unwrap_err();
            assert!(matches!(err, OidcError::InsecureUrl { .. }), "{err}");
            assert!(err.to_string().contains(insecure), "{err}");
        }
        let err = check_url(
            &"ftp://idp.example/x".parse().unwrap(),
            "ftp://idp.example/x",
        )
        .unwrap_err();
        assert!(matches!(err, OidcError::InvalidUrl { .. }), "{err}");
    }

    #[tokio::test]
    async fn non_loopback_http_is_refused_before_connecting() {
        let http = OidcHttp::new(None).unwrap();
        let err = http
            .get_json::<serde_json::Value>("http://idp.example/.well-known/openid-configuration")
            .await
            .unwrap_err();
        assert!(matches!(err, OidcError::InsecureUrl { .. }), "{err}");
    }

    #[tokio::test]
    async fn oversized_responses_and_error_statuses_are_refused() {
        let idp = FakeIssuer::start().await;
        let http = OidcHttp::new(None).unwrap();
        let err = http
            .get_json::<serde_json::Value>(&format!("{}/huge", idp.issuer))
            .await
            .unwrap_err();
        assert!(matches!(err, OidcError::TooLarge { .. }), "{err}");
        let err = http
            .get_json::<serde_json::Value>(&format!("{}/missing", idp.issuer))
            .await
            .unwrap_err();
        assert!(
            matches!(err, OidcError::Status { status: 404, .. }),
            "{err}"
        );
    }

    /// The admin API's code exchange compiles against this client and reaches the token endpoint.
    #[tokio::test]
    async fn openidconnect_code_exchange_runs_through_it() {
        use openidconnect::core::{CoreClient, CoreJsonWebKeySet};
        use openidconnect::{AuthUrl, AuthorizationCode, ClientId, IssuerUrl, TokenUrl};
        let idp = FakeIssuer::start().await;
        let http = OidcHttp::new(None).unwrap();
        let client = CoreClient::new(
            ClientId::new("warden".into()),
            IssuerUrl::new(idp.issuer.clone()).unwrap(),
            CoreJsonWebKeySet::new(Vec::new()),
        )
        .set_auth_uri(AuthUrl::new(format!("{}/authorize", idp.issuer)).unwrap())
        .set_token_uri(TokenUrl::new(format!("{}/token", idp.issuer)).unwrap());
        let exchange = client
            .exchange_code(AuthorizationCode::new("code".into()))
            .request_async(&http);
        // The fake issuer has no token endpoint: its 404 body `{}` coming back proves the request
        // went out and the response came back through OidcHttp.
        fn is_send<T: Send>(_: &T) {}
        is_send(&exchange); // so the API can await it in a spawned task
        let err = exchange.await.unwrap_err();
        assert!(
            matches!(&err, openidconnect::RequestTokenError::Parse(_, body) if body == b"{}"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn openidconnect_can_send_through_it() {
        use openidconnect::AsyncHttpClient;
        let idp = FakeIssuer::start().await;
        let http = OidcHttp::new(None).unwrap();
        let request = http::Request::get(format!("{}/jwks", idp.issuer))
            .body(Vec::new())
            .unwrap();
        let response = http.call(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(String::from_utf8_lossy(response.body()).contains("\"keys\""));
    }
}
