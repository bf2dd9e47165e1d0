//! A fake OpenID Connect provider on a loopback port (plain http): discovery, JWKS, authorization
//! code flow with PKCE S256 and auto-consent, key rotation, and forged tokens for refusal tests.
//!
//! ```no_run
//! # use warden_tests::fake_oidc::{FakeIdp, TokenSpec, User};
//! let idp = FakeIdp::start();
//! idp.add_user(User::new("alice", &["warden-admins"]));
//! idp.sign_in_as("alice");
//! let expired = idp.token(&TokenSpec { exp_offset_secs: -60, ..TokenSpec::for_user("alice") });
//! ```

mod flow;
pub mod http_client;
mod keys;
pub mod pkce;
mod service;
mod tokens;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::background::BackgroundRuntime;

pub use tokens::{Alg, TokenSpec, DEFAULT_LIFETIME_SECS};

/// The client id registered at start, a public client (no secret).
pub const DEFAULT_CLIENT_ID: &str = "warden-console";

/// Someone the provider can sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub subject: String,
    pub email: String,
    pub preferred_username: String,
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// `subject@example.test`, username = subject, name = "Subject (test)".
    pub fn new(subject: &str, groups: &[&str]) -> Self {
        Self {
            subject: subject.to_owned(),
            email: format!("{subject}@example.test"),
            preferred_username: subject.to_owned(),
            name: format!("{subject} (test)"),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }
}

/// A code `/authorize` issued and `/token` has not redeemed yet.
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
    scope: String,
    subject: String,
    issued_at: std::time::Instant,
}

struct Inner {
    keys: keys::Keyring,
    users: HashMap<String, User>,
    signed_in: Option<String>,
    /// client id → secret (`None`: a public client).
    clients: HashMap<String, Option<String>>,
    codes: HashMap<String, PendingCode>,
    /// The query of every `/authorize` request, in order.
    authorize_requests: Vec<Vec<(String, String)>>,
    end_sessions: usize,
}

pub(crate) struct State {
    issuer: String,
    inner: Mutex<Inner>,
    jwks_fetches: AtomicUsize,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fake OpenID provider; stops when dropped.
pub struct FakeIdp {
    addr: SocketAddr,
    state: Arc<State>,
    _runtime: BackgroundRuntime,
}

impl std::fmt::Debug for FakeIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeIdp")
            .field("issuer", &self.state.issuer)
            .finish_non_exhaustive()
    }
}

