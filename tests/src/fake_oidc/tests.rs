//! The provider's pieces without HTTP: minted claims and signatures, rotation, the code flow's checks.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

use super::flow::{self, Reply};
use super::*;

fn idp_with_alice() -> FakeIdp {
    let idp = FakeIdp::start();
    idp.add_user(User::new("alice", &["warden-admins"]));
    idp.sign_in_as("alice");
    idp
}

/// Verifies `token` against the provider's published keys, like a relying party would.
fn verify(idp: &FakeIdp, token: &str) -> jsonwebtoken::errors::Result<Value> {
    let header = jsonwebtoken::decode_header(token)?;
    let jwks: JwkSet = serde_json::from_value(idp.jwks()).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap_or(""))
        .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[idp.client_id()]);
    validation.set_issuer(&[idp.issuer()]);
    validation.validate_nbf = true;
    let key = DecodingKey::from_jwk(jwk)?;
    Ok(jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn minted_tokens_of_every_alg_verify_against_the_jwks_with_the_users_claims() {
    let idp = idp_with_alice();
    for alg in [Alg::RS256, Alg::ES256, Alg::EdDSA] {
        let token = idp.token(&TokenSpec {
            alg,
            ..TokenSpec::default()
        });
        let claims = verify(&idp, &token).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["email"], "alice@example.test");
        assert_eq!(claims["groups"], serde_json::json!(["warden-admins"]));
        let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert_eq!(lifetime, DEFAULT_LIFETIME_SECS);
    }
}

#[test]
fn overrides_make_tokens_a_relying_party_refuses() {
    let idp = idp_with_alice();
    let refused = |spec: TokenSpec| verify(&idp, &idp.token(&spec)).unwrap_err();
    let alice = || TokenSpec::for_user("alice");
    use jsonwebtoken::errors::ErrorKind;
    let expired = refused(TokenSpec {
        exp_offset_secs: -600,
        ..alice()
    });
    assert_eq!(*expired.kind(), ErrorKind::ExpiredSignature);
    let early = refused(TokenSpec {
        nbf_offset_secs: 600,
        ..alice()
    });
    assert_eq!(*early.kind(), ErrorKind::ImmatureSignature);
    let aud = refused(TokenSpec {
        aud: Some("someone-else".into()),
        ..alice()
    });
    assert_eq!(*aud.kind(), ErrorKind::InvalidAudience);
    let iss = refused(TokenSpec {
        iss: Some("http://127.0.0.1:1".into()),
        ..alice()
    });
    assert_eq!(*iss.kind(), ErrorKind::InvalidIssuer);
    let unknown_kid = refused(TokenSpec {
        kid: Some("never-published".into()),
        ..alice()
    });
    assert_eq!(*unknown_kid.kind(), ErrorKind::InvalidKeyFormat);
    let groups = idp.token(&TokenSpec {
        groups: Some(vec!["viewers".into()]),
        ..alice()
    });
    assert_eq!(
        verify(&idp, &groups).unwrap()["groups"],
        serde_json::json!(["viewers"])
    );
}

#[test]
fn forged_tokens_have_the_attack_shapes() {
    let idp = idp_with_alice();
    let none = idp.alg_none_token(&TokenSpec::default());
    assert!(none.ends_with('.'), "{none}");
    let header = none.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "none");

    let (pem, der) = idp.rsa_public_key();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    for (token, secret) in [
        (
            idp.hs256_signed_with_public_key(&TokenSpec::default()),
            pem.as_bytes(),
        ),
        (
            idp.hs256_signed_with_public_key_der(&TokenSpec::default()),
            &der[..],
        ),
    ] {
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
        assert_eq!(header.kid.as_deref(), Some("rsa-1"));
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&[idp.client_id()]);
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_secret(secret), &validation)
            .expect("HMAC'd with the public key's bytes");
        // A verifier that takes the algorithm from its key, not the header, refuses it.
        assert!(verify(&idp, &token).is_err());
    }
}

#[test]
fn rotation_signs_with_a_new_kid_and_keeps_the_old_key_until_retired() {
    let idp = idp_with_alice();
    let old = idp.token(&TokenSpec::default());
    let new_kid = idp.rotate_key();
    assert_eq!(new_kid, "rsa-2");
    let new = idp.token(&TokenSpec::default());
    assert_eq!(
        jsonwebtoken::decode_header(&new).unwrap().kid.as_deref(),
        Some("rsa-2")
    );
    verify(&idp, &old).expect("old key still published");
    verify(&idp, &new).expect("new key published");
    idp.retire_old_keys();
    assert!(verify(&idp, &old).is_err(), "retired key still published");
    verify(&idp, &new).expect("current key stays");
    let kids: Vec<String> = idp.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, ["es256-1", "ed25519-1", "rsa-2"]);
}

