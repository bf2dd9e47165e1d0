//! `[api]`, `[api.oidc]` and `[api.roles]`: the HTTPS admin API and web console, who signs in to
//! them (an OpenID Connect provider) and what each of the provider's groups may do.
//!
//! ```toml
//! [api]
//! listen = "127.0.0.1:9443"          # off when absent
//! cert_file = "/etc/warden/api.pem"  # with key_file; absent: a leaf for server_name from Warden's CA
//! key_file = "/etc/warden/api.key"
//! server_name = "warden.example.com" # the name in that leaf (default "localhost")
//! public_url = "https://warden.example.com:9443"  # what browsers open (redirect URI base)
//! [api.oidc]
//! issuer = "https://login.example.com/realms/corp"
//! client_id = "warden"
//! client_secret_file = "/etc/warden/oidc-client-secret"   # absent: a public client (PKCE alone)
//! roles_claim = "groups"             # a string or an array of strings; a dotted path is allowed
//! [api.roles]
//! auditor = ["security-auditors"]    # reads sessions, approvals, identities, the chain's status
//! approver = ["llm-approvers"]       # also decides approvals (the rule must name oidc-group:…)
//! admin = ["warden-admins"]          # also revokes and restores identities
//! ```
use std::{net::SocketAddr, path::PathBuf};

use super::locate::KeyPath;

/// The most clock skew a token's `exp`/`nbf` are given.
pub const MAX_LEEWAY_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the API and console listen (TLS). Absent: no API.
    pub listen: Option<SocketAddr>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The DNS name of the leaf Warden's CA mints when no cert_file is given.
    pub server_name: String,
    /// The console's URL as browsers reach it; the OIDC redirect URI is `{public_url}/oidc/callback`.
    /// Absent: `https://{server_name}:{port}`.
    pub public_url: Option<String>,
    /// How long a browser sign-in lasts at most (the ID token's expiry also ends it).
    pub session_hours: u64,
    pub oidc: Option<ApiOidcConfig>,
    pub roles: ApiRolesConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: None,
            cert_file: None,
            key_file: None,
            server_name: "localhost".into(),
            public_url: None,
            session_hours: 8,
            oidc: None,
            roles: ApiRolesConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiOidcConfig {
    /// The issuer URL; its `/.well-known/openid-configuration` is read at start.
    pub issuer: String,
    pub client_id: String,
    /// A root-only file holding the client secret (confidential clients).
    pub client_secret_file: Option<PathBuf>,
    /// The `aud` a bearer token must carry (one of). Default: the client id.
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Extra roots trusted for the provider (PEM), beside the system's.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_roles_claim() -> String {
    "groups".into()
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

fn default_leeway() -> u64 {
    MAX_LEEWAY_SECS
}

/// Which of the provider's groups hold each role. Each role includes the ones before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiRolesConfig {
    pub auditor: Vec<String>,
    pub approver: Vec<String>,
    pub admin: Vec<String>,
}

impl ApiOidcConfig {
    /// The audiences a bearer token may be for.
    pub fn audiences(&self) -> Vec<String> {
        match self.audiences.is_empty() {
            true => vec![self.client_id.clone()],
            false => self.audiences.clone(),
        }
    }
}

