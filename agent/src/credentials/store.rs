//! The credentials in force: each entry's loaded secret behind an `ArcSwap` (requests read it
//! without a lock, a reload swaps it whole), and which one serves an identity on a host.
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{
    secret::{read_secret, secret_path, SecretError},
    CredentialConfig, HeaderSpec, Presented, SecretSource,
};
use crate::identity::selector::{IdentitySelector, SelectorSubject};

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credential {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: SecretError,
    },
    #[error("credential {name}: {reason}")]
    Invalid { name: String, reason: String },
}

/// One credential as configured, and its secret as last loaded.
pub struct Credential {
    pub name: String,
    /// Lowercase.
    pub host: String,
    pub header: HeaderSpec,
    selectors: Vec<IdentitySelector>,
    pub source: SecretSource,
    secret: SecretString,
    /// `sha256:` and the first 8 bytes of the key's SHA-256, as the audit records fingerprint keys.
    pub fingerprint: String,
    /// Unix time (µs) the secret was read.
    pub loaded_at_us: i64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is left out on purpose (secrecy's own Debug would say so anyway).
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Loads the entry's secret now.
    fn load(entry: &CredentialConfig) -> Result<Credential, CredentialError> {
        let invalid = |reason: String| CredentialError::Invalid {
            name: entry.name.clone(),
            reason,
        };
        let header = HeaderSpec::parse(&entry.header).map_err(invalid)?;
        let selectors = entry
            .identity
            .iter()
            .enumerate()
            .map(|(i, text)| {
                IdentitySelector::parse(text).map_err(|e| invalid(format!("identity[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let source = entry
            .source()
            .ok_or_else(|| invalid("set exactly one of secret_file, systemd_credential".into()))?;
        let secret = secret_path(&source)
            .and_then(|path| read_secret(&path))
            .map_err(|source| CredentialError::Secret {
                name: entry.name.clone(),
                source,
            })?;
        let credential = Credential {
            name: entry.name.clone(),
            host: entry.host.trim_end_matches('.').to_ascii_lowercase(),
            header,
            selectors,
            source,
            fingerprint: fingerprint(secret.expose_secret()),
            secret,
            loaded_at_us: now_us(),
        };
        // The read checked the key's characters; make sure the header it makes is accepted once,
        // here, rather than per request.
        credential.header_value().ok_or_else(|| {
            invalid("the key and the header's scheme do not make a valid header value".into())
        })?;
        Ok(credential)
    }

    fn serves(&self, identity: &(impl SelectorSubject + ?Sized)) -> bool {
        self.selectors.iter().any(|s| s.matches(identity))
    }

    /// The header value to send upstream, marked sensitive (HPACK never indexes it). `None` only
    /// if the key cannot be a header value, which loading rules out.
    pub fn header_value(&self) -> Option<HeaderValue> {
        let text = Zeroizing::new(format!(
            "{}{}",
            self.header.prefix,
            self.secret.expose_secret()
        ));
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// `sha256:` and the first 8 bytes (16 hex digits) of the key's SHA-256: match a known key with
/// `printf %s "$KEY" | sha256sum`.
pub fn fingerprint(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("sha256:{}", hex::encode(&digest[..8]))
}

/// What custody means for one request.
pub enum Custody {
    /// The host has no credential: the request goes as it is.
    NotCustodied,
    /// This credential serves the identity: its key replaces whatever the agent presented.
    Serve(Arc<Credential>),
    /// The host has credentials, none for this identity: refused, nothing goes upstream.
    Unserved,
}

/// What `warden status` shows of one credential: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CredentialStatus {
    pub name: String,
    pub host: String,
    pub header: String,
    pub source: String,
    pub identity: Vec<String>,
    pub fingerprint: String,
    pub loaded_at_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CredentialsStatus {
    pub presented: Presented,
    pub credentials: Vec<CredentialStatus>,
}

/// The credentials in force for the daemon (Debug shows names and fingerprints, never a key).
#[derive(Debug)]
pub struct CredentialStore {
    entries: Vec<CredentialConfig>,
    presented: Presented,
    /// In config order: the first entry that serves an identity on a host is the one used.
    current: ArcSwap<Vec<Arc<Credential>>>,
}

impl CredentialStore {
    /// Loads every entry; any secret that cannot be read stops the start (fail closed).
    pub fn load(
        entries: &[CredentialConfig],
        presented: Presented,
    ) -> Result<CredentialStore, CredentialError> {
        let loaded = entries
            .iter()
            .map(|entry| Credential::load(entry).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        for credential in &loaded {
            tracing::info!(credential = %credential.name, host = %credential.host, source = %credential.source, fingerprint = %credential.fingerprint, "credential loaded");
        }
        Ok(CredentialStore {
            entries: entries.to_vec(),
            presented,
            current: ArcSwap::from_pointee(loaded),
        })
    }

    /// No credentials (tests, and hosts without custody).
    pub fn empty() -> CredentialStore {
        CredentialStore {
            entries: Vec::new(),
            presented: Presented::default(),
            current: ArcSwap::from_pointee(Vec::new()),
        }
    }

    pub fn presented(&self) -> Presented {
        self.presented
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the secrets are read from now (for the watch).
    pub fn sources(&self) -> Vec<SecretSource> {
        self.entries.iter().filter_map(|e| e.source()).collect()
    }

    /// The credential for `identity` on `host` (the TLS server name).
    pub fn custody(&self, host: &str, identity: &(impl SelectorSubject + ?Sized)) -> Custody {
        if self.entries.is_empty() {
            return Custody::NotCustodied;
        }
        let host = host.trim_end_matches('.');
        let current = self.current.load();
        let mut custodied = false;
        for credential in current.iter() {
            if !credential.host.eq_ignore_ascii_case(host) {
                continue;
            }
            custodied = true;
            if credential.serves(identity) {
                return Custody::Serve(credential.clone());
            }
        }
        match custodied {
            true => Custody::Unserved,
            false => Custody::NotCustodied,
        }
    }

    /// Reads every secret again. An entry whose secret cannot be read keeps its previous key, and
    /// the reason is logged. Returns a one-line summary.
    pub fn reload(&self, trigger: &str) -> String {
        let previous = self.current.load_full();
        let mut next = Vec::with_capacity(self.entries.len());
        let (mut rotated, mut kept) = (0, 0);
        for (entry, old) in self.entries.iter().zip(previous.iter()) {
            match Credential::load(entry) {
                Ok(new) if new.fingerprint == old.fingerprint => next.push(old.clone()),
                Ok(new) => {
                    tracing::info!(credential = %new.name, source = %new.source, previous = %old.fingerprint, fingerprint = %new.fingerprint, trigger, "credential rotated");
                    rotated += 1;
                    next.push(Arc::new(new));
                }
                Err(error) => {
                    tracing::error!(%error, credential = %old.name, fingerprint = %old.fingerprint, trigger, "credential reload refused; the previous key stays in force");
                    kept += 1;
                    next.push(old.clone());
                }
            }
        }
        self.current.store(Arc::new(next));
        format!("credentials reloaded: {rotated} rotated, {kept} kept after an error")
    }

    pub fn status(&self) -> CredentialsStatus {
        let current = self.current.load();
        let credentials = current
            .iter()
            .zip(&self.entries)
            .map(|(c, entry)| CredentialStatus {
                name: c.name.clone(),
                host: c.host.clone(),
                header: c.header.name.to_string(),
                source: c.source.to_string(),
                identity: entry.identity.clone(),
                fingerprint: c.fingerprint.clone(),
                loaded_at_us: c.loaded_at_us,
            })
            .collect();
        CredentialsStatus {
            presented: self.presented,
            credentials,
        }
    }
}

#[cfg(test)]
mod tests;