/// Runs /authorize for alice with `verifier`'s challenge; returns the code.
fn authorize_code(idp: &FakeIdp, redirect_uri: &str, verifier: &str) -> String {
    let challenge = pkce::s256_challenge(verifier);
    let reply = flow::authorize(
        &idp.state,
        &pairs(&[
            ("response_type", "code"),
            ("client_id", "warden-console"),
            ("redirect_uri", redirect_uri),
            ("scope", "openid email"),
            ("state", "st-1"),
            ("nonce", "n-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]),
    );
    let Reply::Redirect(location) = reply else {
        panic!("{reply:?}")
    };
    let url = url::Url::parse(&location).unwrap();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["state"], "st-1");
    query["code"].clone()
}

fn redeem(idp: &FakeIdp, code: &str, redirect_uri: &str, verifier: &str) -> Reply {
    flow::token(
        &idp.state,
        &pairs(&[
            ("grant_type", "authorization_code"),
            ("client_id", "warden-console"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ]),
        None,
    )
}

fn error_of(reply: &Reply) -> &str {
    match reply {
        Reply::Json(_, body) => body["error"].as_str().unwrap_or(""),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_code_is_redeemed_once_with_its_verifier_and_redirect_uri() {
    let idp = idp_with_alice();
    let cb = "http://127.0.0.1:9/callback";
    let verifier = pkce::new_verifier();

    let code = authorize_code(&idp, cb, &verifier);
    assert_eq!(
        error_of(&redeem(&idp, &code, cb, &pkce::new_verifier())),
        "invalid_grant"
    );
    // The failed attempt burnt the code.
    assert_eq!(
        error_of(&redeem(&idp, &code, cb, &verifier)),
        "invalid_grant"
    );

    let code = authorize_code(&idp, cb, &verifier);
    let other_cb = "http://127.0.0.1:9/other";
    assert_eq!(
        error_of(&redeem(&idp, &code, other_cb, &verifier)),
        "invalid_grant"
    );

    let code = authorize_code(&idp, cb, &verifier);
    let Reply::Json(status, body) = redeem(&idp, &code, cb, &verifier) else {
        panic!()
    };
    assert_eq!(status, http::StatusCode::OK, "{body}");
    let id = verify(&idp, body["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["aud"], "warden-console");
    let access = verify(&idp, body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(access["sub"], "alice");
    assert_eq!(access["client_id"], "warden-console");
    assert_eq!(
        error_of(&redeem(&idp, &code, cb, &verifier)),
        "invalid_grant"
    );
}

#[test]
fn authorize_refuses_without_pkce_or_off_loopback() {
    let idp = idp_with_alice();
    let base = [
        ("response_type", "code"),
        ("client_id", "warden-console"),
        ("redirect_uri", "http://127.0.0.1:9/cb"),
        ("scope", "openid"),
        ("state", "s"),
        ("nonce", "n"),
    ];
    let Reply::Redirect(location) = flow::authorize(&idp.state, &pairs(&base)) else {
        panic!()
    };
    assert!(location.contains("error=invalid_request"), "{location}");
    assert!(location.contains("state=s"), "{location}");

    let mut plain = pairs(&base);
    plain.extend(pairs(&[
        ("code_challenge", &pkce::new_verifier()),
        ("code_challenge_method", "plain"),
    ]));
    let Reply::Redirect(location) = flow::authorize(&idp.state, &plain) else {
        panic!()
    };
    assert!(location.contains("S256"), "{location}");

    let mut away = pairs(&base);
    away[2].1 = "http://192.0.2.1/cb".to_owned();
    assert!(matches!(
        flow::authorize(&idp.state, &away),
        Reply::Page(http::StatusCode::BAD_REQUEST, _)
    ));
    let mut lookalike = pairs(&base);
    lookalike[2].1 = "http://console.test.example.com/cb".to_owned();
    assert!(matches!(
        flow::authorize(&idp.state, &lookalike),
        Reply::Page(http::StatusCode::BAD_REQUEST, _)
    ));
    let mut reserved = pairs(&base);
    reserved[2].1 = "https://console.test:8443/oidc/callback".to_owned();
    assert!(matches!(
        flow::authorize(&idp.state, &reserved),
        Reply::Redirect(_)
    ));
    let mut stranger = pairs(&base);
    stranger[1].1 = "not-registered".to_owned();
    assert!(matches!(
        flow::authorize(&idp.state, &stranger),
        Reply::Page(http::StatusCode::BAD_REQUEST, _)
    ));
}

#[test]
fn a_confidential_client_must_authenticate() {
    let idp = idp_with_alice();
    idp.register_client("cli", Some("s3cret"));
    let form = |secret: Option<&str>| {
        let mut form = pairs(&[
            ("grant_type", "authorization_code"),
            ("client_id", "cli"),
            ("code", "whatever"),
        ]);
        if let Some(secret) = secret {
            form.push(("client_secret".into(), secret.into()));
        }
        form
    };
    let wrong = flow::token(&idp.state, &form(Some("nope")), None);
    assert!(
        matches!(&wrong, Reply::Json(http::StatusCode::UNAUTHORIZED, _)),
        "{wrong:?}"
    );
    let missing = flow::token(&idp.state, &form(None), None);
    assert_eq!(error_of(&missing), "invalid_client");
    // Authenticated: now it is about the (unknown) code.
    let right = flow::token(&idp.state, &form(Some("s3cret")), None);
    assert_eq!(error_of(&right), "invalid_grant");
    let basic = flow::token(
        &idp.state,
        &form(None),
        Some(("cli".into(), "s3cret".into())),
    );
    assert_eq!(error_of(&basic), "invalid_grant");
}
