//! Who sent an API request: a bearer token the provider signed, or the console's session
//! cookie — and, for the cookie, that a state-changing request carries the session's CSRF token
//! and comes from the console's own origin.
use std::sync::Arc;

use http::{header, request::Parts, Method};

use super::{
    browser_sessions::{same_secret, BrowserSession, BrowserSessions},
    principal::Principal,
    problem::Problem,
};
use crate::{config::ApiRolesConfig, oidc::TokenVerifier};

/// The console's session cookie. `__Host-`: the browser only accepts it Secure, from this origin,
/// for path `/`, with no Domain — no sibling host can set or read it.
pub const SESSION_COOKIE: &str = "__Host-warden_session";
/// Binds a sign-in under way to the browser that started it (login CSRF).
pub const LOGIN_COOKIE: &str = "__Host-warden_login";
/// The header a cookie-authenticated state-changing request repeats its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the caller authenticated.
pub enum Via {
    Bearer,
    Cookie(BrowserSession),
}

pub struct Caller {
    pub principal: Arc<Principal>,
    pub via: Via,
}

impl Caller {
    /// The CSRF token the console must repeat (cookie sessions only).
    pub fn csrf_token(&self) -> Option<&str> {
        match &self.via {
            Via::Cookie(session) => Some(&session.csrf_token),
            Via::Bearer => None,
        }
    }
}

pub struct Authenticator {
    pub verifier: TokenVerifier,
    pub issuer: String,
    pub roles_claim: String,
    pub roles: ApiRolesConfig,
    pub sessions: BrowserSessions,
    /// `https://host:port` of the console, which a cookie request's Origin must equal.
    pub origin: String,
}

impl Authenticator {
    /// The caller of `parts`, or 401 saying why (never echoing the token).
    pub async fn authenticate(&self, parts: &Parts) -> Result<Caller, Problem> {
        if let Some(authorization) = parts.headers.get(header::AUTHORIZATION) {
            let token = authorization
                .to_str()
                .ok()
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    Problem::unauthorized("the Authorization header must be `Bearer TOKEN`")
                })?;
            let verified = self.verifier.verify(token).await.map_err(|error| {
                tracing::warn!(%error, "API bearer token refused");
                Problem::unauthorized(format!("bearer token refused: {error}"))
            })?;
            let principal =
                Principal::from_token(&verified, &self.issuer, &self.roles_claim, &self.roles);
            return Ok(Caller {
                principal: Arc::new(principal),
                via: Via::Bearer,
            });
        }
        let session = cookie(parts, SESSION_COOKIE)
            .and_then(|id| self.sessions.get(id))
            .ok_or_else(|| {
                Problem::unauthorized(
                    "sign in first (GET /login), or send `Authorization: Bearer TOKEN`",
                )
            })?;
        if !is_safe(&parts.method) {
            self.check_csrf(parts, &session)?;
        }
        Ok(Caller {
            principal: session.principal.clone(),
            via: Via::Cookie(session),
        })
    }

    /// The session of the browser that sent `parts`, if it has a live one.
    pub fn session_of(&self, parts: &Parts) -> Option<(String, BrowserSession)> {
        let id = cookie(parts, SESSION_COOKIE)?;
        self.sessions
            .get(id)
            .map(|session| (id.to_string(), session))
    }

    /// A cookie rides along on any request the browser sends, so a state-changing one must
    /// prove it came from the console: the session's token in a header a cross-site form cannot
    /// set, and (when the browser says) the console's own Origin.
    pub fn check_csrf(&self, parts: &Parts, session: &BrowserSession) -> Result<(), Problem> {
        if let Some(origin) = parts.headers.get(header::ORIGIN) {
            if origin.as_bytes() != self.origin.as_bytes() {
                return Err(Problem::forbidden(format!(
                    "cross-origin request refused (the console is {})",
                    self.origin
                )));
            }
        }
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !same_secret(presented, &session.csrf_token) {
            return Err(Problem::forbidden(
                "missing or wrong X-CSRF-Token (the console sends the one /api/v1/me gives)",
            ));
        }
        Ok(())
    }
}

pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A Set-Cookie value: HttpOnly, Secure, SameSite as given, path `/`.
pub fn set_cookie(name: &str, value: &str, same_site: &str, max_age_secs: u64) -> String {
    format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}; Max-Age={max_age_secs}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let request = http::Request::builder()
            .header(header::COOKIE, "a=1; __Host-warden_session=abc")
            .header(
                header::COOKIE,
                "x__Host-warden_login=no; __Host-warden_login=st",
            )
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        assert_eq!(cookie(&parts, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&parts, LOGIN_COOKIE), Some("st"));
        assert_eq!(cookie(&parts, "missing"), None);
    }

    #[test]
    fn the_session_cookie_is_http_only_secure_and_strict() {
        assert_eq!(
            set_cookie(SESSION_COOKIE, "v", "Strict", 60),
            "__Host-warden_session=v; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=60"
        );
    }
}
