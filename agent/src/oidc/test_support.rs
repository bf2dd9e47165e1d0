//! Test keys that sign tokens, and a fake issuer on 127.0.0.1 serving discovery and a JWKS.
use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::{pem::PemObject, PrivatePkcs1KeyDer};
use serde_json::{json, Value};

const RSA_KEY_PEM: &[u8] = include_bytes!("test-data/rsa-test-key.pem");
const RSA_JWK: &str = include_str!("test-data/rsa-test-jwk.json");

/// A signing key and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub algorithm: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    /// The fixed RSA test key (test-data/), RS256.
    pub fn rsa(kid: &str) -> TestKey {
        let der = PrivatePkcs1KeyDer::from_pem_slice(RSA_KEY_PEM).unwrap();
        let mut jwk: Value = serde_json::from_str(RSA_JWK).unwrap();
        jwk["kid"] = kid.into();
        TestKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.secret_pkcs1_der()),
            jwk,
        }
    }

    /// A fresh P-256 key, ES256.
    pub fn es256(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        TestKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            }),
        }
    }

    /// A fresh Ed25519 key, EdDSA.
    pub fn ed25519(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        TestKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
            }),
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token any verifier of `issuer` for audience "warden" accepts, if its key is known.
pub fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer, "aud": "warden", "sub": "alice-id", "exp": now() + 300,
        "email": "alice@example.test", "nonce": "n-1",
    })
}

#[derive(Default)]
struct State {
    advertised_issuer: Option<String>,
    jwks: Value,
    jwks_hits: usize,
}

/// An issuer at http://127.0.0.1:PORT: discovery, `/jwks`, `/huge` (2 MiB), else 404.
pub struct FakeIssuer {
    pub issuer: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeIssuer {
    pub async fn start() -> FakeIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            jwks: jwks(&[&TestKey::rsa("rsa-1")]),
            ..State::default()
        }));
        let (served_state, served_issuer) = (state.clone(), issuer.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (state, issuer) = (served_state.clone(), served_issuer.clone());
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let response = respond(&state, &issuer, request.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), service));
            }
        });
        FakeIssuer {
            issuer,
            state,
            server,
        }
    }

    pub fn set_advertised_issuer(&self, issuer: &str) {
        self.state.lock().unwrap().advertised_issuer = Some(issuer.to_owned());
    }

    pub fn set_jwks(&self, jwks: Value) {
        self.state.lock().unwrap().jwks = jwks;
    }

    pub fn jwks_hits(&self) -> usize {
        self.state.lock().unwrap().jwks_hits
    }
}

impl Drop for FakeIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn respond(state: &Mutex<State>, issuer: &str, path: &str) -> hyper::Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    let body = match path {
        "/.well-known/openid-configuration" => json!({
            "issuer": state.advertised_issuer.clone().unwrap_or_else(|| issuer.to_owned()),
            "jwks_uri": format!("{issuer}/jwks"),
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "response_types_supported": ["code"],
        })
        .to_string(),
        "/jwks" => {
            state.jwks_hits += 1;
            state.jwks.to_string()
        }
        "/huge" => format!("\"{}\"", "x".repeat(2 * 1024 * 1024)),
        _ => {
            let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
            return response;
        }
    };
    hyper::Response::new(Full::new(Bytes::from(body)))
}
