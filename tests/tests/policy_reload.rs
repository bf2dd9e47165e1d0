//! Policy files while the daemon runs: a broken file keeps the previous policy in force and is
//! logged with its file, line and key; a fixed file applies by itself (the directory is watched);
//! SIGHUP reloads what no watch can see. And every example in the repo's `policies/` passes
//! `warden policy check`, which in turn refuses a broken file.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use warden_tests::client::Client;
use warden_tests::policy::{
    chat_request, deny_rule, warden_bin, OutsideFile, PolicyAgent, RELOAD_TIMEOUT,
};
use warden_tests::{wait, ClientOutput, LogLine};

const FILE: &str = "models.toml";
const RULE: &str = "no-gpt-4.1";
const MESSAGE: &str = "gpt-4.1 may not be used from this host";
const MODEL: &str = "gpt-4.1";

/// Denies [`MODEL`].
fn deny_model() -> String {
    deny_rule(RULE, MESSAGE, &format!("model_in = [{MODEL:?}]"))
}

/// Denies another model only: [`MODEL`] is allowed.
fn deny_other_model() -> String {
    deny_rule(
        "no-legacy-models",
        "legacy models may not be used",
        r#"model_in = ["gpt-3.5*"]"#,
    )
}

/// [`deny_model`] with a misspelt key in `[rule.match]`; returns the text and the key's line.
fn broken_file() -> (String, usize) {
    let text = deny_rule(RULE, MESSAGE, &format!("modle = [{MODEL:?}]"));
    let line = text
        .lines()
        .position(|l| l.starts_with("modle"))
        .expect("the broken key is there")
        + 1;
    (text, line)
}

/// Asserts [`MODEL`] is refused by [`RULE`] right now.
fn assert_model_denied(agent: &PolicyAgent) {
    let (status, out) = agent.curl_chat(MODEL);
    assert_eq!(status, 403, "{MODEL} should still be denied\n{out}");
    assert!(out.stdout.contains(RULE), "{out}");
}

/// Polls until a request for [`MODEL`] gets `status`.
fn wait_until_model_gets(agent: &PolicyAgent, status: u16, what: &str) {
    wait::until(what, RELOAD_TIMEOUT, || {
        (agent.curl_chat(MODEL).0 == status).then_some(())
    });
}

/// An ERROR line that names `file:line` and `key` in one of its fields.
fn names_the_problem(line: &LogLine, file: &Path, number: usize, key: &str) -> bool {
    let location = format!("{}:{number}", file.display());
    line.level() == "ERROR"
        && line
            .0
            .values()
            .filter_map(|v| v.as_str())
            .any(|v| v.contains(&location) && v.contains(key))
}

#[test]
fn a_broken_file_keeps_the_previous_policy_and_a_fixed_file_applies_without_sighup() {
    let Some(agent) = PolicyAgent::start("policy-reload", |daemon, _| {
        daemon.policy_file(FILE, &deny_model())
    }) else {
        return;
    };
    let daemon = &agent.fx.daemon;
    // Through the SDK once: the policy the daemon started with is in force.
    agent
        .chat(&chat_request(MODEL, "Say hello"))
        .assert_denied_by(RULE, MESSAGE);

    let (broken, line) = broken_file();
    daemon.write_policy_file(FILE, &broken);
    daemon.sighup();
    let path = daemon.policy_path(FILE);
    daemon.wait_for_log(
        "an error naming the broken file, line and key",
        RELOAD_TIMEOUT,
        |l| names_the_problem(l, &path, line, "modle"),
    );
    assert_model_denied(&agent);

    // No SIGHUP this time: the change alone must be noticed.
    daemon.write_policy_file(FILE, &deny_other_model());
    wait_until_model_gets(&agent, 200, "the fixed file to allow gpt-4.1");
    let seen = agent.fx.upstream.requests();
    assert!(
        seen.iter().any(|r| r.json()["model"] == MODEL),
        "the allowed request reached the upstream"
    );
}

#[test]
fn sighup_reloads_a_change_the_directory_watch_cannot_see() {
    // The directory holds a link to a file kept elsewhere, as configuration tools deploy them:
    // rewriting that file changes nothing inside the watched directory.
    let outside = OutsideFile::new(FILE, &deny_model());
    let Some(agent) = PolicyAgent::start("policy-sighup", |daemon, _| {
        daemon.policy_link(FILE, outside.path())
    }) else {
        return;
    };
    assert_model_denied(&agent);
    let reloads = || agent.fx.daemon.logs().with_message("policy reloaded").len();
    let reloads_before = reloads();

    outside.write(&deny_other_model());
    // Before SIGHUP the rewrite is not in force: for several times the watch's settle period
    // (200 ms), no reload happens and the model stays denied.
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet_until {
        assert_model_denied(&agent);
    }
    assert_eq!(
        reloads(),
        reloads_before,
        "nothing reloaded before SIGHUP:\n{}",
        agent.fx.daemon.log_text()
    );

    agent.fx.daemon.sighup();
    wait_until_model_gets(&agent, 200, "SIGHUP to apply the rewritten file");
    assert_eq!(reloads(), reloads_before + 1, "SIGHUP reloaded once");
}

fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn policy_check(warden: &Path, path: &Path) -> ClientOutput {
    Client::new([
        warden.as_os_str(),
        "policy".as_ref(),
        "check".as_ref(),
        path.as_os_str(),
    ])
    .run()
}

#[test]
fn every_example_policy_passes_policy_check() {
    let Some(warden) = warden_bin() else { return };
    let dir = repo_policies();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no example policies in {}",
        dir.display()
    );

    for file in &files {
        let out = policy_check(&warden, file);
        out.assert_success();
        assert!(out.stdout.starts_with("ok: "), "{out}");
    }
    // Together: rule names must also be unique across the files.
    let out = policy_check(&warden, &dir);
    out.assert_success();
    assert!(
        out.stdout.contains(&format!("in {} files", files.len())),
        "{out}"
    );

    // The check is not a rubber stamp.
    let (broken, line) = broken_file();
    let scratch = OutsideFile::new(FILE, &broken);
    let out = policy_check(&warden, scratch.path());
    assert!(!out.status.success(), "a broken file must fail\n{out}");
    let location = format!("{}:{line}", scratch.path().display());
    assert!(
        out.stderr.contains(&location) && out.stderr.contains("modle"),
        "the error names the file, line and key\n{out}"
    );
}
