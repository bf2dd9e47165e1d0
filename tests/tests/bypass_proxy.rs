//! Going around Warden through an HTTP proxy (issue 14, point 2), under `intercept_ports = "all"`:
//! the proxy's port is redirected like any other, so Warden reads the `CONNECT` itself. A CONNECT
//! to the API is answered by Warden and intercepted inside; plaintext HTTP to the API through
//! `HTTP_PROXY` is refused; a CONNECT to any other host goes to the real proxy (a
//! [`ConnectProxy`] on loopback, outside the selected cgroup), its tunnel relayed untouched.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use warden_tests::attribution::{assert_attributed, exchange_from};
use warden_tests::audit::connections;
use warden_tests::connect_proxy::ConnectProxy;
use warden_tests::curl::{self, assert_chat_reply, http_code};
use warden_tests::{
    require_kernel, require_python, sdk_scripts, AgentFixture, Client, ClientOutput, E2e,
    EchoOrigin, HostsFile,
};

fn fixture(e2e: &E2e, name: &str) -> AgentFixture {
    AgentFixture::start_with(e2e, name, |daemon, _| daemon.intercept_all_ports())
}

/// The proxy did not see the call: it never reached the real proxy.
fn assert_not_through(proxy: &ConnectProxy) {
    assert_eq!(
        proxy.request_lines(),
        Vec::<String>::new(),
        "the call must not reach the real proxy"
    );
}

/// The connection of `pid` is recorded as intercepted, with the API's name.
fn assert_recorded_intercepted(fx: &AgentFixture, pid: u32) -> Value {
    let record = connections::wait_for_record_of(&fx.daemon, pid);
    assert_eq!(record["disposition"], "intercepted", "{record:#}");
    assert_eq!(record["server_name"], "api.openai.com", "{record:#}");
    record
}

#[test]
fn https_proxy_to_the_api_with_curl_is_answered_by_warden_and_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "https-proxy-curl");
    let proxy = ConnectProxy::start(0, &[]);

    let out = fx
        .client(curl::chat())
        .env("HTTPS_PROXY", proxy.url())
        .run();

    assert_chat_reply(&out, fx.upstream.reply());
    exchange_from(&fx.daemon, &out, fx.agent.path());
    let record = assert_recorded_intercepted(&fx, out.pid());
    assert_eq!(
        record["original_dst"],
        proxy.addr().to_string(),
        "{record:#}"
    );
    assert_not_through(&proxy);
}

#[test]
fn https_proxy_to_the_api_with_the_python_sdk_is_answered_by_warden_and_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let fx = fixture(&e2e, "https-proxy-sdk");
    let proxy = ConnectProxy::start(0, &[]);

    let out = fx
        .client([
            python.as_os_str(),
            "-c".as_ref(),
            sdk_scripts::CHAT.as_ref(),
        ])
        .env("HTTPS_PROXY", proxy.url())
        .run();

    out.assert_success();
    let printed = out.json();
    assert_eq!(printed["content"], fx.upstream.reply(), "{out}");
    let pid = printed["pid"].as_u64().expect("the script prints its pid") as u32;
    let exe = PathBuf::from(printed["exe"].as_str().expect("the script prints its exe"));
    let line = fx.daemon.wait_for_exchange(pid);
    assert_attributed(&line, pid, &exe, fx.agent.path());
    assert_eq!(line.u64("status"), Some(200), "{line}");
    assert_recorded_intercepted(&fx, pid);
    assert_not_through(&proxy);
}

/// curl (through `HTTP_PROXY` when `extra` says `-x`) to `http://api.openai.com/…`, printing the
/// `x-should-retry` header on stderr with the status.
fn plaintext_chat(extra: &[&str]) -> Vec<String> {
    let mut argv = curl::chat_at("api.openai.com");
    let url = argv
        .iter_mut()
        .find(|a| a.starts_with("https://"))
        .expect("the chat command has a URL");
    *url = url.replacen("https://", "http://", 1);
    let format = argv
        .iter_mut()
        .find(|a| a.starts_with("%{stderr}"))
        .expect("the chat command prints its status");
    format.push_str("x-should-retry=%header{x-should-retry}\\n");
    argv.extend(extra.iter().map(|a| a.to_string()));
    argv
}

/// The agent got Warden's 403 for plaintext HTTP to the API, OpenAI-shaped, not to be retried,
/// and the connection is recorded as rejected with the reason.
pub fn assert_plaintext_refused(fx: &AgentFixture, out: &ClientOutput) {
    assert_eq!(http_code(out), 403, "{out}");
    let body = out.json();
    let error = &body["error"];
    for key in ["message", "type", "param", "code"] {
        assert!(error.get(key).is_some(), "error.{key} missing in {body}");
    }
    assert_eq!(error["code"], "plaintext_http_refused", "{body}");
    assert!(
        out.stderr
            .to_ascii_lowercase()
            .contains("x-should-retry=false"),
        "{out}"
    );
    let record = connections::wait_for_record_of(&fx.daemon, out.pid());
    assert_eq!(record["disposition"], "rejected", "{record:#}");
    assert_eq!(
        record["reason"], "plaintext HTTP to intercepted host api.openai.com",
        "{record:#}"
    );
    assert!(
        fx.upstream.requests().is_empty(),
        "nothing reached the upstream"
    );
}

#[test]
fn plaintext_http_to_the_api_through_http_proxy_is_refused() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "http-proxy");
    let proxy = ConnectProxy::start(0, &[]);

    let out = fx.client(plaintext_chat(&["-x", &proxy.url()])).run();

    assert_plaintext_refused(&fx, &out);
    assert_not_through(&proxy);
}

