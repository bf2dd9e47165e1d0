//! The HTTPS admin API behind OIDC, end to end: a daemon with `[api]` discovers the fake
//! provider (its discovery document and JWKS, over loopback), and curl calls the API with bearer
//! tokens the provider minted. A valid token reads; each kind of bad token is refused 401 as
//! problem+json (one test each); a user without the role is refused 403; a rotated signing key is
//! picked up with one JWKS refetch; every answered request is a chain record naming the person.

use serde_json::{json, Value};
use warden_tests::console::{assert_done_by, people, ConsoleAgent};
use warden_tests::fake_oidc::{Alg, TokenSpec};

fn sessions(console: &ConsoleAgent, token: &str) -> warden_tests::console::ApiReply {
    console.call("GET", "/api/v1/sessions", Some(token), None)
}

#[test]
fn a_valid_token_reads_and_the_request_is_on_record_with_the_person() {
    let Some(console) = ConsoleAgent::start("api-valid") else {
        return;
    };
    let token = console.token_for(people::AUDREY_AUDITOR);
    let reply = sessions(&console, &token);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.content_type, "application/json", "{reply:?}");
    assert!(reply.json().is_array(), "{reply:?}");

    let me = console.call("GET", "/api/v1/me", Some(&token), None).json();
    assert_eq!(me["email"], "audrey@example.test", "{me:#}");
    assert_eq!(me["roles"], json!(["auditor"]), "{me:#}");
    assert!(
        me["csrf_token"].is_null(),
        "a bearer caller has no CSRF token: {me:#}"
    );

    let verify = console
        .call("GET", "/api/v1/audit/verify", Some(&token), None)
        .json();
    assert_eq!(verify["ok"], true, "{verify:#}");
    let status = console
        .call("GET", "/api/v1/status", Some(&token), None)
        .json();
    assert!(status["pid"].as_u64().is_some(), "{status:#}");
    assert_eq!(status["api"], console.origin(), "{status:#}");

    let calls: Vec<Value> = console
        .governance()
        .into_iter()
        .filter(|e| e["type"] == "api_request")
        .collect();
    let listed = calls
        .iter()
        .find(|e| e["target"] == "/api/v1/sessions")
        .unwrap_or_else(|| panic!("no record of GET /api/v1/sessions in {calls:#?}"));
    assert_eq!(listed["method"], "GET");
    assert_eq!(listed["status"], 200);
    assert_done_by(listed, people::AUDREY_AUDITOR);
    assert_eq!(
        listed["by"]["oidc"]["issuer"],
        console.idp.issuer(),
        "{listed:#}"
    );
    warden_tests::audit::assert_verifies(&console.agent.fx.daemon);
}

#[test]
fn no_token_is_refused_with_www_authenticate() {
    let Some(console) = ConsoleAgent::start("api-none") else {
        return;
    };
    console
        .call("GET", "/api/v1/sessions", None, None)
        .assert_problem(401, "sign in first");
    console
        .call("GET", "/api/v1/sessions", Some("not-a-jwt"), None)
        .assert_problem(401, "bearer token refused");
}

#[test]
fn an_expired_token_is_refused() {
    let Some(console) = ConsoleAgent::start("api-expired") else {
        return;
    };
    // Past the 60 s leeway.
    let token = console.idp.token(&TokenSpec {
        exp_offset_secs: -120,
        ..TokenSpec::for_user(people::AUDREY_AUDITOR)
    });
    sessions(&console, &token).assert_problem(401, "expired");
}

#[test]
fn a_token_for_another_audience_is_refused() {
    let Some(console) = ConsoleAgent::start("api-audience") else {
        return;
    };
    let token = console.idp.token(&TokenSpec {
        aud: Some("some-other-app".into()),
        ..TokenSpec::for_user(people::AUDREY_AUDITOR)
    });
    sessions(&console, &token).assert_problem(401, "audience");
}

#[test]
fn a_token_from_another_issuer_is_refused() {
    let Some(console) = ConsoleAgent::start("api-issuer") else {
        return;
    };
    let token = console.idp.token(&TokenSpec {
        iss: Some("https://login.attacker.example".into()),
        ..TokenSpec::for_user(people::AUDREY_AUDITOR)
    });
    sessions(&console, &token).assert_problem(401, "issuer");
}

