//! `[identity.kubernetes]`: service-account tokens verified against the cluster's signing keys.
//!
//! Identity resolution is synchronous, so tokens are checked with the keys in hand
//! (`TokenVerifier::verify_cached`); keys from discovery are refreshed by a background task.
use std::time::Duration;

use crate::{
    config::{IdentityConfig, KubernetesIdentityConfig},
    oidc::{OidcError, OidcHttp, TokenVerifier},
};

/// How often keys obtained by discovery are fetched again (unknown kids also trigger a fetch).
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(600);

/// What the identity records about a pod's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountFacts {
    /// "namespace/name" from the token's claims.
    pub name: Option<String>,
    /// None: no token, or no `[identity.kubernetes]`.
    pub verified: Option<bool>,
    /// Whether `sa:` selectors may match `name`.
    pub selectable: bool,
}

/// Verifies pods' tokens; shared by the identity resolver.
#[derive(Clone)]
pub struct ServiceAccountVerifier {
    verifier: TokenVerifier,
    require_verified: bool,
}

impl ServiceAccountVerifier {
    /// The daemon's verifier, with its key refresh running; None without `[identity.kubernetes]`.
    pub async fn start(
        config: &IdentityConfig,
    ) -> Result<Option<ServiceAccountVerifier>, OidcError> {
        let Some(kubernetes) = &config.kubernetes else {
            return Ok(None);
        };
        let verifier = ServiceAccountVerifier::from_config(kubernetes).await?;
        verifier.spawn_key_refresh();
        tracing::info!(
            issuer = %kubernetes.issuer,
            require_verified = kubernetes.require_verified,
            "verifying Kubernetes service-account tokens"
        );
        Ok(Some(verifier))
    }

    /// Loads the JWKS file, or discovers the issuer and fetches its keys: either failing stops
    /// the start, since every `sa:` rule would silently stop matching.
    pub async fn from_config(
        config: &KubernetesIdentityConfig,
    ) -> Result<ServiceAccountVerifier, OidcError> {
        let audiences = config.audiences.clone();
        let verifier = match &config.jwks_file {
            Some(path) => TokenVerifier::from_jwks_file(&config.issuer, audiences, path, 0)?,
            None => {
                let http = OidcHttp::new(config.ca_file.as_deref())?;
                TokenVerifier::discover(http, &config.issuer, audiences, 0)
                    .await?
                    .0
            }
        };
        Ok(ServiceAccountVerifier::new(
            verifier,
            config.require_verified,
        ))
    }

    pub fn new(verifier: TokenVerifier, require_verified: bool) -> ServiceAccountVerifier {
        ServiceAccountVerifier {
            verifier,
            require_verified,
        }
    }

    /// Refreshes discovered keys every `KEY_REFRESH_INTERVAL` until the runtime stops; a no-op
    /// for a JWKS file.
    pub fn spawn_key_refresh(&self) {
        if !self.verifier.refreshes_keys() {
            return;
        }
        let verifier = self.verifier.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(KEY_REFRESH_INTERVAL);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(error) = verifier.refresh_keys().await {
                    tracing::warn!(issuer = verifier.issuer(), %error, "refreshing the Kubernetes service-account keys failed; keeping the old keys");
                }
            }
        });
    }

    /// The facts of one token. The reason a token fails is logged (never the token).
    pub fn facts(&self, pid: u32, token: &str) -> ServiceAccountFacts {
        let name = super::service_account_from_token(token);
        if name.is_none() {
            return unverified_facts(None);
        }
        let verified = match self.verifier.verify_cached(token) {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(pid, service_account = ?name, %error, "the service-account token does not verify; sa: selectors will not match it");
                false
            }
        };
        ServiceAccountFacts {
            name,
            verified: Some(verified),
            selectable: verified || !self.require_verified,
        }
    }
}

/// Without `[identity.kubernetes]`: the claims' name, unverified and selectable as before.
pub fn unverified_facts(token: Option<&str>) -> ServiceAccountFacts {
    ServiceAccountFacts {
        name: token.and_then(super::service_account_from_token),
        verified: None,
        selectable: true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::identity::selector::IdentitySelector;
    use crate::oidc::test_support::{jwks, now, TestKey};
    use crate::oidc::KeySet;

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    fn token(key: &TestKey) -> String {
        key.sign(&json!({
            "iss": ISSUER, "aud": [ISSUER], "exp": now() + 3600,
            "sub": "system:serviceaccount:prod:runner",
            "kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "runner"}},
        }))
    }

    fn verifier(cluster: &TestKey, require_verified: bool) -> ServiceAccountVerifier {
        let set = serde_json::to_vec(&jwks(&[cluster])).unwrap();
        let keys = KeySet::parse(&set, "test").unwrap();
        let verifier = TokenVerifier::from_key_set(ISSUER, vec![ISSUER.into()], keys, 0);
        ServiceAccountVerifier::new(verifier, require_verified)
    }

    fn identity_with(facts: &ServiceAccountFacts) -> crate::identity::Identity {
        let mut identity = crate::identity::tests::identity();
        identity.k8s_service_account = facts.name.clone();
        identity.k8s_sa_verified = facts.verified;
        identity.k8s_sa_selectable = facts.selectable;
        identity
    }

    #[test]
    fn a_token_signed_by_the_cluster_is_verified_and_selectable() {
        let cluster = TestKey::rsa("cluster");
        let facts = verifier(&cluster, true).facts(7, &token(&cluster));
        assert_eq!(facts.name.as_deref(), Some("prod/runner"));
        assert_eq!(facts.verified, Some(true));
        let rule = IdentitySelector::parse("sa:prod/*").unwrap();
        assert!(rule.matches(&identity_with(&facts)));
    }

    #[test]
    fn a_forged_token_is_recorded_unverified_and_sa_rules_do_not_match_it() {
        let cluster = TestKey::es256("cluster");
        let forger = TestKey::es256("cluster");
        let facts = verifier(&cluster, true).facts(7, &token(&forger));
        assert_eq!(facts.name.as_deref(), Some("prod/runner"));
        assert_eq!(facts.verified, Some(false));
        let identity = identity_with(&facts);
        assert!(!IdentitySelector::parse("sa:prod/*")
            .unwrap()
            .matches(&identity));
        let snapshot = crate::identity::IdentitySnapshot::from(&identity);
        assert_eq!(snapshot.k8s_sa.as_deref(), Some("prod/runner"));
        let recorded = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(recorded["k8s_sa_verified"], json!(false));
    }

    #[test]
    fn without_require_verified_a_forged_token_still_matches_but_is_recorded() {
        let cluster = TestKey::ed25519("cluster");
        let forger = TestKey::ed25519("cluster");
        let facts = verifier(&cluster, false).facts(7, &token(&forger));
        assert_eq!(facts.verified, Some(false));
        assert!(IdentitySelector::parse("sa:prod/*")
            .unwrap()
            .matches(&identity_with(&facts)));
    }

    #[test]
    fn without_the_section_nothing_is_recorded_and_old_records_keep_their_bytes() {
        let facts = unverified_facts(Some(&token(&TestKey::rsa("any"))));
        assert_eq!(facts.name.as_deref(), Some("prod/runner"));
        assert_eq!(facts.verified, None);
        let identity = identity_with(&facts);
        assert!(IdentitySelector::parse("sa:prod/*")
            .unwrap()
            .matches(&identity));
        let body =
            serde_json::to_string(&crate::identity::IdentitySnapshot::from(&identity)).unwrap();
        assert!(!body.contains("k8s_sa_verified"), "{body}");
    }
}
