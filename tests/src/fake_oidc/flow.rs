//! The authorization code flow: what `/authorize` and `/token` answer (RFC 6749, RFC 7636, OIDC Core).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{json, Value};
use url::Url;

use super::tokens::{self, TokenSpec, DEFAULT_LIFETIME_SECS};
use super::{pkce, PendingCode, State};

/// How long a code can be redeemed.
pub(super) const CODE_LIFETIME: Duration = Duration::from_secs(60);

/// What a route answers, before it is an HTTP response.
#[derive(Debug, PartialEq)]
pub(super) enum Reply {
    /// 302 to this URL.
    Redirect(String),
    /// A plain-text page (errors that must not redirect: bad client or redirect_uri).
    Page(StatusCode, String),
    /// JSON (with `WWW-Authenticate: Basic` when the status is 401).
    Json(StatusCode, Value),
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Only loopback targets: the browser follows this redirect, and tests never leave the machine.
fn loopback_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("redirect_uri {raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("redirect_uri {raw:?} is not http(s)"));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        // Reserved names (RFC 6761) never resolve off the machine; the test browser maps them.
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            ["localhost", "test"]
                .iter()
                .any(|reserved| name == *reserved || name.ends_with(&format!(".{reserved}")))
        }
        None => false,
    };
    if !loopback {
        return Err(format!(
            "redirect_uri {raw:?} is not on loopback (the fake IdP only redirects to 127.0.0.0/8, \
             ::1, localhost or a name under .test)"
        ));
    }
    Ok(url)
}

