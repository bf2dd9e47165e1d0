//! The fake provider's signing keys: committed RSA test keys, ES256 and Ed25519 keys made at start,
//! their JWKs, and which RSA key signs now.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs1KeyDer, SubjectPublicKeyInfoDer};
use serde_json::{json, Value};

use super::Alg;

/// RSA cannot be generated with ring: three 2048-bit keys made with `openssl genrsa`, test data only.
const RSA_TEST_KEYS: [(&str, &str); 3] = [
    (
        include_str!("keys/rsa-1.pem"),
        include_str!("keys/rsa-1.pub.pem"),
    ),
    (
        include_str!("keys/rsa-2.pem"),
        include_str!("keys/rsa-2.pub.pem"),
    ),
    (
        include_str!("keys/rsa-3.pem"),
        include_str!("keys/rsa-3.pub.pem"),
    ),
];

/// One key the provider can sign with, and what it publishes about it.
pub(super) struct SigningKey {
    pub kid: String,
    pub alg: Alg,
    pub encoding: EncodingKey,
    /// The public half as a JWK (kty, kid, alg, use, and n/e, crv/x/y or crv/x).
    pub jwk: Value,
    /// RSA only: the public key as `openssl rsa -pubout` writes it (SubjectPublicKeyInfo PEM).
    pub public_pem: Option<String>,
}

impl SigningKey {
    /// The `index`th committed RSA test key, with the kid `rsa-INDEX`.
    fn rsa(index: usize) -> Self {
        let (private_pem, public_pem) = RSA_TEST_KEYS[index];
        let der = PrivatePkcs1KeyDer::from_pem_slice(private_pem.as_bytes())
            .unwrap_or_else(|e| panic!("RSA test key {index} is not PKCS#1 PEM: {e}"));
        let pair = signature::RsaKeyPair::from_der(der.secret_pkcs1_der())
            .unwrap_or_else(|e| panic!("ring rejects RSA test key {index}: {e}"));
        let public: signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
        let kid = format!("rsa-{}", index + 1);
        Self {
            jwk: json!({
                "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                "n": URL_SAFE_NO_PAD.encode(&public.n),
                "e": URL_SAFE_NO_PAD.encode(&public.e),
            }),
            kid,
            alg: Alg::RS256,
            encoding: EncodingKey::from_rsa_der(der.secret_pkcs1_der()),
            public_pem: Some(public_pem.to_owned()),
        }
    }

    /// A fresh P-256 key.
    fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .expect("generating a P-256 key with ring");
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
            .expect("loading the P-256 key ring just made");
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        Self {
            kid: kid.to_owned(),
            alg: Alg::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
            }),
            public_pem: None,
        }
    }

    /// A fresh Ed25519 key.
    fn ed25519(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .expect("generating an Ed25519 key with ring");
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .expect("loading the Ed25519 key ring just made");
        Self {
            kid: kid.to_owned(),
            alg: Alg::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "OKP", "kid": kid, "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
            public_pem: None,
        }
    }
}

/// Every published key; the last RSA key is the one that signs RS256 tokens.
pub(super) struct Keyring {
    keys: Vec<SigningKey>,
    /// RSA test keys used so far (rotation takes the next one).
    rsa_used: usize,
}

impl Keyring {
    pub fn new() -> Self {
        Self {
            keys: vec![
                SigningKey::rsa(0),
                SigningKey::es256("es256-1"),
                SigningKey::ed25519("ed25519-1"),
            ],
            rsa_used: 1,
        }
    }

    /// The key that signs tokens of `alg` now.
    pub fn current(&self, alg: Alg) -> &SigningKey {
        self.keys
            .iter()
            .rev()
            .find(|key| key.alg == alg)
            .unwrap_or_else(|| panic!("the fake IdP has no {alg:?} key"))
    }

    /// Makes the next RSA test key the RS256 signing key; the old ones stay published.
    /// Returns the new kid.
    pub fn rotate(&mut self) -> String {
        assert!(
            self.rsa_used < RSA_TEST_KEYS.len(),
            "the fake IdP has only {} RSA test keys (tests/src/fake_oidc/keys/): rotate less \
             or commit another",
            RSA_TEST_KEYS.len()
        );
        let key = SigningKey::rsa(self.rsa_used);
        self.rsa_used += 1;
        let kid = key.kid.clone();
        self.keys.push(key);
        kid
    }

    /// Unpublishes every key that no longer signs (the RSA keys before the current one).
    pub fn retire_old(&mut self) {
        let current = self.current(Alg::RS256).kid.clone();
        self.keys
            .retain(|key| key.alg != Alg::RS256 || key.kid == current);
    }

    /// The JWK Set document (`{"keys":[…]}`).
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
    }

    /// The public key of the current RS256 signing key as PEM and as DER (SubjectPublicKeyInfo).
    pub fn rsa_public_key(&self) -> (String, Vec<u8>) {
        let pem = self
            .current(Alg::RS256)
            .public_pem
            .clone()
            .expect("RSA keys carry their public PEM");
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .expect("the committed public PEM is a SubjectPublicKeyInfo")
            .as_ref()
            .to_vec();
        (pem, der)
    }
}

impl Alg {
    pub(super) fn jsonwebtoken(self) -> Algorithm {
        match self {
            Alg::RS256 => Algorithm::RS256,
            Alg::ES256 => Algorithm::ES256,
            Alg::EdDSA => Algorithm::EdDSA,
        }
    }
}
