//! The API's TLS listener: its certificate (configured, or a leaf from Warden's CA), and one
//! HTTP/1.1 connection per accepted socket until shutdown.
use std::{convert::Infallible, fmt, sync::Arc, time::Duration};

use hyper::service::service_fn;
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;

use super::{start::ApiError, Api};
use crate::{
    config::ApiConfig,
    tls::{crypto_provider, CertificateAuthority, LeafCache},
};

/// How long a client may take over its TLS handshake and its request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub fn tls_config(
    api: &ApiConfig,
    ca: Arc<CertificateAuthority>,
) -> Result<Arc<ServerConfig>, ApiError> {
    let builder = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| ApiError::Tls(error.to_string()))?
        .with_no_client_auth();
    let mut config = match (&api.cert_file, &api.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert_file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|error| ApiError::Tls(format!("{}: {error}", cert_file.display())))?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|error| ApiError::Tls(format!("{}: {error}", key_file.display())))?;
            builder
                .with_single_cert(chain, key)
                .map_err(|error| ApiError::Tls(error.to_string()))?
        }
        _ => {
            let leaves = Arc::new(LeafCache::new(ca));
            // Minted now, so a bad server_name stops the start instead of every handshake.
            leaves
                .certified_key(&api.server_name)
                .map_err(|error| ApiError::Tls(format!("server_name: {error}")))?;
            builder.with_cert_resolver(Arc::new(CaLeaf {
                leaves,
                name: api.server_name.clone(),
            }))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CA's leaf for `[api] server_name`, whatever name (or none, for an IP) the client asks for;
/// re-minted by the cache before it expires.
struct CaLeaf {
    leaves: Arc<LeafCache>,
    name: String,
}

impl fmt::Debug for CaLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaLeaf").field("name", &self.name).finish()
    }
}

impl ResolvesServerCert for CaLeaf {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.leaves.certified_key(&self.name).ok()
    }
}

pub async fn serve(
    api: Arc<Api>,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let accept = || listener.accept();
    while let Some((stream, peer)) =
        crate::accept::next_connection(accept, &mut shutdown, "api").await
    {
        let (api, acceptor, shutdown) = (api.clone(), acceptor.clone(), shutdown.clone());
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "API: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "API: TLS handshake timed out");
                        return;
                    }
                };
            let service = service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(super::router::handle(api, request).await) }
            });
            let served =
                crate::accept::serve_http1(stream, service, HEADER_READ_TIMEOUT, shutdown).await;
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "API: connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> Arc<CertificateAuthority> {
        Arc::new(CertificateAuthority::ephemeral().unwrap())
    }

    #[test]
    fn the_configured_certificate_is_served_and_a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["warden.example".into()]).unwrap();
        let (cert_file, key_file) = (dir.path().join("api.pem"), dir.path().join("api.key"));
        std::fs::write(&cert_file, certified.cert.pem()).unwrap();
        std::fs::write(&key_file, certified.signing_key.serialize_pem()).unwrap();
        let mut api = ApiConfig {
            cert_file: Some(cert_file),
            key_file: Some(key_file.clone()),
            ..ApiConfig::default()
        };
        let config = tls_config(&api, ca()).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        std::fs::remove_file(&key_file).unwrap();
        let error = tls_config(&api, ca()).unwrap_err().to_string();
        assert!(error.contains("api.key"), "{error}");
        // Without files: a leaf for server_name from the CA, or a start-time error for a bad name.
        api.cert_file = None;
        api.key_file = None;
        assert!(tls_config(&api, ca()).is_ok());
        api.server_name = "not a name".into();
        let error = tls_config(&api, ca()).unwrap_err().to_string();
        assert!(error.contains("server_name"), "{error}");
    }
}
