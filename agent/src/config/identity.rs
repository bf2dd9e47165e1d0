//! `[identity]`: how identities are established; `[identity.kubernetes]` verifies service accounts.
//!
//! ```toml
//! [identity.kubernetes]
//! issuer = "https://kubernetes.default.svc.cluster.local"   # the API server's service-account issuer
//! jwks_file = "/etc/warden/k8s-jwks.json"   # optional: `kubectl get --raw /openid/v1/jwks`; else discovery
//! audiences = ["https://kubernetes.default.svc.cluster.local"]   # optional; empty: aud not checked
//! ca_file = "/etc/warden/k8s-ca.pem"        # optional: extra roots for discovery and the JWKS
//! require_verified = true                   # `sa:` selectors match only verified tokens
//! ```
use std::path::PathBuf;

use super::locate::KeyPath;

/// `[identity]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Absent: service-account tokens are read but not verified.
    pub kubernetes: Option<KubernetesIdentityConfig>,
}

/// `[identity.kubernetes]`: verify pods' projected service-account tokens against the cluster's
/// signing keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesIdentityConfig {
    /// The `iss` of the cluster's tokens (`kubectl get --raw /.well-known/openid-configuration`).
    pub issuer: String,
    /// A JWKS file of the cluster's keys. Absent: fetched by discovery from `issuer` at start,
    /// refreshed every 10 minutes and when a token names an unknown key.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Accepted `aud` values; empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Extra CA certificates (PEM) trusted for the issuer's discovery and keys.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `sa:` selectors match only a verified service account.
    #[serde(default = "require_verified_default")]
    pub require_verified: bool,
}

fn require_verified_default() -> bool {
    true
}

impl IdentityConfig {
    pub(super) fn validate(&self) -> Result<(), (KeyPath, String)> {
        let Some(kubernetes) = &self.kubernetes else {
            return Ok(());
        };
        let at = KeyPath::root().key("identity").key("kubernetes");
        let issuer: Result<http::Uri, _> = kubernetes.issuer.parse();
        let usable = issuer.as_ref().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        });
        if !usable {
            return Err((
                at.key("issuer"),
                format!(
                    "{:?} is not an issuer URL (https://HOST/…, as in the tokens' iss claim)",
                    kubernetes.issuer
                ),
            ));
        }
        if let Some(i) = kubernetes.audiences.iter().position(String::is_empty) {
            return Err((at.key("audiences").index(i), "must not be empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml(text, std::path::Path::new("warden.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn kubernetes_section_defaults_and_requires_issuer() {
        let config = load("[identity.kubernetes]\nissuer = \"https://k8s.example\"\n").unwrap();
        let kubernetes = config.identity.kubernetes.unwrap();
        assert!(kubernetes.require_verified);
        assert!(kubernetes.audiences.is_empty());
        assert_eq!(kubernetes.jwks_file, None);
        assert!(load("").unwrap().identity.kubernetes.is_none());
        let err = load("[identity.kubernetes]\njwks_file = \"/x\"\n").unwrap_err();
        assert!(err.contains("issuer"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = load("[identity.kubernetes]\nissuer = \"https://k\"\nrequire_verifed = false\n")
            .unwrap_err();
        assert!(err.contains("require_verifed"), "{err}");
        let err = load("[identity]\nkubernets = 1\n").unwrap_err();
        assert!(err.contains("kubernets"), "{err}");
        let err = load("[identity.kubernetes]\nissuer = \"kubernetes\"\n").unwrap_err();
        assert!(err.contains("identity.kubernetes.issuer"), "{err}");
        let err = load("[identity.kubernetes]\nissuer = \"https://k\"\naudiences = [\"\"]\n")
            .unwrap_err();
        assert!(err.contains("audiences"), "{err}");
    }
}
