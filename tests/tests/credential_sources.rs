//! Where custodied keys come from and how they change: a secret file that is group- or
//! world-readable, not root's, or missing stops the daemon's start with a clear message; a
//! changed file rotates the key without a restart, and so does SIGHUP for a change no watch sees;
//! a file refused at reload keeps the previous key in force; a systemd credential is read from
//! `$CREDENTIALS_DIRECTORY`.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use warden_tests::custody::{
    credential_toml, systemd_credential_toml, SecretDir, ACCOUNT, CREDENTIAL,
};
use warden_tests::daemon::Account;
use warden_tests::policy::{warden_bin, PolicyAgent, RELOAD_TIMEOUT};
use warden_tests::{require_root, wait, Client, ClientOutput};

const KEY_1: &str = "sk-rotation-first-key-1111";
const KEY_2: &str = "sk-rotation-second-key-2222";
const KEY_3: &str = "sk-rotation-third-key-3333";
const KEY_4: &str = "sk-rotation-refused-key-4444";
const MODEL: &str = "gpt-4o-mini";

/// Runs `warden run` with a config whose one credential reads `secret_file`. The listen port is
/// held by the test, so a daemon that got past its credentials would stop at binding, never
/// attaching anything.
fn start_with_secret(warden: &Path, secret_file: &Path) -> ClientOutput {
    let dir = tempfile::tempdir().expect("a tempdir for the config");
    let held = TcpListener::bind("127.0.0.1:0").expect("holding a port");
    let port = held.local_addr().expect("the held port").port();
    let policies = dir.path().join("policies");
    fs::create_dir(&policies).expect("a policy directory");
    let config = dir.path().join("warden.toml");
    let text = format!(
        "state_dir = {:?}\n[proxy]\nresolve_intercepted_hosts = false\nlisten_port = {port}\n[metrics]\nlisten = \"\"\n[policy]\ndir = {:?}\n{}",
        dir.path().join("state").display().to_string(),
        policies.display().to_string(),
        credential_toml(CREDENTIAL, secret_file, &["uid:0"]),
    );
    fs::write(&config, text).expect("writing the config");
    Client::new([
        warden.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "run".as_ref(),
    ])
    .timeout(Duration::from_secs(20))
    .run()
}

#[test]
fn a_group_or_world_readable_secret_file_stops_the_start_with_a_clear_message() {
    if !require_root() {
        return;
    }
    let Some(warden) = warden_bin() else {
        return;
    };
    let secrets = SecretDir::new();
    for mode in [0o640, 0o604, 0o644] {
        let path = secrets.write(CREDENTIAL, KEY_1, mode);
        let out = start_with_secret(&warden, &path);
        assert!(
            !out.status.success(),
            "the daemon started with mode {mode:o}\n{out}"
        );
        for expected in [
            "loading the credentials".to_string(),
            format!("credential {CREDENTIAL}"),
            path.display().to_string(),
            format!("mode 0{mode:o} lets its group or other users access it"),
            format!("chmod 600 {}", path.display()),
        ] {
            assert!(
                out.stderr.contains(&expected),
                "{expected:?} missing\n{out}"
            );
        }
        assert!(
            !out.stderr.contains("cannot listen"),
            "it got past the credentials\n{out}"
        );
        assert!(
            !format!("{out}").contains(KEY_1),
            "the key is in the output\n{out}"
        );
    }
    let path = secrets.write(CREDENTIAL, KEY_1, 0o600);
    chown(&path, Some(65534), Some(65534)).expect("chown nobody");
    let out = start_with_secret(&warden, &path);
    assert!(
        out.stderr.contains("is owned by uid 65534, not root"),
        "{out}"
    );
    fs::remove_file(&path).expect("removing the secret");
    let out = start_with_secret(&warden, &path);
    assert!(
        !out.status.success()
            && out.stderr.contains("cannot open")
            && out.stderr.contains(&path.display().to_string()),
        "a missing secret file stops the start\n{out}"
    );
}

/// The key the upstream got for the last request.
fn last_key(agent: &PolicyAgent) -> Option<String> {
    agent.fx.upstream.authorizations().pop().flatten()
}

