//! The README's manual trust route, as written: its shell block (taken from README.md, so the two
//! cannot drift) run in bash with `warden` on PATH and `WARDEN_CONFIG` naming a test daemon's
//! config, then the official `openai` SDK for Python, curl and the `openai` npm package, each
//! under `warden exec`, reach the fake upstream through Warden.

use std::ffi::OsString;
use std::path::Path;

use warden_tests::{
    require_kernel, require_node, require_python, sdk_scripts, AgentFixture, Client, ClientOutput,
    E2e,
};

const MARKER: &str = "<!-- manual-trust:";

/// The first ```sh block after the marker comment in README.md.
fn manual_trust_block() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme)
        .unwrap_or_else(|e| panic!("reading {}: {e}", readme.display()));
    let after = &text[text
        .find(MARKER)
        .expect("README.md has the manual-trust marker")..];
    let start = after
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + "```sh\n".len();
    let end = after[start..].find("```").expect("the block ends") + start;
    let block = after[start..end].to_string();
    assert!(block.contains("warden ca path"), "{block}");
    block
}

/// `bash -c 'README block; exec CLIENT'` under `warden exec`, with the hosts file, `warden` on
/// PATH, `WARDEN_CONFIG` and a fresh HOME: what a user who copies the block gets.
fn run_as_readme(
    e2e: &E2e,
    fx: &AgentFixture,
    home: &Path,
    client: &[OsString],
    env: &[(&str, &Path)],
) -> ClientOutput {
    let bin_dir = e2e.warden_bin.parent().expect("warden's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("set -e\n{}\nexec \"$@\"\n", manual_trust_block());
    let mut argv: Vec<OsString> = vec!["bash".into(), "-c".into(), script.into(), "bash".into()];
    argv.extend(client.iter().cloned());
    let mut command = Client::new(argv)
        .hosts(&fx.hosts)
        .launched_by(fx.daemon.exec_launcher())
        .env("PATH", path)
        .env("HOME", home)
        .env("WARDEN_CONFIG", fx.daemon.config_path());
    for (key, value) in env {
        command = command.env(key, value);
    }
    command.run()
}

/// Without the block each client would fail on the certificate: the variables are set outside to
/// a file that does not exist, and Warden is not in the system store.
const UNSET: &str = "/nonexistent/ca.pem";

#[test]
fn the_readme_manual_trust_route_works_for_python_curl_and_node() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let Some(node) = require_node() else { return };
    let fx = AgentFixture::start(&e2e, "readme-trust");
    let home = tempfile::tempdir().expect("a HOME");
    let unset = Path::new(UNSET);
    let outside = [
        ("SSL_CERT_FILE", unset),
        ("CURL_CA_BUNDLE", unset),
        ("NODE_EXTRA_CA_CERTS", unset),
    ];

    let python_out = run_as_readme(
        &e2e,
        &fx,
        home.path(),
        &[python.into(), "-c".into(), sdk_scripts::CHAT.into()],
        &outside,
    );
    python_out.assert_success();
    assert_eq!(
        python_out.last_line_json()["content"],
        fx.upstream.reply(),
        "{python_out}"
    );
    fx.daemon.wait_for_exchange(python_out.pid());

    let curl_out = run_as_readme(
        &e2e,
        &fx,
        home.path(),
        &[
            "curl".into(),
            "-sS".into(),
            "--fail".into(),
            "https://api.openai.com/v1/models".into(),
            "-H".into(),
            "Authorization: Bearer sk-test".into(),
        ],
        &outside,
    );
    curl_out.assert_success();
    assert!(curl_out.stdout.contains("\"object\""), "{curl_out}");
    fx.daemon.wait_for_exchange(curl_out.pid());

    let mut node_env = outside.to_vec();
    node_env.push(("NODE_PATH", node.modules.as_path()));
    let node_out = run_as_readme(
        &e2e,
        &fx,
        home.path(),
        &[
            node.node.clone().into(),
            "-e".into(),
            sdk_scripts::NODE_CHAT.into(),
        ],
        &node_env,
    );
    node_out.assert_success();
    assert_eq!(
        node_out.last_line_json()["content"],
        fx.upstream.reply(),
        "{node_out}"
    );
    fx.daemon.wait_for_exchange(node_out.pid());

    let paths: Vec<String> = fx
        .upstream
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        ["/v1/chat/completions", "/v1/models", "/v1/chat/completions"],
        "each client's request reached the upstream through Warden"
    );
    assert!(home.path().join(".config/warden/trust.pem").is_file());
}
