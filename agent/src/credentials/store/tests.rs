use std::{os::unix::fs::PermissionsExt, path::Path};

use super::*;

/// The identity fields a selector reads, set by hand.
#[derive(Default)]
struct Subject {
    account: Option<String>,
    unit: Option<String>,
    uid: u32,
}

impl SelectorSubject for Subject {
    fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }
    fn unit(&self) -> Option<&str> {
        self.unit.as_deref()
    }
    fn user(&self) -> Option<&str> {
        None
    }
    fn uid(&self) -> u32 {
        self.uid
    }
    fn cgroup(&self) -> Option<&str> {
        None
    }
    fn exe(&self) -> Option<&str> {
        None
    }
    fn pid(&self) -> u32 {
        1
    }
    fn service_account(&self) -> Option<&str> {
        None
    }
}

fn account(name: &str) -> Subject {
    Subject {
        account: Some(name.into()),
        ..Subject::default()
    }
}

fn write_key(path: &Path, key: &str) {
    std::fs::write(path, key).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn entry(name: &str, host: &str, file: &Path, identity: &[&str]) -> CredentialConfig {
    CredentialConfig {
        name: name.into(),
        host: host.into(),
        header: crate::config::credentials::DEFAULT_HEADER.into(),
        secret_file: Some(file.to_path_buf()),
        systemd_credential: None,
        identity: identity.iter().map(|s| s.to_string()).collect(),
    }
}

fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn an_identity_is_served_by_the_first_matching_credential_of_its_host() {
    if !as_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_key(&a, "sk-key-a");
    write_key(&b, "sk-key-b");
    let store = CredentialStore::load(
        &[
            entry("a", "api.openai.com", &a, &["account:billing"]),
            entry("b", "api.openai.com", &b, &["account:*"]),
        ],
        Presented::Replace,
    )
    .unwrap();
    let name = |custody: Custody| match custody {
        Custody::Serve(c) => c.name.clone(),
        Custody::Unserved => "unserved".into(),
        Custody::NotCustodied => "not custodied".into(),
    };
    assert_eq!(
        name(store.custody("API.openai.com.", &account("billing"))),
        "a"
    );
    assert_eq!(
        name(store.custody("api.openai.com", &account("other"))),
        "b"
    );
    assert_eq!(
        name(store.custody("api.openai.com", &Subject::default())),
        "unserved"
    );
    assert_eq!(
        name(store.custody("api.anthropic.com", &account("billing"))),
        "not custodied"
    );
    let Custody::Serve(a) = store.custody("api.openai.com", &account("billing")) else {
        unreachable!()
    };
    let value = a.header_value().unwrap();
    assert!(value.is_sensitive());
    assert_eq!(value.to_str().unwrap(), "Bearer sk-key-a");
    assert_eq!(a.fingerprint, fingerprint("sk-key-a"));
    // Neither Debug nor the status shows the key.
    assert!(!format!("{a:?}").contains("sk-key-a"));
    let status = serde_json::to_string(&store.status()).unwrap();
    assert!(!status.contains("sk-key"), "{status}");
    assert!(status.contains(&fingerprint("sk-key-b")), "{status}");
}

#[test]
fn a_reload_rotates_a_changed_key_and_keeps_the_old_one_when_the_file_is_refused() {
    if !as_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    write_key(&path, "sk-old");
    let store = CredentialStore::load(
        &[entry("a", "api.openai.com", &path, &["uid:0"])],
        Presented::Replace,
    )
    .unwrap();
    let key = || match store.custody("api.openai.com", &Subject::default()) {
        Custody::Serve(c) => c.header_value().unwrap().to_str().unwrap().to_string(),
        _ => unreachable!("uid 0 is served"),
    };
    write_key(&path, "sk-new\n");
    assert!(store.reload("test").contains("1 rotated"));
    assert_eq!(key(), "Bearer sk-new");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(store.reload("test").contains("1 kept"));
    assert_eq!(
        key(),
        "Bearer sk-new",
        "a refused file keeps the key in force"
    );
    std::fs::remove_file(&path).unwrap();
    store.reload("test");
    assert_eq!(
        key(),
        "Bearer sk-new",
        "a missing file keeps the key in force"
    );
}

#[test]
fn a_start_with_an_unreadable_secret_fails_naming_the_credential_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let error = CredentialStore::load(
        &[entry("prod", "api.openai.com", &missing, &["uid:0"])],
        Presented::Replace,
    )
    .unwrap_err()
    .to_string();
    assert!(error.starts_with("credential prod: "), "{error}");
    assert!(error.contains(&missing.display().to_string()), "{error}");
}

#[test]
fn an_unknown_selector_prefix_stops_the_start_naming_the_credential_and_the_index() {
    let bad = entry(
        "prod",
        "api.openai.com",
        Path::new("/nonexistent"),
        &["uid:0", "acount:x"],
    );
    let error = CredentialStore::load(&[bad], Presented::Replace)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "credential prod: identity[1]: unknown identity selector prefix \"acount\""
        ),
        "{error}"
    );
}
