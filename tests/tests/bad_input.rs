//! Bad input never takes Warden down: each broken connection ends with a reason in the log, and a
//! normal request right afterwards still succeeds. Upstream failures reach the agent as an
//! OpenAI-shaped 502.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use warden_tests::curl::{self, assert_chat_reply, http_code};
use warden_tests::daemon::UpstreamOverride;
use warden_tests::probe::{self, TcpReport, Then};
use warden_tests::tls_hello::{client_hello, client_hello_without_sni, tls_like_garbage};
use warden_tests::{
    net, require_kernel, wait, Behavior, CgroupGuard, Client, ClientOutput, Daemon, E2e,
    FakeUpstream, HostsFile,
};

/// A daemon selecting `agent`, intercepting api.openai.com and healthy.test. healthy.test always
/// goes to the healthy upstream; api.openai.com does too unless a test overrides it.
struct Fixture {
    daemon: Daemon,
    agent: CgroupGuard,
    hosts: HostsFile,
    healthy: FakeUpstream,
}

impl Fixture {
    fn start(e2e: &E2e, name: &str, api_openai_com: Option<UpstreamOverride>) -> Self {
        let healthy = FakeUpstream::builder().name("healthy.test").start();
        let hosts = HostsFile::new()
            .with("api.openai.com", healthy.ip())
            .with("healthy.test", healthy.ip());
        let agent = CgroupGuard::new(name);
        let api = api_openai_com.unwrap_or_else(|| {
            UpstreamOverride::new(
                "api.openai.com",
                healthy.addr(),
                Some(healthy.ca_pem_path()),
            )
        });
        let daemon = Daemon::builder(e2e)
            .select(&agent)
            .intercept_host("healthy.test")
            .upstream_override(api)
            .upstream_override(UpstreamOverride::new(
                "healthy.test",
                healthy.addr(),
                Some(healthy.ca_pem_path()),
            ))
            .start();
        Self {
            daemon,
            agent,
            hosts,
            healthy,
        }
    }

    fn probe(&self, target: &str, payload: &[u8], then: Then) -> TcpReport {
        let report: TcpReport = probe::report(
            &Client::new(probe::tcp(target, payload, then, 15_000))
                .in_cgroup(&self.agent)
                .hosts(&self.hosts)
                .run(),
        );
        assert!(report.connected, "{report:?}");
        report
    }

    fn curl(&self, host: &str) -> ClientOutput {
        Client::new(curl::chat_at(host))
            .in_cgroup(&self.agent)
            .hosts(&self.hosts)
            .trust(&self.daemon.trust_bundle())
            .run()
    }

    /// Warden logged a "connection closed" warning for `pid`, with a reason that `expected` accepts.
    fn assert_closed(&self, pid: u32, expected: impl FnOnce(&str) -> bool) {
        let line = self.daemon.wait_for_log(
            &format!("a closed connection from pid {pid}"),
            Duration::from_secs(15),
            |l| l.is("connection closed") && l.pid() == Some(pid),
        );
        assert_eq!(line.level(), "WARN", "{line}");
        assert!(line.str("reason").is_some_and(expected), "{line}");
    }

    /// Proof that the daemon still serves: a normal intercepted request succeeds.
    fn assert_still_serving(&mut self) {
        assert!(
            self.daemon.is_running(),
            "the daemon exited:\n{}",
            self.daemon.log_text()
        );
        let out = self.curl("healthy.test");
        assert_chat_reply(&out, self.healthy.reply());
        let line = self.daemon.wait_for_exchange(out.pid());
        assert_eq!(line.u64("status"), Some(200), "{line}");
    }

    /// The agent got `{"error":{"message","type","param","code"}}` with status 502, and Warden
    /// logged the exchange as a 502.
    fn assert_openai_shaped_502(&self, out: &ClientOutput) -> Value {
        assert_eq!(http_code(out), 502, "{out}");
        let body = out.json();
        let error = &body["error"];
        for key in ["message", "type", "param", "code"] {
            assert!(error.get(key).is_some(), "error.{key} missing in {body}");
        }
        assert_eq!(error["type"], "upstream_error", "{body}");
        assert!(error["param"].is_null(), "{body}");
        let line = self.daemon.wait_for_exchange(out.pid());
        assert_eq!(line.u64("status"), Some(502), "{line}");
        body
    }
}