/// GET /authorize with auto-consent for the signed-in user.
pub(super) fn authorize(state: &State, params: &[(String, String)]) -> Reply {
    let mut inner = state.lock();
    inner.authorize_requests.push(params.to_vec());
    // Errors about the client or the redirect target must not redirect (RFC 6749 §4.1.2.1).
    let Some(client_id) = param(params, "client_id") else {
        return Reply::Page(StatusCode::BAD_REQUEST, "client_id is missing".to_owned());
    };
    if !inner.clients.contains_key(client_id) {
        return Reply::Page(
            StatusCode::BAD_REQUEST,
            format!("unknown client_id {client_id:?}"),
        );
    }
    let Some(redirect_uri) = param(params, "redirect_uri") else {
        return Reply::Page(
            StatusCode::BAD_REQUEST,
            "redirect_uri is missing".to_owned(),
        );
    };
    let mut target = match loopback_url(redirect_uri) {
        Ok(url) => url,
        Err(why) => return Reply::Page(StatusCode::BAD_REQUEST, why),
    };
    let state_param = param(params, "state");
    let refuse = |mut target: Url, error: &str, description: &str| {
        let mut query = target.query_pairs_mut();
        query.append_pair("error", error);
        query.append_pair("error_description", description);
        if let Some(state_param) = state_param {
            query.append_pair("state", state_param);
        }
        drop(query);
        Reply::Redirect(target.into())
    };
    if param(params, "response_type") != Some("code") {
        return refuse(
            target,
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let scope = param(params, "scope").unwrap_or("");
    if !scope.split(' ').any(|s| s == "openid") {
        return refuse(target, "invalid_scope", "scope must include openid");
    }
    let Some(challenge) = param(params, "code_challenge") else {
        return refuse(
            target,
            "invalid_request",
            "code_challenge is required (PKCE)",
        );
    };
    if param(params, "code_challenge_method") != Some("S256") {
        return refuse(
            target,
            "invalid_request",
            "code_challenge_method must be S256",
        );
    }
    // An S256 challenge is BASE64URL(SHA-256): 43 characters.
    if challenge.len() != 43 {
        return refuse(
            target,
            "invalid_request",
            "code_challenge is not an S256 challenge",
        );
    }
    if state_param.is_none_or(str::is_empty) {
        return refuse(target, "invalid_request", "state is required");
    }
    let Some(nonce) = param(params, "nonce").filter(|n| !n.is_empty()) else {
        return refuse(target, "invalid_request", "nonce is required");
    };
    let Some(subject) = inner.signed_in.clone() else {
        return refuse(target, "login_required", "no user is signed in");
    };
    let code = pkce::new_verifier();
    inner.codes.insert(
        code.clone(),
        PendingCode {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            challenge: challenge.to_owned(),
            nonce: nonce.to_owned(),
            scope: scope.to_owned(),
            subject,
            issued_at: Instant::now(),
        },
    );
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state_param.unwrap_or_default());
    Reply::Redirect(target.into())
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Reply {
    Reply::Json(
        status,
        json!({ "error": error, "error_description": description }),
    )
}

/// POST /token, grant_type=authorization_code. `basic` is the HTTP Basic client credentials.
pub(super) fn token(
    state: &State,
    form: &[(String, String)],
    basic: Option<(String, String)>,
) -> Reply {
    let bad =
        |description: &str| token_error(StatusCode::BAD_REQUEST, "invalid_request", description);
    let grant =
        |description: &str| token_error(StatusCode::BAD_REQUEST, "invalid_grant", description);
    let client_error =
        |description: &str| token_error(StatusCode::UNAUTHORIZED, "invalid_client", description);

    if param(form, "grant_type") != Some("authorization_code") {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=authorization_code is supported",
        );
    }
    let form_secret = param(form, "client_secret");
    let (client_id, secret) = match (&basic, param(form, "client_id")) {
        (Some(_), _) if form_secret.is_some() => {
            return bad("client authenticated twice (Basic and client_secret)")
        }
        (Some((id, _)), Some(form_id)) if id != form_id => {
            return bad("client_id differs from the Basic credentials")
        }
        (Some((id, secret)), _) => (id.as_str(), Some(secret.as_str())),
        (None, Some(id)) => (id, form_secret),
        (None, None) => return client_error("client_id is missing"),
    };
    let mut inner = state.lock();
    match inner.clients.get(client_id) {
        None => return client_error(&format!("unknown client_id {client_id:?}")),
        Some(Some(expected)) if secret != Some(expected.as_str()) => {
            return client_error("client authentication failed")
        }
        Some(_) => {}
    }
    let Some(code) = param(form, "code") else {
        return bad("code is missing");
    };
    // Single use: taken out before any check, so a failed redemption burns it too.
    let Some(pending) = inner.codes.remove(code) else {
        return grant("the code is unknown or was already used");
    };
    if pending.issued_at.elapsed() > CODE_LIFETIME {
        return grant("the code expired");
    }
    if pending.client_id != client_id {
        return grant("the code was issued to another client");
    }
    if param(form, "redirect_uri") != Some(pending.redirect_uri.as_str()) {
        return grant("redirect_uri differs from the one of the authorization request");
    }
    let Some(verifier) = param(form, "code_verifier") else {
        return grant("code_verifier is missing (PKCE)");
    };
    if let Err(why) = pkce::verify(verifier, &pending.challenge) {
        return grant(&why);
    }
    let Some(user) = inner.users.get(&pending.subject) else {
        return grant("the user was removed");
    };
    let spec = TokenSpec {
        subject: Some(pending.subject.clone()),
        aud: Some(client_id.to_owned()),
        nonce: Some(pending.nonce.clone()),
        ..TokenSpec::default()
    };
    let id_claims = tokens::claims(user, &spec, &state.issuer, client_id);
    let mut access_claims = id_claims.clone();
    // RFC 9068 access-token claims.
    access_claims["client_id"] = json!(client_id);
    access_claims["scope"] = json!(pending.scope);
    access_claims["jti"] = json!(pkce::new_verifier());
    let id_token = tokens::sign(&inner.keys, &spec, "JWT", &id_claims);
    let access_token = tokens::sign(&inner.keys, &spec, "at+jwt", &access_claims);
    Reply::Json(
        StatusCode::OK,
        json!({
            "access_token": access_token,
            "id_token": id_token,
            "token_type": "Bearer",
            "expires_in": DEFAULT_LIFETIME_SECS,
            "scope": pending.scope,
        }),
    )
}

/// GET /end_session: counts the sign-out and returns to a loopback post_logout_redirect_uri.
pub(super) fn end_session(state: &State, params: &[(String, String)]) -> Reply {
    state.lock().end_sessions += 1;
    match param(params, "post_logout_redirect_uri").map(loopback_url) {
        Some(Ok(mut target)) => {
            if let Some(state_param) = param(params, "state") {
                target.query_pairs_mut().append_pair("state", state_param);
            }
            Reply::Redirect(target.into())
        }
        Some(Err(why)) => Reply::Page(StatusCode::BAD_REQUEST, why),
        None => Reply::Page(StatusCode::OK, "You are signed out.".to_owned()),
    }
}

/// The discovery document.
pub(super) fn discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/end_session"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "groups"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "nbf", "auth_time", "nonce",
            "email", "email_verified", "preferred_username", "name", "groups"
        ],
    })
}
