//! Trust for Warden's own upstream connections: the system roots plus an optional extra CA file.
use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::{crypto_provider, TlsError};

/// Upstream connections speak HTTP/1.1 only. Over h2 the pool would carry every agent's requests on
/// one connection per host, and hyper's pool never opens a second one when the server's
/// SETTINGS_MAX_CONCURRENT_STREAMS (often 100–256) is reached: long model streams would then
/// block every other agent's requests. One pooled h1 connection per request in flight has no such
/// ceiling.
const UPSTREAM_ALPN: &[u8] = b"http/1.1";

/// The TLS client config for upstream connections: system roots plus every certificate in
/// `extra_ca_file` (PEM), ALPN http/1.1, the ring provider.
pub fn upstream_client_config(extra_ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    add_system_roots(&mut roots);
    if let Some(path) = extra_ca_file {
        add_extra_roots(&mut roots, path)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ClientConfig)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![UPSTREAM_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Adds what the system store offers; one unreadable source or bad certificate must not stop
/// Warden from reaching every upstream, so those are logged and skipped.
fn add_system_roots(roots: &mut RootCertStore) {
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "skipping an unreadable system certificate source");
    }
    let (added, skipped) = roots.add_parsable_certificates(native.certs);
    if skipped > 0 {
        tracing::warn!(
            added,
            skipped,
            "skipped system certificates that are not valid trust anchors"
        );
    }
    tracing::debug!(added, "loaded system trust roots");
}

fn add_extra_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let read_err = |source| TlsError::ExtraCaRead {
        path: path.to_path_buf(),
        source,
    };
    let mut added = 0usize;
    for cert in CertificateDer::pem_file_iter(path).map_err(read_err)? {
        roots
            .add(cert.map_err(read_err)?)
            .map_err(|source| TlsError::ExtraCaInvalid {
                path: path.to_path_buf(),
                source,
            })?;
        added += 1;
    }
    if added == 0 {
        return Err(TlsError::ExtraCaEmpty {
            path: path.to_path_buf(),
        });
    }
    tracing::debug!(path = %path.display(), added, "loaded extra trust roots");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_support::handshake;
    use crate::tls::{server_config, CertificateAuthority, LeafCache};

    #[tokio::test]
    async fn extra_ca_file_makes_warden_leaves_trusted_and_http1_is_negotiated() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Arc::new(CertificateAuthority::load_or_create(tmp.path()).unwrap());
        let client = upstream_client_config(Some(&crate::tls::cert_path(tmp.path()))).unwrap();
        assert_eq!(client.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let server = server_config(Arc::new(LeafCache::new(ca)));
        let alpn = handshake(client, server, "fake-upstream.test")
            .await
            .unwrap();
        // The server offers h2 first; Warden still gets HTTP/1.1.
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    }

    #[tokio::test]
    async fn untrusted_ca_fails_the_handshake() {
        let Ok(client) = upstream_client_config(None) else {
            return; // no system roots on this machine: nothing to compare against
        };
        let ca = Arc::new(CertificateAuthority::ephemeral().unwrap());
        let server = server_config(Arc::new(LeafCache::new(ca)));
        assert!(handshake(client, server, "fake-upstream.test")
            .await
            .is_err());
    }

    #[test]
    fn file_without_certificates_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("empty.pem");
        std::fs::write(&path, "no certificates here\n").unwrap();
        let err = upstream_client_config(Some(&path)).unwrap_err();
        assert!(matches!(err, TlsError::ExtraCaEmpty { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("missing.pem");
        let err = upstream_client_config(Some(&path)).unwrap_err();
        assert!(matches!(err, TlsError::ExtraCaRead { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