impl FakeIdp {
    /// Listens on 127.0.0.1 (a free port) with the public client [`DEFAULT_CLIENT_ID`], one RSA,
    /// one P-256 and one Ed25519 key, and no users.
    pub fn start() -> Self {
        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("binding the fake IdP on 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .expect("local_addr of a bound listener");
        let state = Arc::new(State {
            issuer: format!("http://{addr}"),
            inner: Mutex::new(Inner {
                keys: keys::Keyring::new(),
                users: HashMap::new(),
                signed_in: None,
                clients: HashMap::from([(DEFAULT_CLIENT_ID.to_owned(), None)]),
                codes: HashMap::new(),
                authorize_requests: Vec::new(),
                end_sessions: 0,
            }),
            jwks_fetches: AtomicUsize::new(0),
        });
        let served = Arc::clone(&state);
        let runtime = BackgroundRuntime::serve("the fake IdP", listener, |listener| {
            service::serve(listener, served)
        });
        Self {
            addr,
            state,
            _runtime: runtime,
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash: the `iss` of its tokens.
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `/authorize` URL a relying party of [`DEFAULT_CLIENT_ID`] sends the browser to, with the
    /// S256 challenge of `verifier`.
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        verifier: &str,
        state: &str,
        nonce: &str,
    ) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", DEFAULT_CLIENT_ID)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid profile email groups")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &pkce::s256_challenge(verifier))
            .append_pair("code_challenge_method", "S256")
            .finish();
        format!("{}/authorize?{query}", self.state.issuer)
    }

    /// [`DEFAULT_CLIENT_ID`].
    pub fn client_id(&self) -> String {
        DEFAULT_CLIENT_ID.to_owned()
    }

    /// Accepts `id` from now on; with a secret it is a confidential client whose `/token` calls must
    /// authenticate (client_secret_basic or client_secret_post).
    pub fn register_client(&self, id: &str, secret: Option<&str>) {
        self.state
            .lock()
            .clients
            .insert(id.to_owned(), secret.map(str::to_owned));
    }

    /// Adds (or replaces) a user.
    pub fn add_user(&self, user: User) {
        self.state.lock().users.insert(user.subject.clone(), user);
    }

    /// `/authorize` signs this user in without asking. Panics if the user was never added.
    pub fn sign_in_as(&self, subject: &str) {
        let mut inner = self.state.lock();
        assert!(
            inner.users.contains_key(subject),
            "sign_in_as({subject:?}): add_user it first"
        );
        inner.signed_in = Some(subject.to_owned());
    }

    /// Makes a new RSA key (new kid) the RS256 signing key; the old one stays in `/jwks` until
    /// [`Self::retire_old_keys`]. Returns the new kid.
    pub fn rotate_key(&self) -> String {
        self.state.lock().keys.rotate()
    }

    /// Unpublishes the RSA keys that no longer sign.
    pub fn retire_old_keys(&self) {
        self.state.lock().keys.retire_old();
    }

    /// The kid that signs tokens of `alg` now.
    pub fn current_kid(&self, alg: Alg) -> String {
        self.state.lock().keys.current(alg).kid.clone()
    }

    /// The JWK Set `/jwks` serves now.
    pub fn jwks(&self) -> serde_json::Value {
        self.state.lock().keys.jwks()
    }

    /// GET /jwks requests answered so far.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The query pairs of every `/authorize` request so far, in order.
    pub fn authorize_requests(&self) -> Vec<Vec<(String, String)>> {
        self.state.lock().authorize_requests.clone()
    }

    /// GET /end_session requests answered so far (sign-outs).
    pub fn end_sessions(&self) -> usize {
        self.state.lock().end_sessions
    }

    /// A token as `spec` says, signed with the current key of `spec.alg`.
    pub fn token(&self, spec: &TokenSpec) -> String {
        let inner = self.state.lock();
        let claims = self.claims_locked(&inner, spec);
        tokens::sign(&inner.keys, spec, "JWT", &claims)
    }

    /// `spec`'s claims under the header `{"alg":"none"}` with an empty signature.
    pub fn alg_none_token(&self, spec: &TokenSpec) -> String {
        let inner = self.state.lock();
        let claims = self.claims_locked(&inner, spec);
        let kid = spec_kid(&inner, spec);
        tokens::unsigned(&claims, Some(&kid))
    }

    /// `spec`'s claims signed HS256 with the current RSA public key's PEM bytes
    /// (`-----BEGIN PUBLIC KEY-----…`, as published keys are often fetched) as the HMAC key.
    pub fn hs256_signed_with_public_key(&self, spec: &TokenSpec) -> String {
        let (pem, _der) = self.rsa_public_key();
        self.hs256_signed_with(spec, pem.as_bytes())
    }

    /// The same with the key's DER (SubjectPublicKeyInfo) bytes as the HMAC key.
    pub fn hs256_signed_with_public_key_der(&self, spec: &TokenSpec) -> String {
        let (_pem, der) = self.rsa_public_key();
        self.hs256_signed_with(spec, &der)
    }

    /// The current RS256 key's public half: SubjectPublicKeyInfo PEM and DER.
    pub fn rsa_public_key(&self) -> (String, Vec<u8>) {
        self.state.lock().keys.rsa_public_key()
    }

    fn hs256_signed_with(&self, spec: &TokenSpec, secret: &[u8]) -> String {
        let inner = self.state.lock();
        let claims = self.claims_locked(&inner, spec);
        let kid = spec_kid(&inner, spec);
        tokens::hs256(&claims, &kid, secret)
    }

    fn claims_locked(&self, inner: &Inner, spec: &TokenSpec) -> serde_json::Value {
        let subject = spec
            .subject
            .as_deref()
            .or(inner.signed_in.as_deref())
            .expect("TokenSpec without a subject and nobody signed in: sign_in_as first");
        let user = inner
            .users
            .get(subject)
            .unwrap_or_else(|| panic!("no user {subject:?}: add_user it first"));
        tokens::claims(user, spec, &self.state.issuer, DEFAULT_CLIENT_ID)
    }
}

#[cfg(test)]
mod tests;

/// The kid a forged token names: the spec's, else the current RSA key's.
fn spec_kid(inner: &Inner, spec: &TokenSpec) -> String {
    spec.kid
        .clone()
        .unwrap_or_else(|| inner.keys.current(Alg::RS256).kid.clone())
}
