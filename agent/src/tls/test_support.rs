//! Test helpers shared by the tls tests: chain verification and an in-memory TLS handshake.
use std::io;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{crypto_provider, CertificateAuthority};

/// Verifies `chain` (leaf first) for `name` with rustls' WebPKI verifier trusting only `ca`.
pub(crate) fn verify_chain(
    ca: &CertificateAuthority,
    chain: &[CertificateDer<'static>],
    name: &str,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .unwrap();
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
        .map(|_| ())
}

/// Runs a full handshake between `client` and `server` over an in-memory duplex pipe, echoes one
/// byte to prove the session works, and returns the negotiated ALPN protocol.
pub(crate) async fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    name: &str,
) -> io::Result<Option<Vec<u8>>> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server_task = tokio::spawn(async move {
        let mut tls = TlsAcceptor::from(server).accept(server_io).await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        tls.write_all(&byte).await?;
        tls.flush().await?;
        io::Result::Ok(())
    });
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut tls = TlsConnector::from(client)
        .connect(server_name, client_io)
        .await?;
    tls.write_all(b"x").await?;
    tls.flush().await?;
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await?;
    assert_eq!(&byte, b"x");
    server_task.await.map_err(io::Error::other)??;
    Ok(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
}
