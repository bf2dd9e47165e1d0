//! Bad input never takes Warden down: each broken connection is recorded in the audit store as
//! rejected with its reason, and a normal request right afterwards still succeeds. Upstream
//! failures (refused, reset, a certificate Warden does not trust) reach the agent as an
//! OpenAI-shaped 502 naming the cause, recorded as `upstream_error` with that cause.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::{self, connections};
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

    /// The audit store holds the connection of `pid` as rejected, with exactly `reason`.
    fn assert_rejected(&self, pid: u32, reason: &str) {
        let record = connections::wait_for_record_of(&self.daemon, pid);
        assert_eq!(record["disposition"], "rejected", "{record:#}");
        assert_eq!(record["reason"], reason, "{record:#}");
    }

    /// The one exchange in the audit store, whole (`sessions show --json`), once it has ended.
    fn stored_exchange(&self) -> Value {
        let exchanges = audit::wait_for_finished(&self.daemon, 1);
        let id = exchanges[0]["id"].as_str().expect("an exchange id");
        audit::show(&self.daemon, id)
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

    /// The exchange behind a 502 is stored as an `upstream_error` whose reason is the cause the
    /// agent was told (the message after "Warden could not reach the upstream HOST: ").
    /// Returns the reason.
    fn assert_stored_upstream_error(&self, body: &Value) -> String {
        let message = body["error"]["message"].as_str().unwrap_or_default();
        let cause = message
            .strip_prefix("Warden could not reach the upstream api.openai.com: ")
            .unwrap_or_else(|| panic!("the 502 names the upstream and the cause: {body}"));
        let detail = self.stored_exchange();
        assert_eq!(detail["outcome"], "upstream_error", "{detail:#}");
        assert_eq!(detail["response"]["status"], 502, "{detail:#}");
        assert_eq!(detail["response"]["reason"], cause, "{detail:#}");
        cause.to_owned()
    }
}

/// What rustls reports when the client leaves after a whole ClientHello.
const MID_HANDSHAKE_REASON: &str = "TLS handshake with client failed: tls handshake eof";
/// What the ClientHello parser says about [`tls_like_garbage`].
const GARBAGE_REASON: &str = "malformed TLS ClientHello: truncated version or random";
/// The cause rustls gives for a server certificate no trusted root issued.
const UNTRUSTED_CERTIFICATE_REASON: &str = "invalid peer certificate: UnknownIssuer";

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

    fx.assert_rejected(
        report.pid,
        "client closed during TLS handshake (incomplete ClientHello)",
    );
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

    fx.assert_rejected(report.pid, MID_HANDSHAKE_REASON);
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
    fx.assert_rejected(report.pid, "TLS ClientHello has no server name");
    fx.assert_still_serving();
}

/// First bytes that are not a TLS handshake record, each of which a tunnel would carry past Warden.
const NOT_A_CLIENT_HELLO: [(&str, &[u8]); 4] = [
    ("plaintext", b"hello\nthis is not TLS\n\x00\xff"),
    // An SSLv2-compatible CLIENT-HELLO: a two-byte length with the high bit set, then type 1.
    (
        "an SSLv2-style hello",
        &[
            0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
        ],
    ),
    (
        "an alert before the hello",
        &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28],
    ),
    (
        "a ChangeCipherSpec before the hello",
        &[0x14, 0x03, 0x03, 0x00, 0x01, 0x01],
    ),
];
const NOT_A_CLIENT_HELLO_REASON: &str = "not a TLS ClientHello (refused on an intercepted port)";

#[test]
fn bytes_that_are_not_a_client_hello_are_refused_not_tunneled() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = Fixture::start(&e2e, "not-a-hello", None);

    for (what, payload) in NOT_A_CLIENT_HELLO {
        let report = fx.probe("api.openai.com:443", payload, Then::ReadToEnd);
        assert!(report.received().is_empty(), "{what}: {report:?}");
        assert_closed_by_warden(&report);
        fx.assert_rejected(report.pid, NOT_A_CLIENT_HELLO_REASON);
    }
    fx.assert_still_serving();
}

#[test]
fn garbage_that_starts_like_tls() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = Fixture::start(&e2e, "garbage", None);

    let report = fx.probe("api.openai.com:443", &tls_like_garbage(), Then::ReadToEnd);

    assert_closed_by_warden(&report);
    fx.assert_rejected(report.pid, GARBAGE_REASON);
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
    let cause = fx.assert_stored_upstream_error(&body);
    assert_eq!(cause, "Connection refused (os error 111)", "{body}");
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

    let body = fx.assert_openai_shaped_502(&out);
    let cause = fx.assert_stored_upstream_error(&body);
    assert!(!cause.is_empty(), "{body}");
    assert!(
        resetting.connections() >= 1,
        "Warden reached the resetting upstream"
    );
    fx.assert_still_serving();
}

#[test]
fn an_upstream_whose_certificate_is_not_trusted_gives_a_502_naming_the_cause() {
    let Some(e2e) = require_kernel() else { return };
    let untrusted = FakeUpstream::builder().name("api.openai.com").start();
    // The same kind of upstream as healthy.test, but without its CA in the override: Warden
    // must not trust a certificate that no root it knows has issued.
    let mut fx = Fixture::start(
        &e2e,
        "untrusted",
        Some(UpstreamOverride::new(
            "api.openai.com",
            untrusted.addr(),
            None,
        )),
    );

    let out = fx.curl("api.openai.com");

    let body = fx.assert_openai_shaped_502(&out);
    assert_eq!(body["error"]["code"], "upstream_unreachable", "{body}");
    let cause = fx.assert_stored_upstream_error(&body);
    assert_eq!(cause, UNTRUSTED_CERTIFICATE_REASON, "{body}");
    assert!(
        untrusted.requests().is_empty(),
        "no request reaches an upstream whose certificate was refused"
    );
    fx.assert_still_serving();
}
