//! Per-SNI leaf certificates signed by Warden's CA, minted on demand and cached by server name.
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{DnsName, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::ca::{set_validity, BACKDATE};
use super::{crypto_provider, CertificateAuthority, TlsError, ALPN_PROTOCOLS};

/// How many server names keep a cached leaf; far more than one host ever intercepts.
pub const LEAF_CACHE_CAPACITY: usize = 1024;
const LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// A leaf closer than this to expiry is re-minted, so no client ever sees one expire mid-use.
const REFRESH_MARGIN: Duration = Duration::from_secs(24 * 60 * 60);
/// X.520 caps a CommonName at 64 characters; longer names live only in the SAN.
const MAX_COMMON_NAME: usize = 64;

struct CachedLeaf {
    key: Arc<CertifiedKey>,
    not_after: SystemTime,
}

impl CachedLeaf {
    fn is_fresh(&self, now: SystemTime) -> bool {
        self.not_after > now + REFRESH_MARGIN
    }
}

/// Mints and caches one leaf per (lowercase) server name; rustls asks it for a cert per handshake.
pub struct LeafCache {
    ca: Arc<CertificateAuthority>,
    provider: Arc<CryptoProvider>,
    capacity: usize,
    leaves: RwLock<HashMap<String, CachedLeaf>>,
}

impl fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self
            .leaves
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("LeafCache")
            .field("cached", &cached)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl LeafCache {
    pub fn new(ca: Arc<CertificateAuthority>) -> Self {
        Self::with_capacity(ca, LEAF_CACHE_CAPACITY)
    }

    fn with_capacity(ca: Arc<CertificateAuthority>, capacity: usize) -> Self {
        Self {
            ca,
            provider: crypto_provider(),
            capacity: capacity.max(1),
            leaves: RwLock::new(HashMap::new()),
        }
    }

    /// The chain [leaf, CA] and key for `server_name`, minted on first use and re-minted when
    /// less than a day of validity remains.
    pub fn certified_key(&self, server_name: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        let name = normalize(server_name)?;
        let now = SystemTime::now();
        // A poisoned lock only means another thread panicked mid-insert; the map is still a
        // valid cache, so keep using it rather than failing every later handshake.
        if let Some(leaf) = self
            .leaves
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .filter(|leaf| leaf.is_fresh(now))
        {
            return Ok(leaf.key.clone());
        }

        // Minted outside the lock: signing takes a while and other names must not wait for it.
        let minted = self.mint(&name, now)?;
        let mut leaves = self.leaves.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(raced) = leaves.get(&name).filter(|leaf| leaf.is_fresh(now)) {
            // Another handshake minted the same name meanwhile; hand out one Arc per name.
            return Ok(raced.key.clone());
        }
        if leaves.len() >= self.capacity && !leaves.contains_key(&name) {
            evict(&mut leaves, now);
        }
        let key = minted.key.clone();
        leaves.insert(name, minted);
        Ok(key)
    }

    fn mint(&self, name: &str, now: SystemTime) -> Result<CachedLeaf, TlsError> {
        let mint_err = |reason: String| TlsError::MintLeaf {
            server_name: name.to_string(),
            reason,
        };
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| mint_err(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        if name.len() <= MAX_COMMON_NAME {
            subject.push(DnType::CommonName, name);
        }
        params.distinguished_name = subject;
        let san = name.try_into().map_err(|_| TlsError::InvalidServerName {
            server_name: name.to_string(),
        })?;
        params.subject_alt_names = vec![SanType::DnsName(san)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let not_after = now + LEAF_VALIDITY;
        set_validity(&mut params, now - BACKDATE, not_after);

        let cert = params
            .signed_by(&key, self.ca.issuer())
            .map_err(|e| mint_err(e.to_string()))?;
        let chain = vec![cert.der().clone(), self.ca.cert_der()];
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let certified = CertifiedKey::from_der(chain, key_der, &self.provider)
            .map_err(|e| mint_err(e.to_string()))?;
        Ok(CachedLeaf {
            key: Arc::new(certified),
            not_after,
        })
    }
}

impl ResolvesServerCert for LeafCache {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Without SNI there is no name to mint for; the proxy tunnels such connections anyway.
        let server_name = client_hello.server_name()?;
        match self.certified_key(server_name) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::warn!(server_name, %error, "no leaf certificate for TLS handshake");
                None
            }
        }
    }
}

