//! Browser sign-in: the OpenID Connect authorization-code flow with PKCE (`openidconnect`),
//! ending in the console's session cookie; and signing out.
//!
//! `/login` sends the browser to the provider with a fresh `state`, nonce and PKCE challenge,
//! and binds the `state` to the browser in a short-lived cookie. `/oidc/callback` takes the
//! sign-in back once, exchanges the code with the PKCE verifier, verifies the ID token with
//! the API's own verifier (issuer, audience, expiry, algorithm) and its nonce, then opens a
//! session. The session cookie is `SameSite=Strict`, which a browser withholds on the
//! provider's cross-site redirect, so the callback answers with a page that moves on to the
//! console from this origin.
use std::time::{Duration, Instant};

use http::{header, request::Parts, HeaderValue, StatusCode};
use openidconnect::{
    core::{CoreAuthenticationFlow, CoreClient},
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, JsonWebKeySet, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};

use super::{
    auth::{cookie, set_cookie, Authenticator, LOGIN_COOKIE, SESSION_COOKIE},
    browser_sessions::{random_token, same_secret, PendingLogin, LOGIN_TIMEOUT},
    principal::Principal,
    problem::Problem,
    response::{see_other, with_type, ApiResponse},
};
use crate::{
    config::ApiOidcConfig,
    oidc::{OidcHttp, ProviderMetadata},
};

/// What the sign-in flow needs from the provider and the config.
pub struct Login {
    pub http: OidcHttp,
    pub metadata: ProviderMetadata,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    /// `{public_url}/oidc/callback`.
    pub redirect_uri: String,
    pub session_lifetime: Duration,
}

impl Login {
    pub fn new(
        http: OidcHttp,
        metadata: ProviderMetadata,
        oidc: &ApiOidcConfig,
        client_secret: Option<String>,
        public_url: &str,
        session_lifetime: Duration,
    ) -> Login {
        Login {
            http,
            metadata,
            client_id: oidc.client_id.clone(),
            client_secret,
            scopes: oidc.scopes.clone(),
            redirect_uri: format!("{public_url}/oidc/callback"),
            session_lifetime,
        }
    }

    fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
        >,
        Problem,
    > {
        let bad = |what: &str, error: &dyn std::fmt::Display| {
            Problem::internal(format!("the provider's {what} is not a URL: {error}"))
        };
        let issuer = IssuerUrl::new(self.metadata.issuer.clone()).map_err(|e| bad("issuer", &e))?;
        let auth = AuthUrl::new(self.metadata.authorization_endpoint.clone())
            .map_err(|e| bad("authorization_endpoint", &e))?;
        let token = TokenUrl::new(self.metadata.token_endpoint.clone())
            .map_err(|e| bad("token_endpoint", &e))?;
        let redirect =
            RedirectUrl::new(self.redirect_uri.clone()).map_err(|e| bad("redirect URI", &e))?;
        // The ID token is verified by the API's own verifier (verify.rs), not openidconnect's,
        // so one code path decides what a valid token is: the key set here stays empty.
        let mut client = CoreClient::new(
            ClientId::new(self.client_id.clone()),
            issuer,
            JsonWebKeySet::default(),
        )
        .set_auth_uri(auth)
        .set_token_uri(token)
        .set_redirect_uri(redirect);
        if let Some(secret) = &self.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.clone()));
        }
        Ok(client)
    }

    /// `GET /login?return=#/route`: to the provider, with the sign-in bound to this browser.
    pub fn start(&self, auth: &Authenticator, parts: &Parts) -> Result<ApiResponse, Problem> {
        let client = self.client()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = random_token();
        let state = auth.sessions.start_login(PendingLogin {
            pkce_verifier: verifier.secret().clone(),
            nonce: nonce.clone(),
            return_to: return_route(parts),
            started: Instant::now(),
        });
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            {
                let state = state.clone();
                move || CsrfToken::new(state)
            },
            move || Nonce::new(nonce),
        );
        for scope in self.scopes.iter().filter(|scope| *scope != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.set_pkce_challenge(challenge).url();
        let mut response = see_other(url.as_str());
        // Lax, not Strict: it must ride along on the provider's cross-site redirect back.
        let bind = set_cookie(LOGIN_COOKIE, &state, "Lax", LOGIN_TIMEOUT.as_secs());
        if let Ok(value) = HeaderValue::from_str(&bind) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Ok(response)
    }

    /// `GET /oidc/callback?code&state`: the code exchanged, the ID token verified, a session.
    pub async fn finish(
        &self,
        auth: &Authenticator,
        parts: &Parts,
    ) -> Result<(Principal, ApiResponse), Problem> {
        let query = query_pairs(parts);
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        if let Some(error) = param("error") {
            let description = param("error_description").unwrap_or_default();
            return Err(Problem::unauthorized(format!(
                "the identity provider refused the sign-in: {error} {description}"
            )));
        }
        let (Some(code), Some(state)) = (param("code"), param("state")) else {
            return Err(Problem::bad_request(
                "the callback needs `code` and `state`",
            ));
        };
        let bound = cookie(parts, LOGIN_COOKIE).unwrap_or_default();
        if !same_secret(bound, &state) {
            return Err(Problem::forbidden(
                "this sign-in was not started by this browser (state does not match); start again at /login",
            ));
        }
        let pending = auth.sessions.finish_login(&state).ok_or_else(|| {
            Problem::unauthorized("this sign-in expired or was already used; start again at /login")
        })?;
        let client = self.client()?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|error| {
                tracing::warn!(error = %error, "OIDC code exchange failed");
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    format!("the identity provider refused the code exchange: {error}"),
                )
            })?;
        let id_token = tokens.id_token().map(ToString::to_string).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "the token response has no id_token",
            )
        })?;
        let verified = auth.verifier.verify(&id_token).await.map_err(|error| {
            tracing::warn!(%error, "OIDC ID token refused");
            Problem::unauthorized(format!("ID token refused: {error}"))
        })?;
        if verified.nonce.as_deref() != Some(pending.nonce.as_str()) {
            return Err(Problem::unauthorized(
                "ID token refused: its nonce is not this sign-in's",
            ));
        }
        let principal =
            Principal::from_token(&verified, &auth.issuer, &auth.roles_claim, &auth.roles);
        let (id, _) = auth.sessions.open(principal.clone(), self.session_lifetime);
        let mut response = moving_on(&pending.return_to);
        let headers = response.headers_mut();
        let session = set_cookie(
            SESSION_COOKIE,
            &id,
            "Strict",
            self.session_lifetime.as_secs(),
        );
        let unbind = set_cookie(LOGIN_COOKIE, "", "Lax", 0);
        for value in [session, unbind] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(header::SET_COOKIE, value);
            }
        }
        Ok((principal, response))
    }
}

/// `POST /logout` (CSRF-checked by the caller): the session closed, the cookie cleared.
pub fn logout(auth: &Authenticator, session_id: &str) -> ApiResponse {
    auth.sessions.close(session_id);
    let mut response = with_type(StatusCode::OK, "application/json", b"{}".to_vec());
    if let Ok(value) = HeaderValue::from_str(&set_cookie(SESSION_COOKIE, "", "Strict", 0)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// A same-origin page that moves on to the console (so the Strict cookie is sent).
fn moving_on(route: &str) -> ApiResponse {
    let target = format!("/{route}");
    let page = format!(
        "<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={target}\"><title>Signed in</title><p>Signed in. <a href=\"{target}\">Continue to the console</a>.</p>"
    );
    with_type(
        StatusCode::OK,
        "text/html; charset=utf-8",
        page.into_bytes(),
    )
}

/// The console route to come back to: `#/` followed by letters, digits, `/`, `-` and `_` only
/// (it is written into a page), else the approvals queue.
fn return_route(parts: &Parts) -> String {
    let route = query_pairs(parts)
        .into_iter()
        .find(|(key, _)| key == "return")
        .map(|(_, value)| value)
        .unwrap_or_default();
    let safe = route.starts_with("#/")
        && route[2..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_".contains(&b));
    match safe {
        true => route,
        false => "#/approvals".into(),
    }
}

/// The query's pairs, percent-decoded.
pub fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    let query = parts.uri.query().unwrap_or_default();
    openidconnect::url::form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}
