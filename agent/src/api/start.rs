//! Starting the API: its listener and TLS, then the identity provider, read in the background
//! until it answers (the proxy never waits on the provider; the API answers 503 until then).
use std::{sync::Arc, time::Duration};

use secrecy::ExposeSecret;
use tokio::{net::TcpListener, sync::watch};

use super::{auth::Authenticator, browser_sessions::BrowserSessions, login::Login, Api, Ready};
use crate::{
    admin::server::AdminServer,
    config::Config,
    oidc::{OidcHttp, TokenVerifier},
    proxy::ProxyContext,
    tls::CertificateAuthority,
};

/// How long to wait before asking an unreachable provider again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot serve the API on {address} ([api] listen): {source}")]
    Bind {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("[api] TLS: {0}")]
    Tls(String),
    #[error("[api.oidc] client_secret_file: {0}")]
    Secret(#[from] crate::credentials::secret::SecretError),
    #[error("[api.oidc]: {0}")]
    Oidc(#[from] crate::oidc::OidcError),
}

/// The API's listener and TLS, bound before the daemon attaches anything.
pub struct BoundApi {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
}

/// Binds the API when `[api] listen` is set. Errors here stop the daemon at start: a configured
/// API that cannot listen is a broken install.
pub async fn bind(
    config: &Config,
    ca: Arc<CertificateAuthority>,
) -> Result<Option<BoundApi>, ApiError> {
    let Some(address) = config.api.listen else {
        return Ok(None);
    };
    let tls = super::server::tls_config(&config.api, ca)?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ApiError::Bind { address, source })?;
    Ok(Some(BoundApi { listener, tls }))
}

/// Serves the bound API until shutdown; the identity provider is read in the background.
pub fn start(
    bound: BoundApi,
    config: &Config,
    context: Arc<ProxyContext>,
    admin: Arc<AdminServer>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ApiError> {
    // Validation made sure listen implies [api.oidc].
    let Some(oidc) = config.api.oidc.clone() else {
        return Ok(());
    };
    let BoundApi { listener, tls } = bound;
    let address = listener.local_addr().ok();
    let client_secret = match &oidc.client_secret_file {
        Some(path) => Some(
            crate::credentials::secret::read_secret(path)?
                .expose_secret()
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let http = OidcHttp::new(oidc.ca_file.as_deref())?;
    // Validation made sure listen implies a public URL.
    let public_url = config.api.public_url().unwrap_or_default();
    let api = Arc::new(Api {
        context,
        admin,
        ready: Default::default(),
        shutdown: shutdown.clone(),
    });
    let session_lifetime = Duration::from_secs(config.api.session_hours * 3600);
    let roles = config.api.roles.clone();
    let connecting = api.clone();
    let origin = origin_of(&public_url);
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let mut audiences = oidc.audiences();
            // The ID tokens of the console's own sign-in are for the client id.
            if !audiences.contains(&oidc.client_id) {
                audiences.push(oidc.client_id.clone());
            }
            match TokenVerifier::discover(http.clone(), &oidc.issuer, audiences, oidc.leeway_secs)
                .await
            {
                Ok((verifier, metadata)) => {
                    tracing::info!(issuer = oidc.issuer, "API: identity provider discovered");
                    let ready = Ready {
                        login: Login::new(
                            http,
                            metadata,
                            &oidc,
                            client_secret,
                            &public_url,
                            session_lifetime,
                        ),
                        auth: Authenticator {
                            verifier,
                            issuer: oidc.issuer.clone(),
                            roles_claim: oidc.roles_claim.clone(),
                            roles,
                            sessions: BrowserSessions::default(),
                            origin,
                        },
                    };
                    let _ = connecting.ready.set(ready);
                    return;
                }
                Err(error) => {
                    tracing::error!(issuer = oidc.issuer, %error, retry_in_secs = DISCOVERY_RETRY.as_secs(), "API: identity provider not reachable; the API answers 503 until it is");
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(DISCOVERY_RETRY) => {}
            }
        }
    });
    tracing::info!(
        ?address,
        url = config.api.public_url().unwrap_or_default(),
        "API and console listening"
    );
    tokio::spawn(super::server::serve(api, listener, tls, shutdown));
    Ok(())
}

/// `https://host:port` of a URL (what a browser sends as Origin); the default port is left out,
/// as browsers leave it out.
fn origin_of(url: &str) -> String {
    openidconnect::url::Url::parse(url)
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_origin_is_scheme_host_and_port() {
        assert_eq!(
            super::origin_of("https://w.example:9443/x/"),
            "https://w.example:9443"
        );
        assert_eq!(
            super::origin_of("https://localhost:9443"),
            "https://localhost:9443"
        );
        assert_eq!(
            super::origin_of("https://w.example:443/"),
            "https://w.example"
        );
    }
}
