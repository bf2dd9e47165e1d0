//! Browser sign-ins held by the daemon: the sessions behind the console's cookie (each with its
//! CSRF token), and the sign-ins under way (PKCE verifier and nonce, keyed by the `state`).
//!
//! Both live in memory only: a restart signs everyone out, which is the safe direction. Both
//! are bounded, so a client that opens sign-ins in a loop cannot grow the daemon.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use ring::rand::{SecureRandom, SystemRandom};

use super::principal::Principal;

/// The most sessions held at once; the oldest goes first.
const MAX_SESSIONS: usize = 10_000;
/// The most sign-ins under way; beyond it the oldest is dropped.
const MAX_PENDING_LOGINS: usize = 1_000;
/// How long a person has to finish signing in at the provider.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct BrowserSession {
    pub principal: Arc<Principal>,
    pub csrf_token: String,
    pub expires: Instant,
}

pub struct PendingLogin {
    pub pkce_verifier: String,
    pub nonce: String,
    /// Where the console goes after signing in (a `#/…` route).
    pub return_to: String,
    pub started: Instant,
}

#[derive(Default)]
pub struct BrowserSessions {
    sessions: Mutex<HashMap<String, BrowserSession>>,
    logins: Mutex<HashMap<String, PendingLogin>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 32 random bytes, hex: session ids, CSRF tokens, `state`, nonces.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something to serve through: no token, no session.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source is readable");
    hex::encode(bytes)
}

/// Compares secrets in time that depends on their length only, not on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |differ, (x, y)| differ | (x ^ y))
            == 0
}

impl BrowserSessions {
    /// Opens a session for `principal`; returns its id (the cookie's value).
    pub fn open(&self, principal: Principal, lifetime: Duration) -> (String, BrowserSession) {
        let id = random_token();
        let session = BrowserSession {
            principal: Arc::new(principal),
            csrf_token: random_token(),
            expires: Instant::now() + lifetime,
        };
        let mut sessions = locked(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<BrowserSession> {
        let mut sessions = locked(&self.sessions);
        match sessions.get(id) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        locked(&self.sessions).remove(id);
    }

    /// Remembers a sign-in under way; returns its `state`.
    pub fn start_login(&self, login: PendingLogin) -> String {
        let state = random_token();
        let mut logins = locked(&self.logins);
        logins.retain(|_, l| l.started.elapsed() < LOGIN_TIMEOUT);
        if logins.len() >= MAX_PENDING_LOGINS {
            let oldest = logins
                .iter()
                .min_by_key(|(_, l)| l.started)
                .map(|(state, _)| state.clone());
            if let Some(oldest) = oldest {
                logins.remove(&oldest);
            }
        }
        logins.insert(state.clone(), login);
        state
    }

    /// The sign-in `state` names, once (a replayed callback finds nothing).
    pub fn finish_login(&self, state: &str) -> Option<PendingLogin> {
        locked(&self.logins)
            .remove(state)
            .filter(|login| login.started.elapsed() < LOGIN_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::governance::OidcActor;

    fn principal() -> Principal {
        Principal {
            person: OidcActor::default(),
            name: None,
            preferred_username: None,
            groups: Vec::new(),
            role: None,
            expires_at: 0,
        }
    }

    #[test]
    fn sessions_expire_and_close() {
        let sessions = BrowserSessions::default();
        let (id, session) = sessions.open(principal(), Duration::from_secs(60));
        assert_eq!(id.len(), 64);
        assert_ne!(session.csrf_token, id);
        assert!(sessions.get(&id).is_some());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
        let (expired, _) = sessions.open(principal(), Duration::ZERO);
        assert!(sessions.get(&expired).is_none());
    }

    #[test]
    fn a_login_state_is_good_once() {
        let sessions = BrowserSessions::default();
        let state = sessions.start_login(PendingLogin {
            pkce_verifier: "v".into(),
            nonce: "n".into(),
            return_to: "#/approvals".into(),
            started: Instant::now(),
        });
        assert_eq!(sessions.finish_login(&state).unwrap().nonce, "n");
        assert!(sessions.finish_login(&state).is_none());
        assert!(sessions.finish_login("forged").is_none());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
