//! The test fixtures of the console and API tests: headless Chromium signs in at the fake OpenID
//! provider (authorization code + PKCE), the code is redeemed over HTTP, the tokens verify against
//! the published keys; keys rotate.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use warden_tests::background::BackgroundRuntime;
use warden_tests::browser::{processes_naming, Browser, BrowserOptions};
use warden_tests::env::require_browser;
use warden_tests::fake_oidc::http_client::{self, HttpReply};
use warden_tests::fake_oidc::{pkce, FakeIdp, User};
use warden_tests::wait;

const PAGE_DEADLINE: Duration = Duration::from_secs(60);

/// A relying party's redirect target on loopback: records each query it gets, answers a page.
struct Callback {
    url: String,
    queries: Arc<Mutex<Vec<String>>>,
    _runtime: BackgroundRuntime,
}

impl Callback {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/callback", listener.local_addr().unwrap());
        let queries = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&queries);
        let runtime = BackgroundRuntime::serve("the callback", listener, |listener| async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<_>| {
                        if request.uri().path() == "/callback" {
                            let query = request.uri().query().unwrap_or("").to_owned();
                            recorded.lock().unwrap().push(query);
                        }
                        async {
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", "text/html")
                                    .body(Full::new(Bytes::from_static(
                                        b"<!doctype html><title>RP</title><h1 id=\"done\">Signed in</h1>",
                                    )))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            url,
            queries,
            _runtime: runtime,
        }
    }

    fn wait_for_query(&self, n: usize) -> Vec<(String, String)> {
        let query = wait::until("the IdP's redirect to the callback", PAGE_DEADLINE, || {
            self.queries.lock().unwrap().get(n).cloned()
        });
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {pairs:?}"))
}

fn alice_idp() -> FakeIdp {
    let idp = FakeIdp::start();
    idp.add_user(User::new("alice", &["warden-admins", "sre"]));
    idp.sign_in_as("alice");
    idp
}

fn redeem(idp: &FakeIdp, code: &str, redirect_uri: &str, verifier: &str) -> HttpReply {
    http_client::post_form(
        &format!("{}/token", idp.issuer()),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", &idp.client_id()),
            ("code_verifier", verifier),
        ],
        &[],
    )
}

/// Verifies `token` with the key `/jwks` publishes for its kid, as a relying party does.
fn verify_with_published_keys(idp: &FakeIdp, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwks: JwkSet =
        serde_json::from_value(http_client::get(&format!("{}/jwks", idp.issuer())).json()).unwrap();
    let kid = header.kid.expect("the token names its key");
    let jwk = jwks
        .find(&kid)
        .unwrap_or_else(|| panic!("/jwks does not publish {kid}"));
    let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[idp.client_id()]);
    validation.set_issuer(&[idp.issuer()]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap_or_else(|e| panic!("{token} does not verify: {e}"))
        .claims
}

