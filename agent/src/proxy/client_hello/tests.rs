//! Tests for the ClientHello classifier: real rustls hellos, every truncation, fragmentation,
//! hand-built edge cases and random garbage.
use std::sync::Arc;

use super::*;

/// The first flight of a rustls client for `name` (`None`: SNI disabled), ALPN h2 + http/1.1.
fn rustls_hello(name: &str, sni: bool) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.enable_sni = sni;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn hello(server_name: Option<&str>, alpn: &[&str]) -> Classified {
    Classified::ClientHello {
        server_name: server_name.map(str::to_string),
        alpn: alpn.iter().map(|p| p.to_string()).collect(),
    }
}

/// Re-frames one record's handshake payload as two records split at `at`.
fn split_record(single: &[u8], at: usize) -> Vec<u8> {
    let payload = &single[5..];
    let mut out = Vec::new();
    for part in [&payload[..at], &payload[at..]] {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn u16_vec(data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

/// A minimal ClientHello record with the given raw extensions.
fn build_hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&u16_vec(&[0x13, 0x01]));
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut exts = Vec::new();
    for (ty, data) in extensions {
        exts.extend_from_slice(&ty.to_be_bytes());
        exts.extend_from_slice(&u16_vec(data));
    }
    body.extend_from_slice(&u16_vec(&exts));
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16_vec(&handshake));
    record
}

fn sni_ext(name_type: u8, name: &[u8]) -> (u16, Vec<u8>) {
    let mut entry = vec![name_type];
    entry.extend_from_slice(&u16_vec(name));
    (0, u16_vec(&entry))
}

#[test]
fn real_hello_yields_sni_and_alpn() {
    let bytes = rustls_hello("api.openai.com", true);
    assert_eq!(
        classify(&bytes),
        hello(Some("api.openai.com"), &["h2", "http/1.1"])
    );
}

#[test]
fn bytes_after_the_hello_are_ignored() {
    let mut bytes = rustls_hello("api.openai.com", true);
    bytes.extend_from_slice(&[0x17, 0x03, 0x03, 0, 1, 0]);
    assert_eq!(
        classify(&bytes),
        hello(Some("api.openai.com"), &["h2", "http/1.1"])
    );
}

#[test]
fn every_truncation_prefix_needs_more() {
    let bytes = rustls_hello("api.openai.com", true);
    for len in 0..bytes.len() {
        assert_eq!(
            classify(&bytes[..len]),
            Classified::NeedMore,
            "prefix {len}"
        );
    }
}

#[test]
fn hello_without_sni() {
    let bytes = rustls_hello("api.openai.com", false);
    assert_eq!(classify(&bytes), hello(None, &["h2", "http/1.1"]));
}

#[test]
fn hello_split_across_two_records_at_every_point() {
    let single = rustls_hello("api.openai.com", true);
    let payload_len = single.len() - 5;
    for at in 1..payload_len {
        let split = split_record(&single, at);
        assert_eq!(
            classify(&split),
            hello(Some("api.openai.com"), &["h2", "http/1.1"]),
            "split at {at}"
        );
    }
    let split = split_record(&single, payload_len / 2);
    for len in 0..split.len() {
        assert_eq!(
            classify(&split[..len]),
            Classified::NeedMore,
            "prefix {len}"
        );
    }
}

#[test]
fn other_protocols_are_not_tls() {
    for bytes in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"PRI * HTTP/2.0\r\n",
        &[0x16, 0x02],
        &[0x80, 0x2e, 0x01],
    ] {
        assert_eq!(classify(bytes), Classified::NotTls, "{bytes:?}");
    }
}

#[test]
fn sni_is_lowercased_and_root_dot_dropped() {
    let bytes = build_hello(&[sni_ext(0, b"API.OpenAI.com.")]);
    assert_eq!(classify(&bytes), hello(Some("api.openai.com"), &[]));
}

