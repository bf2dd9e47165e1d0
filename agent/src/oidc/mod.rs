//! OpenID Connect for Warden: discovery, key sets and ID/service-account token verification.
//!
//! `OidcHttp` fetches the provider's documents (HTTPS, or plain HTTP to loopback only);
//! `TokenVerifier` checks a JWT's algorithm, signature, issuer, audience and lifetime against the
//! provider's keys, refetching them once (rate-limited) when a token names an unknown key.
mod discovery;
mod http;
mod jwks;
#[cfg(test)]
pub(crate) mod test_support;
mod verify;

use std::path::PathBuf;

pub use discovery::ProviderMetadata;
pub use http::{OidcHttp, MAX_RESPONSE_BYTES, REQUEST_TIMEOUT};
pub use jwks::{KeySet, MIN_REFETCH_INTERVAL};
pub use verify::{TokenVerifier, VerifiedToken, MAX_LEEWAY_SECS};

/// Why a token was refused. Every message is safe to send to the client: none carries the token
/// or a claim's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is signed with algorithm {0:?}, which is not allowed (allowed: RS256, ES256, EdDSA)")]
    AlgorithmNotAllowed(String),
    #[error("the token names a signing key the issuer does not publish{}", .0.as_ref().map(|kid| format!(" (kid {kid:?})")).unwrap_or_default())]
    UnknownKey(Option<String>),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error("the token lacks the required claim {0:?}")]
    MissingClaim(&'static str),
    #[error("the issuer's signing keys are unavailable: {0}")]
    KeysUnavailable(String),
}

/// Discovery, HTTP and configuration errors (never about one token).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("{url}: plain http:// is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); use https://")]
    InsecureUrl { url: String },
    #[error("{url} is not a usable URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("OIDC trust roots: {0}")]
    Trust(#[source] crate::tls::TlsError),
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("{url}: no complete response within {secs} s", secs = REQUEST_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("{url}: the response is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the response is not the expected JSON: {reason}")]
    Json { url: String, reason: String },
    #[error("the discovery document of {configured} names issuer {advertised:?}; it must be exactly the configured issuer")]
    IssuerMismatch {
        configured: String,
        advertised: String,
    },
    #[error("reading the key set {path}: {source}")]
    ReadKeys {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key set {origin} is not a JWKS: {reason}")]
    InvalidKeys { origin: String, reason: String },
    #[error("the key set {origin} holds no RS256, ES256 (P-256) or EdDSA (Ed25519) signing key")]
    NoUsableKeys { origin: String },
}
