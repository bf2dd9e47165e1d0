use serde_json::json;

use super::*;
use crate::oidc::test_support::{claims, jwks, now, FakeIssuer, TestKey};

const ISSUER: &str = "https://idp.example.test/realms/warden";

fn verifier_for(keys: &[&TestKey], audiences: &[&str], leeway: u64) -> TokenVerifier {
    let json = serde_json::to_vec(&jwks(keys)).unwrap();
    let set = KeySet::parse(&json, "test").unwrap();
    let audiences = audiences.iter().map(|a| a.to_string()).collect();
    TokenVerifier::from_key_set(ISSUER, audiences, set, leeway)
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn accepts_each_allowed_algorithm_and_reads_the_claims() {
    for key in [
        TestKey::rsa("rsa"),
        TestKey::es256("ec"),
        TestKey::ed25519("ed"),
    ] {
        let verifier = verifier_for(&[&key], &["warden"], 0);
        let token = key.sign(&claims(ISSUER));
        let verified = verifier.verify_cached(&token).unwrap();
        assert_eq!(verified.subject, "alice-id");
        assert_eq!(verified.email.as_deref(), Some("alice@example.test"));
        assert_eq!(verified.nonce.as_deref(), Some("n-1"));
        assert_eq!(verified.preferred_username, None);
        assert!(verified.expires_at > now());
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused_before_any_key_lookup() {
    // The classic key-confusion attack: an HMAC over the token keyed with the public key's bytes.
    let rsa = TestKey::rsa("rsa");
    let public = serde_json::to_vec(&rsa.jwk).unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims(ISSUER),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    let verifier = verifier_for(&[&rsa], &["warden"], 0);
    assert_eq!(
        verifier.verify_cached(&token),
        Err(TokenError::AlgorithmNotAllowed("HS256".into()))
    );
}

#[test]
fn alg_none_and_unknown_algorithms_are_refused() {
    let verifier = verifier_for(&[&TestKey::rsa("rsa")], &["warden"], 0);
    for alg in ["none", "PS256", "ES384", "RS512"] {
        let token = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "kid": "rsa"})),
            b64(&claims(ISSUER))
        );
        assert_eq!(
            verifier.verify_cached(&token),
            Err(TokenError::AlgorithmNotAllowed(alg.into())),
            "{alg}"
        );
    }
}

#[test]
fn malformed_tokens_are_refused() {
    let verifier = verifier_for(&[&TestKey::rsa("rsa")], &["warden"], 0);
    let not_json = format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode("not json"));
    for token in ["", "a.b", "a.b.c.d", "!!.e30.c2ln", not_json.as_str()] {
        assert_eq!(
            verifier.verify_cached(token),
            Err(TokenError::Malformed),
            "{token}"
        );
    }
}

#[test]
fn a_key_is_used_only_with_its_own_algorithm() {
    let rsa = TestKey::rsa("shared");
    let ec = TestKey::es256("shared");
    // An ES256 token naming an RSA key's kid.
    let verifier = verifier_for(&[&rsa], &["warden"], 0);
    assert_eq!(
        verifier.verify_cached(&ec.sign(&claims(ISSUER))),
        Err(TokenError::AlgorithmNotAllowed("ES256".into()))
    );
    // An RSA JWK that declares another algorithm refuses RS256 tokens.
    let mut declared = TestKey::rsa("declared");
    declared.jwk["alg"] = "PS256".into();
    let verifier = verifier_for(&[&declared], &["warden"], 0);
    assert_eq!(
        verifier.verify_cached(&declared.sign(&claims(ISSUER))),
        Err(TokenError::AlgorithmNotAllowed("RS256".into()))
    );
    declared.jwk["alg"] = "RS256".into();
    let verifier = verifier_for(&[&declared], &["warden"], 0);
    verifier
        .verify_cached(&declared.sign(&claims(ISSUER)))
        .unwrap();
}