#[test]
fn an_unsigned_alg_none_token_is_refused() {
    let Some(console) = ConsoleAgent::start("api-none-alg") else {
        return;
    };
    let token = console
        .idp
        .alg_none_token(&TokenSpec::for_user(people::ADA_ADMIN));
    sessions(&console, &token).assert_problem(401, "algorithm");
}

#[test]
fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    let Some(console) = ConsoleAgent::start("api-hs256") else {
        return;
    };
    let spec = TokenSpec::for_user(people::ADA_ADMIN);
    for token in [
        console.idp.hs256_signed_with_public_key(&spec),
        console.idp.hs256_signed_with_public_key_der(&spec),
    ] {
        sessions(&console, &token).assert_problem(401, "algorithm");
    }
}

#[test]
fn a_token_with_an_unknown_kid_is_refused_after_one_refetch() {
    let Some(console) = ConsoleAgent::start("api-kid") else {
        return;
    };
    let before = console.idp.jwks_fetches();
    let token = console.idp.token(&TokenSpec {
        kid: Some("never-published".into()),
        ..TokenSpec::for_user(people::AUDREY_AUDITOR)
    });
    sessions(&console, &token).assert_problem(401, "key");
    // Refetched once; a second try within the rate limit does not fetch again.
    assert_eq!(console.idp.jwks_fetches(), before + 1);
    sessions(&console, &token).assert_problem(401, "key");
    assert_eq!(console.idp.jwks_fetches(), before + 1);
}

#[test]
fn a_user_without_the_role_is_refused_403() {
    let Some(console) = ConsoleAgent::start("api-role") else {
        return;
    };
    // Signed in, but no group maps to a role: reads nothing.
    let eve = console.token_for(people::EVE_NO_ROLE);
    sessions(&console, &eve).assert_problem(403, "lacks the auditor role");
    // An auditor reads, but may not revoke (an admin's) nor decide (an approver's).
    let audrey = console.token_for(people::AUDREY_AUDITOR);
    console
        .call(
            "POST",
            "/api/v1/revocations",
            Some(&audrey),
            Some(&json!({"selector": "uid:4242", "reason": "test"})),
        )
        .assert_problem(403, "lacks the admin role");
    console
        .call(
            "POST",
            "/api/v1/approvals/ap-x/approve",
            Some(&audrey),
            Some(&json!({})),
        )
        .assert_problem(403, "lacks the approver role");
    // The refusals are on record too.
    let refused = console
        .governance()
        .into_iter()
        .filter(|e| e["type"] == "api_request" && e["status"] == 403)
        .count();
    assert_eq!(refused, 3);
}

#[test]
fn a_rotated_signing_key_is_picked_up() {
    let Some(console) = ConsoleAgent::start("api-rotate") else {
        return;
    };
    let old = console.token_for(people::AUDREY_AUDITOR);
    assert_eq!(sessions(&console, &old).status, 200);
    let before = console.idp.jwks_fetches();
    let new_kid = console.idp.rotate_key();
    assert_eq!(console.idp.current_kid(Alg::RS256), new_kid);
    let token = console.token_for(people::AUDREY_AUDITOR);
    let reply = sessions(&console, &token);
    assert_eq!(
        reply.status, 200,
        "the new key was not picked up: {reply:?}"
    );
    assert_eq!(console.idp.jwks_fetches(), before + 1);
    // Still published: the old key's tokens stay good until they expire.
    assert_eq!(sessions(&console, &old).status, 200);
}

#[test]
fn an_admin_revokes_and_restores_and_the_chain_names_them() {
    let Some(console) = ConsoleAgent::start("api-revoke") else {
        return;
    };
    let ada = console.token_for(people::ADA_ADMIN);
    let revoked = console.call(
        "POST",
        "/api/v1/revocations",
        Some(&ada),
        Some(&json!({"selector": "uid:4242", "reason": "incident 7"})),
    );
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let list = console
        .call("GET", "/api/v1/revocations", Some(&ada), None)
        .json();
    assert_eq!(list["revocations"][0]["selector"], "uid:4242", "{list:#}");
    assert_done_by(&list["revocations"][0], people::ADA_ADMIN);
    let restored = console.call(
        "POST",
        "/api/v1/revocations/restore",
        Some(&ada),
        Some(&json!({"selector": "uid:4242"})),
    );
    assert_eq!(restored.status, 200, "{restored:?}");
    assert_done_by(&console.governance_event("revoked"), people::ADA_ADMIN);
    assert_done_by(&console.governance_event("restored"), people::ADA_ADMIN);
}
