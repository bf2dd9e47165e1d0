//! `[identity.kubernetes]`: a pod's service-account token is verified against the cluster's keys
//! (a JWKS file here); a forged token is recorded `k8s_sa_verified: false` and `sa:` rules skip it.
//!
//! The "pod" is the SDK in a private mount namespace with a tmpfs over /run holding the token at
//! /var/run/secrets/kubernetes.io/serviceaccount/token, where the daemon reads it through
//! /proc/PID/root. Nothing is written to the machine's own /run.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rcgen::{KeyPair, SigningKey, PKCS_ED25519};
use serde_json::{json, Value};
use warden_tests::audit::connections::wait_for_record_of;
use warden_tests::policy::{chat_request, deny_rule, PolicyAgent};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const RULE: &str = "prod-service-accounts";
const MESSAGE: &str = "prod service accounts may not call the API";

/// Mounts a tmpfs over /run in a new mount namespace, puts the token file `$0` where the kubelet
/// would, and execs the rest.
const MOUNT_TOKEN: &str = r#"mount -t tmpfs -o size=1m,mode=0755 warden-test-sa /run || exit 125
mkdir -p /run/secrets/kubernetes.io/serviceaccount || exit 125
cp "$0" /run/secrets/kubernetes.io/serviceaccount/token || exit 125
exec "$@""#;

/// A projected token for prod/runner, EdDSA-signed by `key` with kid "cluster-key".
fn token(key: &KeyPair) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": "EdDSA", "kid": "cluster-key", "typ": "JWT"});
    let claims = json!({
        "iss": ISSUER, "aud": [ISSUER], "exp": now + 3600, "iat": now, "nbf": now - 5,
        "sub": "system:serviceaccount:prod:runner",
        "kubernetes.io": {
            "namespace": "prod",
            "pod": {"name": "runner-7d9f", "uid": "0f1e"},
            "serviceaccount": {"name": "runner", "uid": "a1b2"}
        }
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn chat_with_token(agent: &PolicyAgent, dir: &Path, name: &str, token: &str) -> Value {
    let path = dir.join(name);
    std::fs::write(&path, token).unwrap();
    let launcher = [
        OsStr::new("unshare"),
        OsStr::new("-m"),
        OsStr::new("--"),
        OsStr::new("sh"),
        OsStr::new("-c"),
        OsStr::new(MOUNT_TOKEN),
        path.as_os_str(),
    ];
    let call = agent.chat_launched_by(&launcher, &chat_request("gpt-4o-mini", "Say hello"));
    let record = wait_for_record_of(&agent.fx.daemon, call.pid());
    json!({ "error": call.error().clone(), "identity": record["identity"].clone() })
}

#[test]
fn only_a_token_signed_by_the_cluster_matches_sa_rules_and_forgeries_are_recorded() {
    let cluster = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let forger = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let jwks = keys.path().join("jwks.json");
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "cluster-key", "use": "sig",
                     "x": URL_SAFE_NO_PAD.encode(cluster.public_key_raw())});
    std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string()).unwrap();
    let section = format!(
        "[identity.kubernetes]\nissuer = {ISSUER:?}\njwks_file = {:?}\naudiences = [{ISSUER:?}]\n",
        jwks.display()
    );
    let Some(agent) = PolicyAgent::start("k8s-sa", |daemon, _| {
        daemon.extra_config(&section).policy_file(
            "sa.toml",
            &deny_rule(RULE, MESSAGE, r#"identity = ["sa:prod/*"]"#),
        )
    }) else {
        return;
    };

    // Signed by the cluster's key: verified, so the sa: rule matches and denies.
    let verified = chat_with_token(&agent, keys.path(), "verified", &token(&cluster));
    assert_eq!(
        verified["identity"]["k8s_sa"], "prod/runner",
        "{verified:#}"
    );
    assert_eq!(
        verified["identity"]["k8s_sa_verified"], true,
        "{verified:#}"
    );
    assert_eq!(verified["error"]["code"], RULE, "{verified:#}");
    agent.assert_upstream_got_nothing();

    // Same claims and kid, another key: recorded as unverified, and the rule does not match it.
    let forged_token = token(&forger);
    let forged = chat_with_token(&agent, keys.path(), "forged", &forged_token);
    assert_eq!(forged["identity"]["k8s_sa"], "prod/runner", "{forged:#}");
    assert_eq!(forged["identity"]["k8s_sa_verified"], false, "{forged:#}");
    assert!(
        forged["error"].is_null(),
        "the forged account must not match: {forged:#}"
    );
    assert_eq!(agent.fx.upstream.requests().len(), 1);
    let log = agent.fx.daemon.log_text();
    assert!(
        log.contains("the service-account token does not verify"),
        "the daemon says why: {log}"
    );
    let signature = forged_token.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "no token in the log");
}
