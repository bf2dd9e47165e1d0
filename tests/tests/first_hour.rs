//! What a newcomer meets first, as the CLI shows it: an absent policy directory (refused when a
//! config names it; said plainly when it is the unnamed default), every unknown key of a policy
//! file, `warden ca path` without a CA, and errors that name the config used.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use warden_tests::{policy::warden_bin, require_kernel, Daemon};

const DEFAULT_CONFIG: &str = "/etc/warden/warden.toml";
const DEFAULT_POLICY_DIR: &str = "/etc/warden/policies";

/// `warden ARGS` with no WARDEN_CONFIG from the test's environment.
fn warden(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("WARDEN_CONFIG")
        .env("WARDEN_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("running warden {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config file in a fresh directory naming its own state dir and `[policy] dir`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(policy_dir_name: &str) -> Scratch {
        let dir = tempfile::tempdir().expect("a tempdir");
        let config = format!(
            "state_dir = \"{}\"\n[policy]\ndir = \"{}\"\n[metrics]\nlisten = \"\"\n",
            dir.path().join("state").display(),
            dir.path().join(policy_dir_name).display()
        );
        fs::write(dir.path().join("warden.toml"), config).expect("writing the config");
        Scratch { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("warden.toml")
    }

    fn config_str(&self) -> String {
        self.config().display().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[test]
fn a_configured_policy_dir_that_does_not_exist_stops_run_and_fails_check() {
    let Some(bin) = warden_bin() else { return };
    let scratch = Scratch::new("polices");
    let typo = scratch.path("polices");
    let config = scratch.config_str();

    let run = warden(&bin, &["run", "--config", &config]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let stderr = text(&run.stderr);
    assert_eq!(
        stderr.lines().last(),
        Some(
            format!(
                "warden: loading the policies ([policy] dir): {}: the policy directory does not exist",
                typo.display()
            )
            .as_str()
        ),
        "{stderr}"
    );
    assert!(
        !scratch.path("state").exists(),
        "the refused daemon created its state directory"
    );

    let check = warden(&bin, &["policy", "check", "--config", &config]);
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert_eq!(
        text(&check.stderr),
        format!(
            "{dir}: the policy directory does not exist\nwarden: 1 problem in {dir}\n",
            dir = typo.display()
        )
    );
    assert_eq!(text(&check.stdout), "");
}

#[test]
fn policy_check_lists_every_unknown_key_of_a_file() {
    let Some(bin) = warden_bin() else { return };
    let scratch = Scratch::new("policies");
    let file = scratch.path("typos.toml");
    fs::write(
        &file,
        "[[rule]]\nname = \"approved-models\"\nacton = \"deny\"\naction = \"deny\"\n\
         message = \"no\"\n[rule.match]\nmodel_not_in = [\"gpt-4o-mini\"]\nendpont = [\"responses\"]\n\
         \n[[rule]]\nname = \"mask\"\naction = \"mask\"\nrecognizers = [\"email\"]\ndirecton = \"both\"\n",
    )
    .expect("writing the policy");
    let file_arg = file.display().to_string();

    let check = warden(&bin, &["policy", "check", &file_arg]);

    assert_eq!(check.status.code(), Some(1), "{check:?}");
    let stderr = text(&check.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    let f = &file_arg;
    assert!(
        lines[0].starts_with(&format!(
            "{f}:3: rule[0].acton: unknown key (expected one of `name`"
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{f}:8: rule[0].match.endpont: unknown key (expected one of `identity`"
        )),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "{f}:14: rule[1].directon: unknown key (expected one of `name`"
        )),
        "{stderr}"
    );
    assert_eq!(lines[3], format!("warden: 3 problems in {f}"));
}

#[test]
fn ca_path_fails_without_a_ca_and_names_the_config() {
    let Some(bin) = warden_bin() else { return };
    let scratch = Scratch::new("policies");
    let config = scratch.config_str();
    let pem = scratch.path("state/ca/ca.pem");

    let out = warden(&bin, &["ca", "path", "--config", &config]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        format!(
            "warden: no CA certificate at {}: the daemon creates it on its first start (`warden run` with this config)\n\
             warden: the config used was {config}; name the daemon's config with --config FILE or WARDEN_CONFIG=FILE\n",
            pem.display()
        )
    );

    fs::create_dir_all(pem.parent().expect("a parent")).expect("creating the CA dir");
    fs::write(&pem, "-----BEGIN CERTIFICATE-----\n").expect("writing a CA file");
    let out = warden(&bin, &["ca", "path", "--config", &config]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), format!("{}\n", pem.display()));
}

#[test]
fn no_daemon_at_the_socket_names_the_config_used_and_how_to_name_another() {
    let Some(bin) = warden_bin() else { return };
    let scratch = Scratch::new("policies");
    let config = scratch.config_str();
    let socket = scratch.path("state/admin.sock");
    let expected = |config_line: &str| {
        format!(
            "warden: cannot reach the Warden daemon at {} (is `warden run` running with this config?): \
             No such file or directory (os error 2)\nwarden: {config_line}; name the daemon's config with \
             --config FILE or WARDEN_CONFIG=FILE\n",
            socket.display()
        )
    };

    let out = warden(&bin, &["status", "--config", &config]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        text(&out.stderr),
        expected(&format!("the config used was {config}"))
    );

    let out = Command::new(&bin)
        .args(["status", "--json"])
        .env("WARDEN_CONFIG", &config)
        .output()
        .expect("running warden status");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        text(&out.stderr),
        expected(&format!("the config used was {config}"))
    );

    // Without any config: only where the host has neither the default config nor a daemon.
    if Path::new(DEFAULT_CONFIG).exists() || Path::new("/var/lib/warden/admin.sock").exists() {
        eprintln!(
            "{DEFAULT_CONFIG} or a daemon exists on this host: the no-config case is not checked"
        );
        return;
    }
    let out = warden(&bin, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        text(&out.stderr),
        "warden: cannot reach the Warden daemon at /var/lib/warden/admin.sock (is `warden run` running \
         with this config?): No such file or directory (os error 2)\nwarden: no config file was used \
         (/etc/warden/warden.toml does not exist), so the built-in defaults apply (state_dir \
         /var/lib/warden); name the daemon's config with --config FILE or WARDEN_CONFIG=FILE\n"
    );
}

#[test]
fn the_unnamed_default_policy_dir_may_be_absent_and_status_says_no_policy_is_loaded() {
    let Some(e2e) = require_kernel() else { return };
    assert!(
        !Path::new(DEFAULT_POLICY_DIR).exists(),
        "{DEFAULT_POLICY_DIR} exists on this host; this test needs it absent"
    );
    let daemon = Daemon::builder(&e2e).unnamed_policy_dir().start();

    let line = daemon
        .logs()
        .find(|l| l.message().starts_with("no policy loaded"))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no 'no policy loaded' line; the log:\n{}",
                daemon.log_text()
            )
        });
    assert_eq!(
        line.message(),
        format!("no policy loaded: {DEFAULT_POLICY_DIR} does not exist; no request is checked against any rule")
    );
    assert_eq!(line.level(), "WARN");

    let json = daemon.cli("status", &["--json"]);
    json.assert_success();
    let policy = &json.json()["policy"];
    assert_eq!(
        policy,
        &serde_json::json!({
            "dir": DEFAULT_POLICY_DIR, "loaded": false, "files": 0, "rules": 0,
            "reason": format!("{DEFAULT_POLICY_DIR} does not exist"),
        })
    );
    let out = daemon.cli("status", &[]);
    out.assert_success();
    assert!(
        out.stdout.lines().any(|l| l
            == format!("policy          NONE LOADED: {DEFAULT_POLICY_DIR} does not exist; no request is checked against any rule")),
        "{out}"
    );
}

#[test]
fn status_names_the_policy_in_force() {
    let Some(e2e) = require_kernel() else { return };
    let daemon = Daemon::builder(&e2e)
        .policy_file(
            "deny.toml",
            "[[rule]]\nname = \"no\"\naction = \"deny\"\nmessage = \"no\"\n",
        )
        .start();
    let dir = daemon.config_path().with_file_name("policies");

    let json = daemon.cli("status", &["--json"]);
    json.assert_success();
    assert_eq!(
        json.json()["policy"],
        serde_json::json!({"dir": dir, "loaded": true, "files": 1, "rules": 1})
    );
    let out = daemon.cli("status", &[]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l == format!("policy          1 rules in 1 files from {}", dir.display())),
        "{out}"
    );
    assert!(
        daemon
            .logs()
            .find(|l| l.message().starts_with("no policy loaded"))
            .is_none(),
        "{}",
        daemon.log_text()
    );
}
