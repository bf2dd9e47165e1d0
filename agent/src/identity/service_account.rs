//! The Kubernetes service account a pod's projected token names, read from its claims.
//!
//! The signature is not checked: the token is read from the process's own filesystem, and the
//! service account is a label for the audit trail, not a credential Warden acts on.
use std::collections::HashSet;

use serde::Deserialize;

/// Where the kubelet mounts the token, relative to the container's root.
pub const TOKEN_PATH: &str = "var/run/secrets/kubernetes.io/serviceaccount/token";

/// Projected tokens are a few KiB; anything larger is not one.
pub const MAX_TOKEN_BYTES: u64 = 64 * 1024;

#[derive(Deserialize)]
struct Claims {
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
    sub: Option<String>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: Option<String>,
    serviceaccount: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
}

/// "namespace/name" from a service-account JWT, or None when it is not one.
pub fn service_account_from_token(token: &str) -> Option<String> {
    let token = token.trim();
    let header = jsonwebtoken::decode_header(token).ok()?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.insecure_disable_signature_validation();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    // With signature validation disabled the key is never used, whatever the algorithm family.
    let key = jsonwebtoken::DecodingKey::from_secret(&[]);
    let claims = match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            // The error kind only: the token itself is a credential.
            tracing::debug!(kind = ?e.kind(), "service account token has unreadable claims");
            return None;
        }
    };
    service_account_from_claims(claims)
}

fn service_account_from_claims(claims: Claims) -> Option<String> {
    if let Some(k8s) = claims.kubernetes {
        let name = k8s.serviceaccount.and_then(|sa| sa.name);
        if let (Some(namespace), Some(name)) = (k8s.namespace, name) {
            if !namespace.is_empty() && !name.is_empty() {
                return Some(format!("{namespace}/{name}"));
            }
        }
    }
    let sub = claims.sub?;
    let (namespace, name) = sub
        .strip_prefix("system:serviceaccount:")?
        .split_once(':')?;
    if namespace.is_empty() || name.is_empty() || name.contains(':') {
        return None;
    }
    Some(format!("{namespace}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"not the cluster key"),
        )
        .unwrap()
    }

    #[test]
    fn reads_projected_token_claims() {
        let t = token(serde_json::json!({
            "aud": ["https://kubernetes.default.svc"],
            "exp": 1,
            "iss": "https://kubernetes.default.svc",
            "kubernetes.io": {
                "namespace": "billing",
                "pod": {"name": "agent-7d9f", "uid": "0f1e"},
                "serviceaccount": {"name": "billing-agent", "uid": "a1b2"}
            },
            "sub": "system:serviceaccount:billing:billing-agent"
        }));
        assert_eq!(
            service_account_from_token(&format!("{t}\n")).as_deref(),
            Some("billing/billing-agent")
        );
    }

    #[test]
    fn falls_back_to_subject() {
        let t = token(serde_json::json!({"sub": "system:serviceaccount:ns:legacy"}));
        assert_eq!(service_account_from_token(&t).as_deref(), Some("ns/legacy"));
        let t = token(serde_json::json!({"sub": "user:alice"}));
        assert_eq!(service_account_from_token(&t), None);
    }

    #[test]
    fn refuses_what_is_not_a_token() {
        assert_eq!(service_account_from_token(""), None);
        assert_eq!(service_account_from_token("not.a.jwt"), None);
        assert_eq!(service_account_from_token("a.b"), None);
    }

    #[test]
    fn rs256_header_needs_no_key() {
        // An RS256 header with a bogus signature: only the claims matter.
        let header = r#"{"alg":"RS256","kid":"k","typ":"JWT"}"#;
        let claims = r#"{"sub":"system:serviceaccount:prod:runner"}"#;
        let t = format!("{}.{}.c2lnbmF0dXJl", base64url(header), base64url(claims));
        assert_eq!(
            service_account_from_token(&t).as_deref(),
            Some("prod/runner")
        );
    }

    /// Unpadded base64url, enough to hand-build a token with a foreign algorithm.
    fn base64url(text: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bits: Vec<bool> = text
            .bytes()
            .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1))
            .collect();
        bits.chunks(6)
            .map(|chunk| {
                let v = (0..6).fold(0usize, |acc, i| {
                    acc << 1 | usize::from(chunk.get(i) == Some(&true))
                });
                ALPHABET[v] as char
            })
            .collect()
    }
}