#[test]
fn plaintext_http_to_the_api_on_port_80_is_refused() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "port-80");

    let out = fx.client(plaintext_chat(&[])).run();

    assert_plaintext_refused(&fx, &out);
}

/// Connects to the proxy named in argv[1], asks `CONNECT argv[2]`, sends a few bytes through the
/// tunnel and reads them back.
const CONNECT_AND_ECHO: &str = r#"
import json, os, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=20)
s.sendall(f"CONNECT {sys.argv[2]} HTTP/1.1\r\nHost: {sys.argv[2]}\r\n\r\n".encode())
answer = b""
while b"\r\n\r\n" not in answer:
    chunk = s.recv(4096)
    if not chunk:
        break
    answer += chunk
payload = bytes(range(256)) * 4
s.sendall(payload)
echoed = b""
while len(echoed) < len(payload):
    chunk = s.recv(65536)
    if not chunk:
        break
    echoed += chunk
print(json.dumps({"pid": os.getpid(), "answer": answer.decode(errors="replace"),
                  "echoed": echoed == payload, "sent": len(payload)}))
"#;

#[test]
fn a_connect_to_a_host_not_intercepted_goes_to_the_real_proxy_untouched() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let fx = fixture(&e2e, "proxy-tunnel");
    let origin = EchoOrigin::start_fresh(7000);
    let proxy = ConnectProxy::start(0, &[("echo.test:7000", origin.addr())]);

    let out = Client::new([
        python.as_os_str(),
        "-c".as_ref(),
        CONNECT_AND_ECHO.as_ref(),
        proxy.addr().to_string().as_ref(),
        "echo.test:7000".as_ref(),
    ])
    .in_cgroup(&fx.agent)
    .hosts(&HostsFile::new())
    .run();

    out.assert_success();
    let printed = out.json();
    assert!(
        printed["answer"]
            .as_str()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "{out}"
    );
    assert_eq!(printed["echoed"], true, "{out}");
    assert_eq!(proxy.request_lines(), ["CONNECT echo.test:7000 HTTP/1.1"]);
    let received = origin.wait_for_finished(1, Duration::from_secs(10));
    assert_eq!(
        received[0].bytes.len() as u64,
        printed["sent"].as_u64().unwrap()
    );

    let pid = printed["pid"].as_u64().expect("the script prints its pid") as u32;
    let line = fx.daemon.wait_for_tunnel(pid);
    assert_eq!(
        line.str("reason"),
        Some("CONNECT through a proxy to a host not intercepted"),
        "{line}"
    );
    assert_eq!(line.str("server_name"), Some("echo.test"), "{line}");
    assert_eq!(
        line.str("destination"),
        Some(proxy.addr().to_string().as_str()),
        "{line}"
    );
}

/// Asks the proxy (argv[1]) to `CONNECT argv[2]`, then speaks TLS for api.openai.com inside the
/// tunnel (trusting `SSL_CERT_FILE`) and makes one chat request.
const CONNECT_THEN_TLS_FOR_THE_API: &str = r#"
import json, os, socket, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=20)
s.sendall(f"CONNECT {sys.argv[2]} HTTP/1.1\r\nHost: {sys.argv[2]}\r\n\r\n".encode())
answer = b""
while not answer.endswith(b"\r\n\r\n"):
    byte = s.recv(1)
    if not byte:
        break
    answer += byte
tls = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"]).wrap_socket(
    s, server_hostname="api.openai.com")
body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]})
tls.sendall((
    "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
    "Authorization: Bearer sk-test\r\ncontent-type: application/json\r\n"
    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n{body}").encode())
response = b""
while True:
    chunk = tls.recv(65536)
    if not chunk:
        break
    response += chunk
print(json.dumps({"pid": os.getpid(), "answer": answer.decode(errors="replace"),
                  "status_line": response.split(b"\r\n", 1)[0].decode(errors="replace")}))
"#;

/// A CONNECT to a name Warden does not intercept (here an IP literal) passes to the real proxy,
/// but TLS for the API inside its tunnel is intercepted all the same.
#[test]
fn tls_for_the_api_inside_a_connect_to_another_host_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let fx = fixture(&e2e, "proxy-inner-api");
    // What the proxy would reach: anything but the API (an echo cannot complete a handshake).
    let elsewhere = EchoOrigin::start_fresh(443);
    let authority = elsewhere.addr().to_string();
    let proxy = ConnectProxy::start(0, &[(authority.as_str(), elsewhere.addr())]);

    let out = fx
        .client([
            python.as_os_str(),
            "-c".as_ref(),
            CONNECT_THEN_TLS_FOR_THE_API.as_ref(),
            proxy.addr().to_string().as_ref(),
            authority.as_ref(),
        ])
        .run();

    out.assert_success();
    let printed = out.json();
    assert_eq!(printed["status_line"], "HTTP/1.1 200 OK", "{out}");
    assert_eq!(
        proxy.request_lines(),
        [format!("CONNECT {authority} HTTP/1.1")]
    );
    let pid = printed["pid"].as_u64().expect("the script prints its pid") as u32;
    let line = fx.daemon.wait_for_exchange(pid);
    assert_eq!(line.u64("status"), Some(200), "{line}");
    assert_recorded_intercepted(&fx, pid);
    assert!(
        elsewhere.finished().iter().all(|r| r.bytes.is_empty()),
        "no TLS reached the proxy's target"
    );
}