/// Warden, not a timeout on our side, ended the connection.
fn assert_closed_by_warden(report: &TcpReport) {
    assert!(report.end == "eof" || report.end == "reset", "{report:?}");
}

#[test]
fn a_client_that_closes_in_the_middle_of_its_client_hello() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = Fixture::start(&e2e, "half-hello", None);

    let hello = client_hello("api.openai.com");
    let report = fx.probe("api.openai.com:443", &hello[..hello.len() / 2], Then::Close);

    fx.assert_closed(report.pid, |reason| {
        reason.starts_with("client closed during TLS handshake")
    });
    fx.assert_still_serving();
}

#[test]
fn a_client_that_closes_in_the_middle_of_the_tls_handshake() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = Fixture::start(&e2e, "mid-handshake", None);

    // A whole ClientHello for an intercepted host, then gone before the handshake completes.
    let report = fx.probe(
        "api.openai.com:443",
        &client_hello("api.openai.com"),
        Then::Close,
    );

    fx.assert_closed(report.pid, |reason| !reason.is_empty());
    fx.assert_still_serving();
}

#[test]
fn a_client_hello_without_a_server_name() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = Fixture::start(&e2e, "no-sni", None);

    let report = fx.probe(
        "api.openai.com:443",
        &client_hello_without_sni(),
        Then::ReadToEnd,
    );

    assert_closed_by_warden(&report);
    fx.assert_closed(report.pid, |reason| {
        reason == "TLS ClientHello has no server name"
    });
    fx.assert_still_serving();
}

#[test]
fn garbage_that_starts_like_tls() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = Fixture::start(&e2e, "garbage", None);

    let report = fx.probe("api.openai.com:443", &tls_like_garbage(), Then::ReadToEnd);

    assert_closed_by_warden(&report);
    fx.assert_closed(report.pid, |reason| {
        reason.starts_with("malformed TLS ClientHello: ")
    });
    fx.assert_still_serving();
}

#[test]
fn a_direct_connection_to_the_listener_has_no_origin() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = Fixture::start(&e2e, "direct", None);
    let port = fx.daemon.listen_port();

    // From the test process, which is in no selected cgroup, to both listeners.
    for listener in [
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    ] {
        let mut stream = TcpStream::connect_timeout(&listener, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("Warden listens on {listener}: {e}"));
        let _ = stream.write_all(&client_hello("api.openai.com"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set_read_timeout");
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => {
                panic!("Warden should close a connection without origin at once ({listener}): {e}")
            }
        }
        assert!(
            rest.is_empty(),
            "Warden answered a connection without origin"
        );
    }

    let without_origin = || {
        fx.daemon
            .logs()
            .closed_connections()
            .iter()
            .filter(|l| l.str("reason") == Some("no origin recorded for this connection"))
            .count()
    };
    wait::within(Duration::from_secs(10), || {
        (without_origin() >= 2).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "two connections without origin logged:\n{}",
            fx.daemon.log_text()
        )
    });
    fx.assert_still_serving();
}

#[test]
fn an_upstream_that_refuses_gives_an_openai_shaped_502() {
    let Some(e2e) = require_kernel() else { return };
    let refusing = net::refusing_address();
    let mut fx = Fixture::start(
        &e2e,
        "refused",
        Some(UpstreamOverride::new("api.openai.com", refusing, None)),
    );

    let out = fx.curl("api.openai.com");

    let body = fx.assert_openai_shaped_502(&out);
    assert_eq!(body["error"]["code"], "upstream_unreachable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Warden could not reach the upstream api.openai.com: ")),
        "{body}"
    );
    fx.assert_still_serving();
}

#[test]
fn an_upstream_that_resets_the_connection_gives_an_openai_shaped_502() {
    let Some(e2e) = require_kernel() else { return };
    let resetting = FakeUpstream::builder()
        .behavior(Behavior::ResetAfterHandshake)
        .start();
    let mut fx = Fixture::start(
        &e2e,
        "reset",
        Some(UpstreamOverride::new(
            "api.openai.com",
            resetting.addr(),
            Some(resetting.ca_pem_path()),
        )),
    );

    let out = fx.curl("api.openai.com");

    fx.assert_openai_shaped_502(&out);
    assert!(
        resetting.connections() >= 1,
        "Warden reached the resetting upstream"
    );
    fx.assert_still_serving();
}