impl ApiConfig {
    /// `public_url` without a trailing slash.
    pub fn public_url(&self) -> Option<String> {
        let listen = self.listen?;
        Some(match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://{}:{}", self.server_name, listen.port()),
        })
    }

    pub(super) fn validate(&self) -> Result<(), (KeyPath, String)> {
        let api = KeyPath::root().key("api");
        if self.listen.is_none() {
            return Ok(());
        }
        let Some(oidc) = &self.oidc else {
            return Err((
                api.key("listen"),
                "the API needs [api.oidc] (it has no unauthenticated mode)".into(),
            ));
        };
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err((
                api.key("cert_file"),
                "cert_file and key_file go together".into(),
            ));
        }
        if let Some(url) = &self.public_url {
            if !url.starts_with("https://") {
                return Err((
                    api.key("public_url"),
                    "must be an https:// URL (the session cookie is Secure)".into(),
                ));
            }
        }
        if self.session_hours == 0 {
            return Err((api.key("session_hours"), "must be at least 1".into()));
        }
        let at = api.key("oidc");
        if !issuer_is_acceptable(&oidc.issuer) {
            return Err((
                at.key("issuer"),
                "must be an https:// URL (http:// only to a loopback address)".into(),
            ));
        }
        if oidc.client_id.is_empty() {
            return Err((at.key("client_id"), "must not be empty".into()));
        }
        if oidc.leeway_secs > MAX_LEEWAY_SECS {
            return Err((
                at.key("leeway_secs"),
                format!("at most {MAX_LEEWAY_SECS} s of clock skew is allowed"),
            ));
        }
        if oidc.roles_claim.is_empty() {
            return Err((at.key("roles_claim"), "must not be empty".into()));
        }
        if !oidc.scopes.iter().any(|scope| scope == "openid") {
            return Err((at.key("scopes"), "must include \"openid\"".into()));
        }
        Ok(())
    }
}

/// https anywhere; plain http only to loopback (a provider on the same host, or a test's).
pub fn issuer_is_acceptable(issuer: &str) -> bool {
    if issuer.starts_with("https://") {
        return true;
    }
    let Some(rest) = issuer.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_issuers_may_be_plain_http() {
        assert!(issuer_is_acceptable("https://login.example.com/realms/x"));
        assert!(issuer_is_acceptable("http://127.0.0.1:8080"));
        assert!(issuer_is_acceptable("http://[::1]:8080/x"));
        assert!(issuer_is_acceptable("http://localhost/"));
        assert!(!issuer_is_acceptable("http://login.example.com"));
        assert!(!issuer_is_acceptable("http://127.0.0.1.example.com"));
        assert!(!issuer_is_acceptable("ftp://127.0.0.1"));
    }
}

#[cfg(test)]
mod config_tests {
    use std::path::Path;

    use crate::config::Config;

    fn error(text: &str) -> String {
        Config::from_toml(text, Path::new("/etc/warden/warden.toml"))
            .expect_err("config should be refused")
            .to_string()
    }

    const OIDC: &str = "[api.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"warden\"\n";

    #[test]
    fn the_api_has_no_unauthenticated_mode_and_its_keys_are_checked() {
        let listen = "[api]\nlisten = \"127.0.0.1:9443\"\n";
        assert!(
            error(listen).contains("the API needs [api.oidc]"),
            "{}",
            error(listen)
        );
        let plain = "[api]\nlisten = \"127.0.0.1:9443\"\n[api.oidc]\nissuer = \"http://idp.example\"\nclient_id = \"w\"\n";
        assert!(error(plain).contains("api.oidc.issuer"), "{}", error(plain));
        let leeway = format!("[api]\nlisten = \"127.0.0.1:9443\"\n{OIDC}leeway_secs = 300\n");
        assert!(
            error(&leeway).contains("at most 60 s"),
            "{}",
            error(&leeway)
        );
        let half = format!("[api]\nlisten = \"127.0.0.1:9443\"\ncert_file = \"/x.pem\"\n{OIDC}");
        assert!(error(&half).contains("go together"), "{}", error(&half));
        let typo =
            format!("[api]\nlisten = \"127.0.0.1:9443\"\n{OIDC}[api.roles]\napprovers = []\n");
        assert!(error(&typo).contains("approvers"), "{}", error(&typo));
        let config = Config::from_toml(
            &format!("[api]\nlisten = \"127.0.0.1:9443\"\n{OIDC}"),
            Path::new("w.toml"),
        )
        .unwrap();
        assert_eq!(
            config.api.public_url().as_deref(),
            Some("https://localhost:9443")
        );
        let oidc = config.api.oidc.unwrap();
        assert_eq!(oidc.audiences(), ["warden"]);
        assert_eq!(oidc.roles_claim, "groups");
    }
}
