//! Real TLS ClientHello bytes (made by rustls) and TLS-looking garbage, for tunnel and bad-input tests.

use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, RootCertStore};
use rustls_pki_types::{IpAddr as PkiIpAddr, ServerName};

fn client_config(send_sni: bool) -> Arc<ClientConfig> {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.enable_sni = send_sni;
    Arc::new(config)
}

fn first_flight(config: Arc<ClientConfig>, name: ServerName<'static>) -> Vec<u8> {
    let mut conn = ClientConnection::new(config, name).expect("starting a TLS client");
    let mut bytes = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut bytes)
            .expect("writing to a Vec cannot fail");
    }
    bytes
}

/// The ClientHello a real TLS client sends to `server_name` (SNI set, ALPN h2 + http/1.1).
pub fn client_hello(server_name: &str) -> Vec<u8> {
    let name = ServerName::try_from(server_name.to_owned()).expect("a valid DNS name");
    first_flight(client_config(true), name)
}

/// A ClientHello without the server_name extension.
pub fn client_hello_without_sni() -> Vec<u8> {
    let name = ServerName::IpAddress(PkiIpAddr::from(std::net::Ipv4Addr::LOCALHOST));
    first_flight(client_config(false), name)
}

/// Starts like a TLS handshake record (0x16 0x03 0x01, consistent lengths) but the ClientHello
/// inside is nonsense: a version of 0xdead and a random cut short.
pub fn tls_like_garbage() -> Vec<u8> {
    vec![
        0x16, 0x03, 0x01, 0x00, 0x0c, // handshake record, 12 bytes
        0x01, 0x00, 0x00, 0x08, // ClientHello, 8 bytes
        0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef,
    ]
}

/// Where the cipher-suites length of a ClientHello record sits (after the record and handshake
/// headers, version, random and session id).
fn cipher_suites_at(hello: &[u8]) -> usize {
    let session_id_at = 5 + 4 + 2 + 32;
    session_id_at + 1 + hello[session_id_at] as usize
}

/// A real ClientHello whose handshake header claims a 16 MiB body.
pub fn hello_with_lying_handshake_length(server_name: &str) -> Vec<u8> {
    let mut hello = client_hello(server_name);
    hello[6..9].copy_from_slice(&[0xff, 0xff, 0xff]);
    hello
}

/// A real ClientHello whose cipher-suite list claims more bytes than the whole hello holds.
pub fn hello_with_lying_vector_length(server_name: &str) -> Vec<u8> {
    let mut hello = client_hello(server_name);
    let at = cipher_suites_at(&hello);
    hello[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    hello
}

/// A record header that claims more than the 2^14 bytes a TLS record may carry.
pub fn hello_in_an_oversized_record(server_name: &str) -> Vec<u8> {
    let mut hello = client_hello(server_name);
    hello[3..5].copy_from_slice(&(16 * 1024 + 1u16).to_be_bytes());
    hello
}

/// A real ClientHello plus one extension of `extension_len` bytes, split over as many handshake
/// records as it takes (each at most 2^14 bytes), with every length consistent.
pub fn hello_with_huge_extension(server_name: &str, extension_len: u16) -> Vec<u8> {
    let hello = client_hello(server_name);
    let mut body = hello[9..].to_vec();
    // Extensions block: after suites and compression methods.
    let suites_at = cipher_suites_at(&hello) - 9;
    let suites_len = u16::from_be_bytes([body[suites_at], body[suites_at + 1]]) as usize;
    let compression_at = suites_at + 2 + suites_len;
    let extensions_at = compression_at + 1 + body[compression_at] as usize;
    let old = u16::from_be_bytes([body[extensions_at], body[extensions_at + 1]]);
    let new = old
        .checked_add(4 + extension_len)
        .expect("extensions fit in 64 KiB");
    body[extensions_at..extensions_at + 2].copy_from_slice(&new.to_be_bytes());
    body.extend_from_slice(&0xfafa_u16.to_be_bytes());
    body.extend_from_slice(&extension_len.to_be_bytes());
    body.resize(body.len() + extension_len as usize, 0x42);
    let len = body.len() as u32;
    let mut handshake = vec![0x01, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    handshake.extend_from_slice(&body);
    let mut records = Vec::new();
    for chunk in handshake.chunks(16 * 1024) {
        records.extend_from_slice(&[0x16, 0x03, 0x01]);
        records.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        records.extend_from_slice(chunk);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_client_hello_is_one_handshake_record_carrying_the_name() {
        let hello = client_hello("tunnel.test");
        assert_eq!(&hello[..2], &[0x16, 0x03]);
        let record_len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
        assert_eq!(hello.len(), 5 + record_len);
        assert_eq!(hello[5], 0x01, "handshake type ClientHello");
        assert!(contains(&hello, b"tunnel.test"));
        assert!(contains(&hello, b"http/1.1"));
    }

    #[test]
    fn a_hello_without_sni_carries_no_name() {
        let hello = client_hello_without_sni();
        assert_eq!(hello[0], 0x16);
        assert!(!contains(&hello, b"127.0.0.1"));
        // server_name is extension type 0x0000: its absence is checked by parsing the extensions.
        assert!(!extension_types(&hello).contains(&0));
        assert!(extension_types(&client_hello("a.test")).contains(&0));
    }

    /// Extension types of a ClientHello (record header + handshake header + fixed fields skipped).
    fn extension_types(hello: &[u8]) -> Vec<u16> {
        let body = &hello[9..];
        let mut at = 2 + 32; // version, random
        at += 1 + body[at] as usize; // session id
        at += 2 + u16::from_be_bytes([body[at], body[at + 1]]) as usize; // cipher suites
        at += 1 + body[at] as usize; // compression methods
        let end = at + 2 + u16::from_be_bytes([body[at], body[at + 1]]) as usize;
        at += 2;
        let mut types = Vec::new();
        while at < end {
            types.push(u16::from_be_bytes([body[at], body[at + 1]]));
            at += 4 + u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        }
        types
    }

    #[test]
    fn the_malformed_hellos_lie_where_they_say() {
        let hello = client_hello("a.test");
        let at = cipher_suites_at(&hello);
        let suites = u16::from_be_bytes([hello[at], hello[at + 1]]);
        assert!(suites > 0 && suites.is_multiple_of(2), "{suites}");
        assert_eq!(
            &hello_with_lying_vector_length("a.test")[at..at + 2],
            &[0xff, 0xfe]
        );
        let huge = hello_with_huge_extension("a.test", 40_000);
        assert!(huge.len() > 40_000 + hello.len());
        // The extension types parse with every length consistent, the new one last.
        let first_record = u16::from_be_bytes([huge[3], huge[4]]) as usize;
        assert_eq!(first_record, 16 * 1024);
    }

    #[test]
    fn garbage_looks_like_tls_from_the_outside() {
        let garbage = tls_like_garbage();
        assert_eq!(&garbage[..3], &[0x16, 0x03, 0x01]);
        assert_eq!(
            u16::from_be_bytes([garbage[3], garbage[4]]) as usize,
            garbage.len() - 5
        );
    }
}
