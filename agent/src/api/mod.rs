//! The HTTPS admin API and web console, behind the company's OpenID Connect provider.
//!
//! People (approvers, auditors, incident responders) sign in with the provider: a bearer token
//! for scripts, the authorization-code flow with PKCE and a session cookie for the console. Every
//! request is a chain record naming the person; every answer comes from the same functions the
//! CLI uses (audit queries, approvals, revocations, status, verify).
pub mod auth;
mod browser_sessions;
pub mod console;
mod login;
mod principal;
mod problem;
mod response;
mod router;
mod server;
mod start;
mod v1;

use std::sync::Arc;

use tokio::sync::OnceCell;

pub use principal::{Principal, Role};
pub use start::{bind, start, ApiError, BoundApi};

use crate::{admin::server::AdminServer, proxy::ProxyContext};

/// What the API serves from.
pub struct Api {
    pub context: Arc<ProxyContext>,
    /// For `status`, which the admin socket also answers.
    pub admin: Arc<AdminServer>,
    /// Set once the provider's discovery document and keys were read.
    ready: OnceCell<Ready>,
    /// Ends the live streams at shutdown.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The parts that need the identity provider.
pub struct Ready {
    pub auth: auth::Authenticator,
    pub login: login::Login,
}
