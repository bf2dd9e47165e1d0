//! STUB (replaced by the oidc-verify branch): OpenID Connect token verification.
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed")]
    Malformed,
}

#[derive(Clone)]
pub struct OidcHttp;

impl OidcHttp {
    pub fn new(_ca_file: Option<&Path>) -> Result<OidcHttp, OidcError> {
        Ok(OidcHttp)
    }
}

#[derive(Clone, Debug)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub jwks_uri: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub end_session_endpoint: Option<String>,
}

pub struct TokenVerifier;

#[derive(Clone, Debug)]
pub struct VerifiedToken {
    pub subject: String,
    pub email: Option<String>,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
    pub nonce: Option<String>,
    pub expires_at: i64,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl VerifiedToken {
    pub fn strings(&self, claim: &str) -> Vec<String> {
        match self.claims.get(claim) {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl TokenVerifier {
    pub async fn discover(
        _http: OidcHttp,
        _issuer: &str,
        _audiences: Vec<String>,
        _leeway_secs: u64,
    ) -> Result<(TokenVerifier, ProviderMetadata), OidcError> {
        Err(OidcError::Other("stub".into()))
    }

    pub async fn verify(&self, _token: &str) -> Result<VerifiedToken, TokenError> {
        Err(TokenError::Malformed)
    }
}

impl OidcHttp {
    pub async fn send(
        &self,
        _request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OidcError> {
        Err(OidcError::Other("stub".into()))
    }
}