/// Sends requests until the upstream gets `key`.
fn wait_for_key(agent: &PolicyAgent, key: &str, what: &str) {
    let expected = format!("Bearer {key}");
    wait::until(what, RELOAD_TIMEOUT, || {
        let (status, _) = agent.curl_chat(MODEL);
        (status == 200 && last_key(agent).as_deref() == Some(expected.as_str())).then_some(())
    });
}

/// Asserts requests keep getting `key` upstream for `period`.
fn assert_key_stays(agent: &PolicyAgent, key: &str, period: Duration) {
    let expected = format!("Bearer {key}");
    let until = Instant::now() + period;
    loop {
        let (status, out) = agent.curl_chat(MODEL);
        assert_eq!(status, 200, "{out}");
        assert_eq!(last_key(agent).as_deref(), Some(expected.as_str()), "{out}");
        if Instant::now() >= until {
            return;
        }
    }
}

#[test]
fn a_changed_file_or_sighup_rotates_the_key_without_a_restart_and_a_refused_file_keeps_it() {
    let secrets = SecretDir::new();
    let key_file = secrets.write(CREDENTIAL, KEY_1, 0o600);
    let identity = format!("account:{ACCOUNT}");
    let Some(agent) = PolicyAgent::start("custody-rotation", |daemon, agent| {
        daemon
            .account(Account::cgroup(ACCOUNT, agent.path()))
            .extra_config(&credential_toml(CREDENTIAL, &key_file, &[&identity]))
    }) else {
        return;
    };
    let pid = agent.fx.daemon.pid();
    wait_for_key(&agent, KEY_1, "the first key");

    // A new file renamed into place, as a deployment does: the watch sees it, no signal needed.
    secrets.write(CREDENTIAL, KEY_2, 0o600);
    wait_for_key(&agent, KEY_2, "the rotated file's key without SIGHUP");

    // Written through another link to the same file: nothing changes in the watched directory.
    let elsewhere = tempfile::tempdir().expect("another directory");
    let link = elsewhere.path().join("same-file");
    fs::hard_link(&key_file, &link).expect("a hard link to the secret file");
    fs::write(&link, KEY_3).expect("rewriting the secret in place");
    assert_key_stays(&agent, KEY_2, Duration::from_millis(1500));
    agent.fx.daemon.sighup();
    wait_for_key(&agent, KEY_3, "SIGHUP to rotate to the rewritten key");

    // A new key in a world-readable file is refused at reload: the previous key stays.
    let refused = secrets.write(CREDENTIAL, KEY_4, 0o644);
    agent
        .fx
        .daemon
        .wait_for_log("the refused reload", RELOAD_TIMEOUT, |l| {
            l.level() == "ERROR"
                && l.message().contains("credential reload refused")
                && l.str("error").is_some_and(|e| {
                    e.contains("mode 0644") && e.contains(&refused.display().to_string())
                })
        });
    assert_key_stays(&agent, KEY_3, Duration::from_millis(500));
    assert_eq!(agent.fx.daemon.pid(), pid, "the daemon was never restarted");
    for key in [KEY_1, KEY_2, KEY_3, KEY_4] {
        assert!(
            !agent.fx.daemon.log_text().contains(key),
            "{key} is in the log"
        );
    }
    assert!(
        fs::metadata(&refused).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o644),
        "Warden does not fix the mode itself"
    );
}

#[test]
fn a_systemd_credential_is_read_from_the_credentials_directory() {
    let credentials = SecretDir::new();
    credentials.write(CREDENTIAL, KEY_1, 0o400);
    let identity = format!("account:{ACCOUNT}");
    let Some(agent) = PolicyAgent::start("custody-systemd", |daemon, agent| {
        daemon
            .account(Account::cgroup(ACCOUNT, agent.path()))
            .env("CREDENTIALS_DIRECTORY", credentials.dir())
            .extra_config(&systemd_credential_toml(CREDENTIAL, &[&identity]))
    }) else {
        return;
    };
    wait_for_key(&agent, KEY_1, "the systemd credential's key");
    let status = agent.fx.daemon.cli("status", &["--json"]);
    status.assert_success();
    let status = status.json();
    assert_eq!(
        status["credentials"]["credentials"][0]["source"],
        format!("systemd credential {CREDENTIAL}"),
        "{status:#}"
    );
}