#[test]
fn another_keys_signature_is_refused() {
    let published = TestKey::es256("k");
    let forger = TestKey::es256("k");
    let verifier = verifier_for(&[&published], &["warden"], 0);
    assert_eq!(
        verifier.verify_cached(&forger.sign(&claims(ISSUER))),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn unknown_kid_is_refused_by_a_fixed_key_set() {
    let verifier = verifier_for(&[&TestKey::rsa("rsa")], &["warden"], 0);
    let token = TestKey::ed25519("other").sign(&claims(ISSUER));
    assert_eq!(
        verifier.verify_cached(&token),
        Err(TokenError::UnknownKey(Some("other".into())))
    );
}

#[test]
fn issuer_audience_and_required_claims_are_checked() {
    let key = TestKey::ed25519("ed");
    let verifier = verifier_for(&[&key], &["warden", "console"], 0);
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims(ISSUER);
        change(&mut c);
        verifier.verify_cached(&key.sign(&c))
    };
    assert_eq!(
        with(&|c| c["iss"] = "https://evil.example".into()),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        with(&|c| c["iss"] = format!("{ISSUER}/").into()),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        with(&|c| c["aud"] = "someone-else".into()),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        with(&|c| c["aud"] = json!(["a", "b"])),
        Err(TokenError::WrongAudience)
    );
    assert!(with(&|c| c["aud"] = json!(["a", "console"])).is_ok());
    assert!(with(&|c| c["aud"] = "console".into()).is_ok());
    let missing = with(&|c| {
        c.as_object_mut().unwrap().remove("aud");
    });
    assert_eq!(missing, Err(TokenError::MissingClaim("aud")));
    let missing = with(&|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert_eq!(missing, Err(TokenError::MissingClaim("exp")));
    let missing = with(&|c| {
        c.as_object_mut().unwrap().remove("sub");
    });
    assert_eq!(missing, Err(TokenError::MissingClaim("sub")));
}

#[test]
fn empty_audiences_leave_aud_unchecked() {
    let key = TestKey::rsa("rsa");
    let verifier = verifier_for(&[&key], &[], 0);
    let mut c = claims(ISSUER);
    c["aud"] = "https://kubernetes.default.svc".into();
    verifier.verify_cached(&key.sign(&c)).unwrap();
    c.as_object_mut().unwrap().remove("aud");
    verifier.verify_cached(&key.sign(&c)).unwrap();
}

#[test]
fn lifetime_is_checked_with_capped_leeway() {
    let key = TestKey::es256("ec");
    let at = |exp: i64, nbf: Option<i64>| {
        let mut c = claims(ISSUER);
        c["exp"] = exp.into();
        if let Some(nbf) = nbf {
            c["nbf"] = nbf.into();
        }
        key.sign(&c)
    };
    let strict = verifier_for(&[&key], &["warden"], 0);
    let lenient = verifier_for(&[&key], &["warden"], 60);
    let asks_too_much = verifier_for(&[&key], &["warden"], 3600);
    let recently_expired = at(now() - 30, None);
    assert_eq!(
        strict.verify_cached(&recently_expired),
        Err(TokenError::Expired)
    );
    lenient.verify_cached(&recently_expired).unwrap();
    let long_expired = at(now() - 600, None);
    assert_eq!(
        asks_too_much.verify_cached(&long_expired),
        Err(TokenError::Expired)
    );
    let future = at(now() + 600, Some(now() + 30));
    assert_eq!(strict.verify_cached(&future), Err(TokenError::NotYetValid));
    lenient.verify_cached(&future).unwrap();
    let far_future = at(now() + 600, Some(now() + 300));
    assert_eq!(
        asks_too_much.verify_cached(&far_future),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn errors_never_carry_the_token_or_its_claims() {
    let key = TestKey::rsa("rsa");
    let verifier = verifier_for(&[&TestKey::rsa("other")], &["warden"], 0);
    let token = key.sign(&claims(ISSUER));
    let err = verifier.verify_cached(&token).unwrap_err().to_string();
    assert!(!err.contains(&token) && !err.contains("alice"), "{err}");
}

#[test]
fn strings_reads_strings_arrays_and_dotted_paths() {
    let key = TestKey::rsa("rsa");
    let mut c = claims(ISSUER);
    c["groups"] = json!(["ops", 7, "dev"]);
    c["realm_access"] = json!({"roles": ["approver"]});
    c["a.b"] = "dotted key".into();
    let verified = verifier_for(&[&key], &["warden"], 0)
        .verify_cached(&key.sign(&c))
        .unwrap();
    assert_eq!(verified.strings("groups"), ["ops", "dev"]);
    assert_eq!(verified.strings("email"), ["alice@example.test"]);
    assert_eq!(verified.strings("realm_access.roles"), ["approver"]);
    assert_eq!(verified.strings("a.b"), ["dotted key"]);
    assert!(verified.strings("exp").is_empty());
    assert!(verified.strings("realm_access.missing").is_empty());
    assert!(verified.strings("nothing").is_empty());
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_and_then_is_rate_limited() {
    let idp = FakeIssuer::start().await;
    let old = TestKey::rsa("rsa-1");
    let rotated = TestKey::es256("rotated");
    let http = OidcHttp::new(None).unwrap();
    let (verifier, metadata) = TokenVerifier::discover(http, &idp.issuer, vec!["warden".into()], 0)
        .await
        .unwrap();
    assert_eq!(metadata.token_endpoint, format!("{}/token", idp.issuer));
    assert_eq!(idp.jwks_hits(), 1);
    verifier
        .verify(&old.sign(&claims(&idp.issuer)))
        .await
        .unwrap();
    assert_eq!(idp.jwks_hits(), 1, "a known kid needs no fetch");

    // The provider rotates right after start: the new kid is found by one refetch at once (the
    // start-up fetch does not count against the rate limit).
    idp.set_jwks(jwks(&[&old, &rotated]));
    let verified = verifier
        .verify(&rotated.sign(&claims(&idp.issuer)))
        .await
        .unwrap();
    assert_eq!(verified.subject, "alice-id");
    assert_eq!(idp.jwks_hits(), 2);

    // A forged kid right after: refused without asking the provider again.
    let ghost = TestKey::ed25519("ghost").sign(&claims(&idp.issuer));
    assert_eq!(
        verifier.verify(&ghost).await,
        Err(TokenError::UnknownKey(Some("ghost".into())))
    );
    assert_eq!(idp.jwks_hits(), 2, "rate-limited");

    // Once the interval has passed, concurrent misses share one fetch.
    verifier.inner.keys.forget_last_fetch().await;
    let (a, b, c) = tokio::join!(
        verifier.verify(&ghost),
        verifier.verify(&ghost),
        verifier.verify(&ghost)
    );
    for result in [a, b, c] {
        assert_eq!(result, Err(TokenError::UnknownKey(Some("ghost".into()))));
    }
    assert_eq!(idp.jwks_hits(), 3, "one fetch for three misses");
}

#[tokio::test]
async fn a_failed_refetch_keeps_the_old_keys_and_says_keys_unavailable() {
    let idp = FakeIssuer::start().await;
    let old = TestKey::rsa("rsa-1");
    let http = OidcHttp::new(None).unwrap();
    let (verifier, _) = TokenVerifier::discover(http, &idp.issuer, vec!["warden".into()], 0)
        .await
        .unwrap();
    idp.set_jwks(json!({"keys": []}));
    verifier.inner.keys.forget_last_fetch().await;
    let ghost = TestKey::ed25519("ghost").sign(&claims(&idp.issuer));
    assert!(matches!(
        verifier.verify(&ghost).await,
        Err(TokenError::KeysUnavailable(_))
    ));
    assert!(verifier.refresh_keys().await.is_err());
    verifier
        .verify(&old.sign(&claims(&idp.issuer)))
        .await
        .unwrap();
}

#[test]
fn jwks_file_skips_unusable_keys_and_refuses_a_set_without_any() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("jwks.json");
    let key = TestKey::ed25519("ed");
    let mut set = jwks(&[&key]);
    set["keys"].as_array_mut().unwrap().extend([
        json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"}),
        json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
        json!({"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"}),
        json!({"no": "kty"}),
    ]);
    std::fs::write(&path, set.to_string()).unwrap();
    let verifier = TokenVerifier::from_jwks_file(ISSUER, Vec::new(), &path, 0).unwrap();
    verifier.verify_cached(&key.sign(&claims(ISSUER))).unwrap();
    assert!(!verifier.refreshes_keys());

    std::fs::write(
        &path,
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string(),
    )
    .unwrap();
    let err = TokenVerifier::from_jwks_file(ISSUER, Vec::new(), &path, 0)
        .err()
        .unwrap();
    assert!(matches!(err, OidcError::NoUsableKeys { .. }), "{err}");
    let err = TokenVerifier::from_jwks_file(ISSUER, Vec::new(), &tmp.path().join("nope"), 0)
        .err()
        .unwrap();
    assert!(err.to_string().contains("nope"), "{err}");
}
