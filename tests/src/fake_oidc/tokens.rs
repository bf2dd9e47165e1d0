//! JWTs the fake provider issues and the forged ones the refusal tests need: claims, signing,
//! `alg: none`, HS256 keyed with the RSA public key.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

use super::keys::Keyring;
use super::User;

/// The signature algorithms the provider publishes keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the current rotating RSA key).
    #[default]
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

/// What to put in a minted token. `Default`: a valid RS256 token for the signed-in user, aud = the
/// provider's client id, iss = its issuer, iat = nbf = now, exp = now + 300 s, the user's groups,
/// the current key's kid.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// The user (added with `add_user`); `None`: the one `sign_in_as` chose.
    pub subject: Option<String>,
    pub aud: Option<String>,
    pub iss: Option<String>,
    /// exp = now + this (negative: already expired).
    pub exp_offset_secs: i64,
    /// nbf = now + this (positive: not yet valid).
    pub nbf_offset_secs: i64,
    /// Replaces the user's groups.
    pub groups: Option<Vec<String>>,
    /// Replaces the header's kid (e.g. one the provider never published).
    pub kid: Option<String>,
    pub alg: Alg,
    pub nonce: Option<String>,
}

impl Default for TokenSpec {
    fn default() -> Self {
        Self {
            subject: None,
            aud: None,
            iss: None,
            exp_offset_secs: DEFAULT_LIFETIME_SECS,
            nbf_offset_secs: 0,
            groups: None,
            kid: None,
            alg: Alg::RS256,
            nonce: None,
        }
    }
}

impl TokenSpec {
    /// The defaults, for this user.
    pub fn for_user(subject: &str) -> Self {
        Self {
            subject: Some(subject.to_owned()),
            ..Self::default()
        }
    }
}

/// Lifetime of the tokens `/token` issues and of the default minted token.
pub const DEFAULT_LIFETIME_SECS: i64 = 300;

pub(super) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The claims of an ID token (and of the JWT access token) for `user` under `spec`.
pub(super) fn claims(
    user: &User,
    spec: &TokenSpec,
    default_issuer: &str,
    default_aud: &str,
) -> Value {
    let now = now_secs();
    let mut claims = json!({
        "iss": spec.iss.as_deref().unwrap_or(default_issuer),
        "sub": user.subject,
        "aud": spec.aud.as_deref().unwrap_or(default_aud),
        "exp": now + spec.exp_offset_secs,
        "iat": now,
        "nbf": now + spec.nbf_offset_secs,
        "auth_time": now,
        "email": user.email,
        "email_verified": true,
        "preferred_username": user.preferred_username,
        "name": user.name,
        "groups": spec.groups.as_ref().unwrap_or(&user.groups),
    });
    if let Some(nonce) = &spec.nonce {
        claims["nonce"] = json!(nonce);
    }
    claims
}

/// Signs `claims` with the current key of `spec.alg`; `typ` is the header's typ (`JWT`, `at+jwt`).
pub(super) fn sign(keys: &Keyring, spec: &TokenSpec, typ: &str, claims: &Value) -> String {
    let key = keys.current(spec.alg);
    let mut header = Header::new(spec.alg.jsonwebtoken());
    header.typ = Some(typ.to_owned());
    header.kid = Some(spec.kid.clone().unwrap_or_else(|| key.kid.clone()));
    jsonwebtoken::encode(&header, claims, &key.encoding)
        .unwrap_or_else(|e| panic!("signing a {:?} token: {e}", spec.alg))
}

/// Header `{"alg":"none"}`, the claims, and an empty signature.
pub(super) fn unsigned(claims: &Value, kid: Option<&str>) -> String {
    let mut header = json!({ "alg": "none", "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    format!("{}.{}.", base64_json(&header), base64_json(claims))
}

/// HS256 over the claims with `secret` as the HMAC key, the kid of the current RSA key (the
/// algorithm-confusion attack on verifiers that pick the algorithm from the header).
pub(super) fn hs256(claims: &Value, kid: &str, secret: &[u8]) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))
        .unwrap_or_else(|e| panic!("signing an HS256 token: {e}"))
}

fn base64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}
