//! Which real clients trust a CA that is added to Debian's system trust store the way `warden
//! install` adds Warden's (a file in /usr/local/share/ca-certificates, then
//! `update-ca-certificates`), checked against the clients themselves, without Warden: curl, the
//! official `openai` Python SDK and the Go client use the system store; Node's SDK does not, and
//! needs `NODE_EXTRA_CA_CERTS`.
//!
//! The store is changed inside an nspawn container (tests/src/nspawn.rs), whose writes never reach
//! the host. The clients talk straight to the fake upstream, whose test CA plays Warden's.

use warden_tests::fake_upstream::openai::MODELS;
use warden_tests::nspawn::Container;
use warden_tests::{
    require_go_client, require_node, require_nspawn, require_python, sdk_scripts, ClientOutput,
    FakeUpstream, HostsFile,
};

const UPSTREAM_CA: &str = "/etc/warden-test/upstream-ca.pem";
const ANCHOR: &str = "/usr/local/share/ca-certificates/warden-test-upstream.crt";

/// The four clients, each as a command for the container (environment passed through `env`).
struct Clients {
    curl: Vec<String>,
    python: Vec<String>,
    go: Vec<String>,
    node: Vec<String>,
}

impl Clients {
    fn new() -> Option<Self> {
        let python = require_python()?;
        let node = require_node()?;
        let go = require_go_client()?;
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        Some(Self {
            curl: [
                "curl",
                "-sS",
                "--max-time",
                "20",
                "https://api.openai.com/v1/models",
            ]
            .map(String::from)
            .to_vec(),
            python: vec![path(&python), "-c".into(), sdk_scripts::CHAT.into()],
            go: vec![path(&go)],
            node: vec![
                "env".into(),
                format!("NODE_PATH={}", path(&node.modules)),
                path(&node.node),
                "-e".into(),
                sdk_scripts::NODE_CHAT.into(),
            ],
        })
    }
}

/// Panics unless the client failed on the upstream's certificate.
fn assert_untrusted(out: &ClientOutput, what: &str) {
    assert!(
        !out.status.success(),
        "{what} must not trust the CA yet\n{out}"
    );
    let text = format!("{}{}", out.stdout, out.stderr).to_lowercase();
    assert!(
        text.contains("certificate"),
        "{what} fails on the certificate\n{out}"
    );
}

/// Panics unless the client got the upstream's answer: its chat reply, or (curl asks for the
/// models) its models list.
fn assert_trusted(out: &ClientOutput, upstream: &FakeUpstream, what: &str) {
    assert!(out.status.success(), "{what} trusts the CA\n{out}");
    let expected = if what == "curl" {
        MODELS[0]
    } else {
        upstream.reply()
    };
    assert!(
        out.stdout.contains(expected),
        "{what} got the upstream's answer ({expected:?})\n{out}"
    );
}

#[test]
fn system_store_clients_trust_an_anchor_node_needs_node_extra_ca_certs() {
    let Some(_) = require_nspawn() else { return };
    let Some(clients) = Clients::new() else {
        return;
    };
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let container = Container::builder("trust")
        .bind_ro(upstream.ca_pem_path(), UPSTREAM_CA)
        .bind_ro(&hosts.path(), "/etc/hosts")
        .boot();
    let all = [
        ("curl", &clients.curl),
        ("the Python SDK", &clients.python),
        ("the Go client", &clients.go),
        ("the Node SDK", &clients.node),
    ];

    for (what, command) in all {
        assert_untrusted(&container.exec(command), what);
    }
    assert!(upstream.requests().is_empty(), "no request got through");

    container.sh(&format!(
        "set -e; cp {UPSTREAM_CA} {ANCHOR}; update-ca-certificates >/dev/null 2>&1"
    ));
    for (what, command) in &all[..3] {
        assert_trusted(&container.exec(command.iter()), &upstream, what);
    }
    assert_untrusted(
        &container.exec(&clients.node),
        "the Node SDK (system store only)",
    );

    let mut node_with_variable = clients.node.clone();
    node_with_variable.insert(1, format!("NODE_EXTRA_CA_CERTS={ANCHOR}"));
    assert_trusted(
        &container.exec(&node_with_variable),
        &upstream,
        "the Node SDK with NODE_EXTRA_CA_CERTS",
    );
    assert_eq!(
        upstream.requests().len(),
        4,
        "curl, Python, Go and Node each made one request"
    );
}