#[test]
fn chromium_signs_in_with_pkce_and_the_tokens_verify_against_the_jwks() {
    if !require_browser() {
        return;
    }
    let idp = alice_idp();
    let callback = Callback::start();
    let browser = Browser::start_with(
        "fake-idp",
        BrowserOptions {
            map_to_loopback: vec![("rp.test".to_owned(), Ipv4Addr::LOCALHOST.into())],
            ..BrowserOptions::default()
        },
    );

    // A wrong verifier is refused (and burns the code).
    let verifier = pkce::new_verifier();
    browser.goto(&idp.authorize_url(&callback.url, &verifier, "state-1", "nonce-1"));
    browser.wait_for("#done", PAGE_DEADLINE);
    let first = callback.wait_for_query(0);
    assert_eq!(param(&first, "state"), "state-1");
    let refused = redeem(
        &idp,
        param(&first, "code"),
        &callback.url,
        &pkce::new_verifier(),
    );
    assert_eq!(refused.status, 400, "{:?}", refused);
    assert_eq!(refused.json()["error"], "invalid_grant");

    // The right verifier gets tokens.
    let verifier = pkce::new_verifier();
    browser.goto(&idp.authorize_url(&callback.url, &verifier, "state-2", "nonce-2"));
    browser.wait_for("#done", PAGE_DEADLINE);
    assert!(
        browser.current_url().starts_with(&callback.url),
        "{}",
        browser.current_url()
    );
    assert_eq!(browser.text("#done"), "Signed in");
    let second = callback.wait_for_query(1);
    assert_eq!(param(&second, "state"), "state-2");
    let tokens = redeem(&idp, param(&second, "code"), &callback.url, &verifier);
    assert_eq!(
        tokens.status,
        200,
        "{}",
        String::from_utf8_lossy(&tokens.body)
    );
    let tokens = tokens.json();
    assert_eq!(tokens["token_type"], "Bearer");

    let id = verify_with_published_keys(&idp, tokens["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["nonce"], "nonce-2");
    assert_eq!(id["email"], "alice@example.test");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["groups"], serde_json::json!(["warden-admins", "sre"]));
    let access = verify_with_published_keys(&idp, tokens["access_token"].as_str().unwrap());
    assert_eq!(access["aud"], idp.client_id());
    assert_eq!(access["sub"], "alice");

    let shot = browser.screenshot("fake-idp-signed-in");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", shot.display());

    // A name mapped to loopback loads; any other destination goes to the dead proxy (so not even an
    // IP literal could leave the machine), and every connection Chromium holds is to loopback.
    let mapped = callback.url.replace("127.0.0.1", "rp.test");
    browser.goto(&format!("{mapped}?mapped=1"));
    browser.wait_for("#done", PAGE_DEADLINE);
    assert_eq!(
        callback.wait_for_query(2),
        [("mapped".to_owned(), "1".to_owned())]
    );
    let offsite = browser
        .try_goto("http://warden-test-never-resolves.example/")
        .expect_err("a page off loopback loaded");
    assert!(offsite.contains("ERR_PROXY_CONNECTION_FAILED"), "{offsite}");
    let peers = browser.tcp_peers();
    assert!(!peers.is_empty(), "no TCP sockets found for Chromium");
    assert!(
        peers.iter().all(|peer| peer.ip().is_loopback()),
        "Chromium connected off loopback: {peers:?}"
    );

    // Dropping the browser ends chromedriver and every Chromium process.
    let marker = browser.process_marker();
    drop(browser);
    assert_eq!(processes_naming(&marker), Vec::<i32>::new(), "left running");
}

#[test]
fn after_rotation_new_tokens_carry_the_new_kid_and_the_jwks_has_both() {
    let idp = alice_idp();
    let discovery = http_client::get(&format!(
        "{}/.well-known/openid-configuration",
        idp.issuer()
    ))
    .json();
    assert_eq!(discovery["issuer"], idp.issuer());
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );

    let sign_in = |verifier: &str| -> Value {
        let redirect_uri = "http://127.0.0.1:9/cb";
        let authorize = http_client::get(&idp.authorize_url(redirect_uri, verifier, "s", "n"));
        assert_eq!(authorize.status, 302);
        let location = url::Url::parse(authorize.header("location").unwrap()).unwrap();
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {location}"));
        let reply = redeem(&idp, &code, redirect_uri, verifier);
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    };
    let kid_of = |token: &Value| {
        jsonwebtoken::decode_header(token.as_str().unwrap())
            .unwrap()
            .kid
            .unwrap()
    };
    let published = || -> Vec<String> {
        http_client::get(&format!("{}/jwks", idp.issuer())).json()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|key| key["kty"] == "RSA")
            .map(|key| key["kid"].as_str().unwrap().to_owned())
            .collect()
    };

    let before = sign_in(&pkce::new_verifier());
    let old_kid = kid_of(&before["id_token"]);
    let fetches = idp.jwks_fetches();
    let new_kid = idp.rotate_key();
    assert_ne!(new_kid, old_kid);
    let after = sign_in(&pkce::new_verifier());
    assert_eq!(kid_of(&after["id_token"]), new_kid);
    assert_eq!(kid_of(&after["access_token"]), new_kid);
    assert_eq!(published(), [old_kid.clone(), new_kid.clone()]);
    assert_eq!(idp.jwks_fetches(), fetches + 1);
    verify_with_published_keys(&idp, before["id_token"].as_str().unwrap());
    verify_with_published_keys(&idp, after["id_token"].as_str().unwrap());

    idp.retire_old_keys();
    assert_eq!(published(), [new_kid]);
}

/// An HTTPS page on loopback whose self-signed leaf (for 127.0.0.1) no trust store knows, like the
/// console's leaf from Warden's CA. Returns its URL, its certificate (PEM) and the server guard.
fn untrusted_https_page() -> (String, String, BackgroundRuntime) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let runtime = BackgroundRuntime::serve("the HTTPS page", listener, |listener| async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_request: http::Request<_>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"<!doctype html><h1 id=\"secure\">TLS page</h1>"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, cert.pem(), runtime)
}

#[test]
fn chromium_trusts_a_certificate_only_by_its_spki_hash() {
    if !require_browser() {
        return;
    }
    let (url, cert_pem, _server) = untrusted_https_page();
    let mut browser = Browser::start("fake-idp-tls");
    // Chromium shows its certificate interstitial instead of the page (navigation "succeeds").
    let _ = browser.try_goto(&url);
    let page = browser
        .execute("return [document.getElementById('secure') !== null, document.body.innerText]");
    assert_eq!(
        page[0], false,
        "an unknown certificate was accepted: {page}"
    );
    assert!(
        page[1].as_str().unwrap_or("").contains("ERR_CERT"),
        "no certificate error shown: {page}"
    );

    browser.trust_cert(&cert_pem);
    browser.goto(&url);
    browser.wait_for("#secure", PAGE_DEADLINE);
    assert_eq!(browser.text("#secure"), "TLS page");
}
