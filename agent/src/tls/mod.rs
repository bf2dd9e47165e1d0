//! Warden's TLS material: its interception CA, the per-SNI leaf cache, and upstream trust.
mod ca;
mod leaf;
#[cfg(test)]
mod test_support;
mod upstream;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use ca::{cert_path, key_path, CertificateAuthority};
pub use leaf::{server_config, LeafCache, LEAF_CACHE_CAPACITY};
pub use upstream::upstream_client_config;

/// ALPN protocols Warden accepts from clients, in preference order (upstream it speaks http/1.1).
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The crypto provider every Warden TLS config uses. Always `ring`, passed explicitly, so nothing
/// depends on (or races to install) a process-wide default provider.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Errors from the CA, leaf minting and TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("creating the CA directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tightening the permissions of {path}: {source}")]
    Permissions {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{present} exists but {missing} does not; restore {missing} or remove {present} \
         to let Warden create a new CA (agents will then need to trust the new CA)"
    )]
    PartialCa { present: PathBuf, missing: PathBuf },
    #[error("generating the Warden CA: {0}")]
    GenerateCa(#[source] rcgen::Error),
    #[error("{path} does not hold a usable CA: {reason}")]
    InvalidCa { path: PathBuf, reason: String },
    #[error("the CA key {key} does not match the CA certificate {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{server_name:?} is not a valid DNS name for a leaf certificate")]
    InvalidServerName { server_name: String },
    #[error("minting a leaf certificate for {server_name}: {reason}")]
    MintLeaf { server_name: String, reason: String },
    #[error("no trusted roots: the system store yielded no certificates and no extra CA file is configured")]
    NoRoots,
    #[error("reading the extra CA file {path}: {source}")]
    ExtraCaRead {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the extra CA file {path} holds no PEM certificate")]
    ExtraCaEmpty { path: PathBuf },
    #[error(
        "the extra CA file {path} holds a certificate that cannot be a trust anchor: {source}"
    )]
    ExtraCaInvalid {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("building the TLS client configuration: {0}")]
    ClientConfig(#[source] rustls::Error),
}
