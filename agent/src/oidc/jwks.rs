//! The issuer's signing keys by `kid`, swapped atomically on refresh, refetched once per unknown kid.
use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::{OidcError, OidcHttp};

/// A token naming an unknown key refetches the set at most this often: forged kids must not turn
/// Warden into a flood of requests to the provider.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// One usable signing key: RSA → RS256, EC P-256 → ES256, OKP Ed25519 → EdDSA.
pub struct SigningKey {
    pub(super) decoding: DecodingKey,
    pub(super) algorithm: Algorithm,
    /// The JWK's own `alg`, when it has one (the token's header must then name exactly it).
    pub(super) declared_alg: Option<String>,
}

/// A parsed JWKS: keys by `kid`, and the keys that have none.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<SigningKey>>,
    without_kid: Vec<Arc<SigningKey>>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// A JWKS file (the Kubernetes API server's `/openid/v1/jwks`, saved); never refetched.
    pub fn from_file(path: &Path) -> Result<KeySet, OidcError> {
        let bytes = std::fs::read(path).map_err(|source| OidcError::ReadKeys {
            path: path.to_path_buf(),
            source,
        })?;
        KeySet::parse(&bytes, &path.display().to_string())
    }

    /// Keys of other types, curves or uses (encryption) are skipped; a set with no usable key is
    /// an error, since it could verify nothing.
    pub fn parse(json: &[u8], origin: &str) -> Result<KeySet, OidcError> {
        let raw: RawSet = serde_json::from_slice(json).map_err(|e| OidcError::InvalidKeys {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
        let mut set = KeySet::default();
        for value in raw.keys {
            let Ok(raw) = serde_json::from_value::<RawKey>(value) else {
                tracing::debug!(origin, "skipping a JWK without a kty");
                continue;
            };
            let kid = raw.kid.clone();
            match signing_key(raw) {
                Some(key) => match kid {
                    Some(kid) => {
                        set.by_kid.insert(kid, Arc::new(key));
                    }
                    None => set.without_kid.push(Arc::new(key)),
                },
                None => tracing::debug!(origin, ?kid, "skipping a JWK Warden cannot verify with"),
            }
        }
        if set.is_empty() {
            return Err(OidcError::NoUsableKeys {
                origin: origin.to_owned(),
            });
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key a token's `kid` names; a token without one may use the set's only kid-less key.
    pub(super) fn find(&self, kid: Option<&str>) -> Option<Arc<SigningKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None => match self.without_kid.as_slice() {
                [only] => Some(only.clone()),
                _ => None,
            },
        }
    }
}

fn signing_key(raw: RawKey) -> Option<SigningKey> {
    if raw.usage.as_deref().is_some_and(|usage| usage != "sig") {
        return None;
    }
    let (decoding, algorithm) = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => (
            DecodingKey::from_rsa_components(raw.n.as_deref()?, raw.e.as_deref()?).ok()?,
            Algorithm::RS256,
        ),
        ("EC", Some("P-256")) => (
            DecodingKey::from_ec_components(raw.x.as_deref()?, raw.y.as_deref()?).ok()?,
            Algorithm::ES256,
        ),
        ("OKP", Some("Ed25519")) => (
            DecodingKey::from_ed_components(raw.x.as_deref()?).ok()?,
            Algorithm::EdDSA,
        ),
        _ => return None,
    };
    Some(SigningKey {
        decoding,
        algorithm,
        declared_alg: raw.alg,
    })
}

/// Where a verifier's keys come from and when they were last fetched.
pub(super) struct KeyStore {
    current: ArcSwap<KeySet>,
    remote: Option<RemoteKeys>,
    /// When a miss last caused a fetch (the start-up fetch and the periodic refresh do not count:
    /// a key rotated just after either must still be found at once). Held while fetching, so
    /// concurrent misses wait for one fetch instead of each starting one.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

struct RemoteKeys {
    http: OidcHttp,
    jwks_uri: String,
}

impl KeyStore {
    pub(super) fn fixed(keys: KeySet) -> KeyStore {
        KeyStore {
            current: ArcSwap::from_pointee(keys),
            remote: None,
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// Fetches the set once now; an unreachable or empty set is an error at start.
    pub(super) async fn remote(http: OidcHttp, jwks_uri: String) -> Result<KeyStore, OidcError> {
        let keys = fetch(&http, &jwks_uri).await?;
        Ok(KeyStore {
            current: ArcSwap::from_pointee(keys),
            remote: Some(RemoteKeys { http, jwks_uri }),
            // The fetch at start does not count against the rate limit: a key rotated just
            // after the daemon started is picked up by the first token that names it.
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    pub(super) fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    pub(super) fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// After a miss: refetch unless a fetch happened within `MIN_REFETCH_INTERVAL` (including
    /// one another miss just made while this one waited). Ok(true) when the set was replaced.
    pub(super) async fn refetch_after_miss(&self) -> Result<bool, OidcError> {
        self.refetch(false).await
    }

    /// The periodic refresh: always fetches, and keeps the old keys when the fetch fails.
    pub async fn refresh(&self) -> Result<bool, OidcError> {
        self.refetch(true).await
    }

    async fn refetch(&self, force: bool) -> Result<bool, OidcError> {
        let Some(remote) = &self.remote else {
            return Ok(false);
        };
        let mut last_fetch = self.last_fetch.lock().await;
        if !force {
            if last_fetch.is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL) {
                return Ok(false);
            }
            // Stamped before the fetch: a failing provider is asked no more often than a working one.
            *last_fetch = Some(Instant::now());
        }
        let keys = fetch(&remote.http, &remote.jwks_uri).await?;
        tracing::info!(jwks_uri = %remote.jwks_uri, keys = keys.len(), "refreshed the OIDC signing keys");
        self.current.store(Arc::new(keys));
        Ok(true)
    }

    #[cfg(test)]
    pub(super) async fn forget_last_fetch(&self) {
        *self.last_fetch.lock().await = None;
    }
}

async fn fetch(http: &OidcHttp, jwks_uri: &str) -> Result<KeySet, OidcError> {
    let value: serde_json::Value = http.get_json(jwks_uri).await?;
    let bytes = serde_json::to_vec(&value).map_err(|e| OidcError::InvalidKeys {
        origin: jwks_uri.to_owned(),
        reason: e.to_string(),
    })?;
    KeySet::parse(&bytes, jwks_uri)
}