/// The TLS server config for intercepted connections: leaves from `leaves`, ALPN h2 then
/// http/1.1, no client authentication.
pub fn server_config(leaves: Arc<LeafCache>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        // Only fails when the provider lacks cipher suites for TLS 1.2/1.3; ring has both.
        .expect("the ring provider supports the default TLS protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(leaves);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn normalize(server_name: &str) -> Result<String, TlsError> {
    let lower = server_name.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    match DnsName::try_from(name) {
        Ok(_) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(TlsError::InvalidServerName {
            server_name: server_name.to_string(),
        }),
    }
}

/// Makes room for one entry: drops every stale leaf, or else the one that expires first.
fn evict(leaves: &mut HashMap<String, CachedLeaf>, now: SystemTime) {
    leaves.retain(|_, leaf| leaf.is_fresh(now));
    if leaves.is_empty() {
        return;
    }
    let oldest = leaves
        .iter()
        .min_by_key(|(_, leaf)| leaf.not_after)
        .map(|(name, _)| name.clone());
    if let Some(oldest) = oldest {
        leaves.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_support::{handshake, verify_chain};

    fn cache() -> LeafCache {
        LeafCache::new(Arc::new(CertificateAuthority::ephemeral().unwrap()))
    }

    #[test]
    fn leaf_verifies_for_its_name_only() {
        let ca = Arc::new(CertificateAuthority::ephemeral().unwrap());
        let leaves = LeafCache::new(ca.clone());
        let key = leaves.certified_key("api.openai.com").unwrap();
        assert_eq!(key.cert.len(), 2);
        assert_eq!(key.cert[1], ca.cert_der());
        verify_chain(&ca, &key.cert, "api.openai.com").unwrap();
        let err = verify_chain(&ca, &key.cert, "api.anthropic.com").unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
    }

    #[test]
    fn leaf_from_a_ca_reloaded_from_disk_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let created = CertificateAuthority::load_or_create(tmp.path()).unwrap();
        let reloaded = Arc::new(CertificateAuthority::load_or_create(tmp.path()).unwrap());
        let key = LeafCache::new(reloaded)
            .certified_key("api.openai.com")
            .unwrap();
        verify_chain(&created, &key.cert, "api.openai.com").unwrap();
    }

    #[test]
    fn leaf_from_another_ca_is_not_trusted() {
        let leaves = cache();
        let key = leaves.certified_key("api.openai.com").unwrap();
        let stranger = CertificateAuthority::ephemeral().unwrap();
        assert!(verify_chain(&stranger, &key.cert[..1], "api.openai.com").is_err());
    }

    #[test]
    fn cache_hit_returns_the_same_arc_for_any_case() {
        let leaves = cache();
        let first = leaves.certified_key("api.openai.com").unwrap();
        let again = leaves.certified_key("API.OpenAI.com.").unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let other = leaves.certified_key("example.test").unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn leaf_near_expiry_is_reminted() {
        let leaves = cache();
        let first = leaves.certified_key("api.openai.com").unwrap();
        leaves
            .leaves
            .write()
            .unwrap()
            .get_mut("api.openai.com")
            .unwrap()
            .not_after = SystemTime::now() + Duration::from_secs(60);
        let second = leaves.certified_key("api.openai.com").unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn cache_is_bounded() {
        let ca = Arc::new(CertificateAuthority::ephemeral().unwrap());
        let leaves = LeafCache::with_capacity(ca, 3);
        for i in 0..5 {
            leaves.certified_key(&format!("host{i}.example")).unwrap();
        }
        assert_eq!(leaves.leaves.read().unwrap().len(), 3);
        assert!(leaves.leaves.read().unwrap().contains_key("host4.example"));
    }

    #[test]
    fn invalid_names_are_rejected() {
        let leaves = cache();
        for bad in ["", ".", "bad name", "a..b", "ünïcode.example"] {
            assert!(
                matches!(
                    leaves.certified_key(bad),
                    Err(TlsError::InvalidServerName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn handshake_negotiates_h2_with_a_minted_leaf() {
        let ca = Arc::new(CertificateAuthority::ephemeral().unwrap());
        let server = server_config(Arc::new(LeafCache::new(ca.clone())));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der()).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let alpn = handshake(Arc::new(client), server, "api.openai.com")
            .await
            .unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    }
}