#[test]
fn bad_server_names_are_malformed() {
    let cases: [((u16, Vec<u8>), &str); 7] = [
        (
            sni_ext(1, b"api.openai.com"),
            "server_name entry is not a host_name",
        ),
        (
            sni_ext(0, b"api.\xffopenai.com"),
            "server name is not UTF-8",
        ),
        (
            sni_ext(0, b"api openai.com"),
            "invalid character in server name",
        ),
        (
            sni_ext(0, b"api..openai.com"),
            "server name label length out of range",
        ),
        (sni_ext(0, b""), "server name length out of range"),
        ((0, u16_vec(&[])), "empty server_name list"),
        ((0, vec![0, 5, 0]), "truncated server_name list"),
    ];
    for (ext, reason) in cases {
        let bytes = build_hello(std::slice::from_ref(&ext));
        assert_eq!(classify(&bytes), Classified::Malformed(reason), "{ext:?}");
    }
    let twice = build_hello(&[sni_ext(0, b"a.example"), sni_ext(0, b"b.example")]);
    assert_eq!(
        classify(&twice),
        Classified::Malformed("duplicate server_name")
    );
}

#[test]
fn truncated_extensions_are_malformed() {
    let mut bytes = build_hello(&[sni_ext(0, b"api.openai.com")]);
    // Claim one more extension byte than the hello holds, keeping the outer lengths consistent.
    let ext_block_len_at = 5 + 4 + 2 + 32 + 1 + 4 + 2;
    bytes[ext_block_len_at + 1] += 1;
    assert_eq!(
        classify(&bytes),
        Classified::Malformed("truncated extensions")
    );
}

#[test]
fn inconsistent_records_are_malformed() {
    let server_hello = [0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00];
    assert!(matches!(classify(&server_hello), Classified::Malformed(_)));
    let empty_record = [0x16, 0x03, 0x01, 0x00, 0x00];
    assert!(matches!(classify(&empty_record), Classified::Malformed(_)));
    let oversized_record = [0x16, 0x03, 0x01, 0x40, 0x01];
    assert!(matches!(
        classify(&oversized_record),
        Classified::Malformed(_)
    ));
    let huge_hello = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00];
    assert!(matches!(classify(&huge_hello), Classified::Malformed(_)));

    let single = rustls_hello("api.openai.com", true);
    let mut interleaved = split_record(&single, 10)[..15].to_vec();
    interleaved.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
    assert!(matches!(classify(&interleaved), Classified::Malformed(_)));
}

#[test]
fn hello_that_never_completes_within_the_budget_is_malformed() {
    // Declares a 16000-byte hello but sends it in 100-byte records: the record headers push it
    // past the peek budget.
    let mut payload = vec![1, 0x00, 0x3e, 0x80];
    payload.resize(4 + 16_000, 0);
    let mut bytes = Vec::new();
    for chunk in payload.chunks(100) {
        bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, chunk.len() as u8]);
        bytes.extend_from_slice(chunk);
    }
    assert_eq!(classify(&bytes[..1000]), Classified::NeedMore);
    assert!(matches!(
        classify(&bytes[..MAX_CLIENT_HELLO]),
        Classified::Malformed(_)
    ));
    assert!(matches!(classify(&bytes), Classified::Malformed(_)));
}

/// xorshift64*: deterministic pseudo-random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for round in 0..20_000 {
        let len = rng.below(700);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Most rounds look like TLS so the parser gets past the first checks.
        if round % 4 != 0 && bytes.len() >= 6 {
            bytes[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
            bytes[5] = 1;
        }
        let _ = classify(&bytes);
    }
}

#[test]
fn mutated_real_hellos_never_panic() {
    let original = rustls_hello("api.openai.com", true);
    let mut rng = Rng(0x0ddb_a11c_afe0_f00d);
    for _ in 0..20_000 {
        let mut bytes = original.clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        bytes.truncate(rng.below(bytes.len() + 1));
        let _ = classify(&bytes);
    }
}
