//! JWT verification: algorithm allowlist, key by `kid`, signature, `iss`, `aud`, `exp` and `nbf`.
use std::{collections::HashSet, path::Path, sync::Arc};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{errors::ErrorKind, Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    jwks::{KeySet, KeyStore, SigningKey},
    OidcError, OidcHttp, ProviderMetadata, TokenError,
};

/// Clock skew tolerated on `exp` and `nbf`, whatever the configuration asks for.
pub const MAX_LEEWAY_SECS: u64 = 60;
/// Larger than any ID or service-account token; refused before decoding.
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Verifies tokens of one issuer; cheap to clone (the keys are shared).
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    /// Empty: `aud` is not checked.
    audiences: Vec<String>,
    leeway_secs: u64,
    keys: KeyStore,
}

/// The claims of a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub subject: String,
    pub email: Option<String>,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
    pub nonce: Option<String>,
    /// `exp`, unix seconds.
    pub expires_at: i64,
    pub claims: Map<String, Value>,
}

impl VerifiedToken {
    /// A string claim as one item, an array's string items, else nothing. `claim` may be a dotted
    /// path into nested objects (`realm_access.roles`); a top-level key with dots wins.
    pub fn strings(&self, claim: &str) -> Vec<String> {
        let value = self.claims.get(claim).or_else(|| {
            let mut parts = claim.split('.');
            let first = self.claims.get(parts.next()?)?;
            parts.try_fold(first, |value, part| value.as_object()?.get(part))
        });
        match value {
            Some(Value::String(text)) => vec![text.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

impl TokenVerifier {
    /// Discovers the provider, fetches its keys, and returns the verifier with the metadata.
    pub async fn discover(
        http: OidcHttp,
        issuer: &str,
        audiences: Vec<String>,
        leeway_secs: u64,
    ) -> Result<(TokenVerifier, ProviderMetadata), OidcError> {
        let metadata = ProviderMetadata::discover(&http, issuer).await?;
        let keys = KeyStore::remote(http, metadata.jwks_uri.clone()).await?;
        let verifier = TokenVerifier::new(issuer, audiences, keys, leeway_secs);
        Ok((verifier, metadata))
    }

    /// Keys from a JWKS file, never refetched. An empty `audiences` leaves `aud` unchecked.
    pub fn from_jwks_file(
        issuer: &str,
        audiences: Vec<String>,
        path: &Path,
        leeway_secs: u64,
    ) -> Result<TokenVerifier, OidcError> {
        let keys = KeyStore::fixed(KeySet::from_file(path)?);
        Ok(TokenVerifier::new(issuer, audiences, keys, leeway_secs))
    }

    /// Keys already in hand (never refetched).
    pub fn from_key_set(
        issuer: &str,
        audiences: Vec<String>,
        keys: KeySet,
        leeway_secs: u64,
    ) -> TokenVerifier {
        TokenVerifier::new(issuer, audiences, KeyStore::fixed(keys), leeway_secs)
    }

    fn new(issuer: &str, audiences: Vec<String>, keys: KeyStore, leeway: u64) -> TokenVerifier {
        TokenVerifier {
            inner: Arc::new(Inner {
                issuer: issuer.to_owned(),
                audiences,
                leeway_secs: leeway.min(MAX_LEEWAY_SECS),
                keys,
            }),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// True when the keys come from the provider (and `refresh_keys` fetches them again).
    pub fn refreshes_keys(&self) -> bool {
        self.inner.keys.is_remote()
    }

    /// Fetches the key set again now (the periodic refresh); the old keys stay on failure.
    pub async fn refresh_keys(&self) -> Result<bool, OidcError> {
        self.inner.keys.refresh().await
    }

    /// Verifies with the keys in hand; a token naming an unknown key refetches the set once
    /// (rate-limited, see `MIN_REFETCH_INTERVAL`).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let (algorithm, kid) = self.allowed_header(token)?;
        let key = match self.inner.keys.current().find(kid.as_deref()) {
            Some(key) => key,
            None => {
                if let Err(error) = self.inner.keys.refetch_after_miss().await {
                    tracing::warn!(issuer = %self.inner.issuer, %error, "refetching the signing keys failed");
                    return Err(TokenError::KeysUnavailable(error.to_string()));
                }
                self.inner
                    .keys
                    .current()
                    .find(kid.as_deref())
                    .ok_or(TokenError::UnknownKey(kid))?
            }
        };
        self.check(token, algorithm, &key)
    }

    /// Verifies with the keys in hand only (no I/O): for callers that cannot wait, like identity
    /// resolution. A miss on a refreshing verifier starts a refetch in the background, when a
    /// runtime is at hand, so the next token with that key verifies.
    pub fn verify_cached(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let (algorithm, kid) = self.allowed_header(token)?;
        match self.inner.keys.current().find(kid.as_deref()) {
            Some(key) => self.check(token, algorithm, &key),
            None => {
                self.refetch_in_background();
                Err(TokenError::UnknownKey(kid))
            }
        }
    }

    fn refetch_in_background(&self) {
        if !self.refreshes_keys() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let verifier = self.clone();
        runtime.spawn(async move {
            if let Err(error) = verifier.inner.keys.refetch_after_miss().await {
                tracing::warn!(issuer = %verifier.inner.issuer, %error, "refetching the signing keys failed");
            }
        });
    }

    /// The header's algorithm, checked against the allowlist before any key is looked up.
    fn allowed_header(&self, token: &str) -> Result<(Algorithm, Option<String>), TokenError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        let header = token.split('.').next().unwrap_or_default();
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed)?;
        let header: RawHeader =
            serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        let algorithm = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            other => return Err(TokenError::AlgorithmNotAllowed(printable(other))),
        };
        Ok((algorithm, header.kid.map(|kid| printable(&kid))))
    }

    fn check(
        &self,
        token: &str,
        algorithm: Algorithm,
        key: &SigningKey,
    ) -> Result<VerifiedToken, TokenError> {
        let declared_mismatch = key
            .declared_alg
            .as_deref()
            .is_some_and(|declared| declared != algorithm_name(algorithm));
        if key.algorithm != algorithm || declared_mismatch {
            return Err(TokenError::AlgorithmNotAllowed(
                algorithm_name(algorithm).to_owned(),
            ));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.inner.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.inner.issuer]);
        let mut required: HashSet<String> = ["exp", "iss", "sub"].map(String::from).into();
        if self.inner.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.inner.audiences);
            required.insert("aud".to_owned());
        }
        validation.required_spec_claims = required;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token.trim(), &key.decoding, &validation)
                .map_err(|e| token_error(e.kind()))?;
        verified(data.claims)
    }
}

fn verified(claims: Map<String, Value>) -> Result<VerifiedToken, TokenError> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let subject = text("sub").ok_or(TokenError::MissingClaim("sub"))?;
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_f64)
        .ok_or(TokenError::MissingClaim("exp"))? as i64;
    Ok(VerifiedToken {
        subject,
        email: text("email"),
        preferred_username: text("preferred_username"),
        name: text("name"),
        nonce: text("nonce"),
        expires_at,
        claims,
    })
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed("(mismatched key)".into()),
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            "sub" => "sub",
            _ => "(required claim)",
        }),
        _ => TokenError::Malformed,
    }
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "(other)",
    }
}

/// Header values go into error messages: keep them short and printable.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
