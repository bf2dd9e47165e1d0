//! The provider's discovery document (`/.well-known/openid-configuration`), checked against the issuer.
use serde::Deserialize;

use super::{OidcError, OidcHttp};

/// The endpoints Warden uses, from the provider's discovery document (other keys are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub jwks_uri: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

impl ProviderMetadata {
    /// Fetches `{issuer}/.well-known/openid-configuration` and refuses a document naming another
    /// issuer: accepting it would let one provider's tokens pass for another's (OIDC Discovery §4.3).
    pub async fn discover(http: &OidcHttp, issuer: &str) -> Result<ProviderMetadata, OidcError> {
        let metadata: ProviderMetadata = http.get_json(&discovery_url(issuer)).await?;
        if metadata.issuer != issuer {
            return Err(OidcError::IssuerMismatch {
                configured: issuer.to_owned(),
                advertised: metadata.issuer,
            });
        }
        Ok(metadata)
    }
}

pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::test_support::FakeIssuer;

    #[test]
    fn url_has_one_slash() {
        assert_eq!(
            discovery_url("https://idp.example/realms/x/"),
            "https://idp.example/realms/x/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://idp.example"),
            "https://idp.example/.well-known/openid-configuration"
        );
    }

    #[tokio::test]
    async fn reads_the_document_and_ignores_unknown_keys() {
        let idp = FakeIssuer::start().await;
        let http = OidcHttp::new(None).unwrap();
        let metadata = ProviderMetadata::discover(&http, &idp.issuer)
            .await
            .unwrap();
        assert_eq!(metadata.issuer, idp.issuer);
        assert_eq!(metadata.jwks_uri, format!("{}/jwks", idp.issuer));
        assert_eq!(metadata.end_session_endpoint, None);
    }

    #[tokio::test]
    async fn refuses_a_document_naming_another_issuer() {
        let idp = FakeIssuer::start().await;
        idp.set_advertised_issuer("https://evil.example");
        let http = OidcHttp::new(None).unwrap();
        let err = ProviderMetadata::discover(&http, &idp.issuer)
            .await
            .unwrap_err();
        assert!(matches!(err, OidcError::IssuerMismatch { .. }), "{err}");
        assert!(err.to_string().contains("evil.example"), "{err}");
    }
}
