//! Credential custody: the real API keys Warden holds for the agents, and which identity each serves.
//!
//! `[[credential]]` entries (see `config::credentials`) name a host, a header and where the secret comes from
//! (a root-only file, or a systemd credential); [`secret`] reads it with the file checks,
//! [`store`] holds the loaded keys behind an `ArcSwap` and matches an identity to one of them,
//! [`watch`] rotates them (file change or SIGHUP) and [`presented`] tells a placeholder from a real
//! provider key. The request path uses them in `proxy/stages/credential.rs`.
pub mod presented;
pub mod secret;
pub mod store;
pub mod watch;

pub use crate::config::credentials::{
    CredentialConfig, CredentialsConfig, HeaderSpec, Presented, SecretSource,
};
pub use store::{Credential, CredentialStatus, CredentialStore, CredentialsStatus, Custody};
