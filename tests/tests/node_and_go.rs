//! Real Node and Go clients in a selected cgroup, unmodified: the official `openai` npm package
//! and a Go program on the standard library (tests/clients/go) each reach the fake upstream
//! through Warden, and the audit store records the exchange with the client's pid and executable.
//!
//! Each client trusts Warden's CA only through the variable its runtime reads: Node its bundled
//! roots plus `NODE_EXTRA_CA_CERTS`, Go the system store or `SSL_CERT_FILE`. Without it each fails
//! on the certificate and nothing reaches the upstream, which shows that the variable (or,
//! after `warden install`, the trust store) is what makes interception work for that runtime.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use warden_tests::attribution::assert_attributed;
use warden_tests::audit;
use warden_tests::{
    require_go_client, require_kernel, require_node, sdk_scripts, AgentFixture, Client,
    ClientOutput, NodeSdk,
};

/// The API key the clients send.
const KEY: &str = "sk-test";
/// How long Warden may take to log a connection once the client is done.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// `node -e NODE_CHAT` as the agent, seeing the pinned SDK; no CA variable yet.
fn node_client(fx: &AgentFixture, sdk: &NodeSdk) -> Client {
    Client::new([
        sdk.node.as_os_str(),
        OsStr::new("-e"),
        OsStr::new(sdk_scripts::NODE_CHAT),
    ])
    .in_cgroup(&fx.agent)
    .hosts(&fx.hosts)
    .env("NODE_PATH", &sdk.modules)
}

/// The Go client as the agent; no CA variable: Go trusts the system store only.
fn go_client(fx: &AgentFixture, client: &Path) -> Client {
    Client::new([client.as_os_str()])
        .in_cgroup(&fx.agent)
        .hosts(&fx.hosts)
        .env("OPENAI_API_KEY", KEY)
}

/// The client got the upstream's reply through Warden: the upstream saw one chat completion,
/// Warden logged it and the audit store holds it, each with the client's pid and executable.
fn assert_intercepted(fx: &AgentFixture, out: &ClientOutput) -> Value {
    out.assert_success();
    let printed = out.last_line_json();
    let pid = printed["pid"].as_u64().expect("the client prints its pid") as u32;
    assert_eq!(
        Some(pid),
        out.pid,
        "the client kept the pid it announced\n{out}"
    );
    let exe = PathBuf::from(printed["exe"].as_str().expect("the client prints its exe"));
    assert_eq!(printed["content"], fx.upstream.reply(), "{out}");

    let seen = fx.upstream.requests();
    assert_eq!(seen.len(), 1, "one request at the upstream: {seen:#?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(seen[0].json()["model"], "gpt-4o-mini");

    let line = fx.daemon.wait_for_exchange(pid);
    assert_attributed(&line, pid, &exe, fx.agent.path());
    assert_eq!(line.str("host"), Some("api.openai.com"), "{line}");
    assert_eq!(line.str("path"), Some("/v1/chat/completions"), "{line}");
    assert_eq!(line.u64("status"), Some(200), "{line}");

    let summary = audit::wait_for_finished(&fx.daemon, 1).remove(0);
    let id = summary["id"].as_str().expect("an exchange id");
    let detail = audit::show(&fx.daemon, id);
    audit::assert_identity(&detail, pid, &exe, fx.agent.path());
    assert_eq!(detail["request"]["model"], "gpt-4o-mini", "{detail:#}");
    printed
}

/// The client failed on Warden's certificate, after its connection was redirected to Warden,
/// and neither the upstream nor the audit store saw a request.
fn assert_refused_certificate(fx: &AgentFixture, out: &ClientOutput, certificate_error: &str) {
    assert_eq!(out.code(), Some(1), "the client fails\n{out}");
    assert!(
        out.stderr.contains(certificate_error),
        "the client reports `{certificate_error}`\n{out}"
    );
    let closed =
        fx.daemon
            .wait_for_log("the rejected connection's log line", LINE_TIMEOUT, |line| {
                line.is("connection closed") && line.pid() == Some(out.pid())
            });
    assert_eq!(closed.str("cgroup"), Some(fx.agent.path()), "{closed}");
    assert!(
        fx.upstream.requests().is_empty() && fx.upstream.connections() == 0,
        "nothing may reach the upstream: {:#?}",
        fx.upstream.requests()
    );
    assert!(
        audit::list(&fx.daemon, &[]).is_empty(),
        "no exchange is recorded"
    );
}

#[test]
fn node_sdk_with_node_extra_ca_certs_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let Some(sdk) = require_node() else { return };
    let fx = AgentFixture::start(&e2e, "node-sdk");

    let out = node_client(&fx, &sdk)
        .env("NODE_EXTRA_CA_CERTS", fx.daemon.ca_pem())
        .run();

    let printed = assert_intercepted(&fx, &out);
    assert_eq!(printed["model"], "gpt-4o-mini");
    assert!(printed["total_tokens"].as_u64().is_some_and(|t| t > 0));
    assert_eq!(
        printed["exe"].as_str().map(Path::new),
        Some(fs_canonical(&sdk.node).as_path()),
        "the process is node itself"
    );
}

#[test]
fn node_sdk_without_the_ca_variable_fails_on_the_certificate() {
    let Some(e2e) = require_kernel() else { return };
    let Some(sdk) = require_node() else { return };
    let fx = AgentFixture::start(&e2e, "node-no-ca");

    // Node reads neither SSL_CERT_FILE nor the system store by default: even with the bundle
    // that makes curl and Python trust Warden, its bundled roots alone decide.
    let out = node_client(&fx, &sdk)
        .env("SSL_CERT_FILE", fx.daemon.trust_bundle())
        .run();

    assert!(out.stderr.contains("APIConnectionError"), "{out}");
    // Warden sends its CA along with the leaf; Node does not trust that self-signed root.
    assert_refused_certificate(&fx, &out, "Error [SELF_SIGNED_CERT_IN_CHAIN]");
}

#[test]
fn go_client_with_ssl_cert_file_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let Some(client) = require_go_client() else {
        return;
    };
    let fx = AgentFixture::start(&e2e, "go-client");

    let out = go_client(&fx, &client)
        .env("SSL_CERT_FILE", fx.daemon.trust_bundle())
        .run();

    let printed = assert_intercepted(&fx, &out);
    assert_eq!(printed["status"], 200, "{out}");
    assert_eq!(
        printed["exe"].as_str().map(Path::new),
        Some(fs_canonical(&client).as_path())
    );
}

#[test]
fn go_client_without_a_trusted_ca_fails_on_x509() {
    let Some(e2e) = require_kernel() else { return };
    let Some(client) = require_go_client() else {
        return;
    };
    let fx = AgentFixture::start(&e2e, "go-no-ca");

    let out = go_client(&fx, &client).run();

    assert_refused_certificate(&fx, &out, "x509: certificate signed by unknown authority");
}

fn fs_canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|e| panic!("canonicalize {}: {e}", path.display()))
}
