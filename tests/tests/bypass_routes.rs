//! Direct routes around Warden (issue 14, point 2), under `intercept_ports = "all"`: every TCP
//! connect of a selected cgroup comes to Warden, which goes by what the connection says, not by
//! its port. (Through an HTTP proxy: bypass_proxy.rs.)

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::connections;
use warden_tests::curl::{self, assert_chat_reply};
use warden_tests::net::fresh_loopback;
use warden_tests::probe::{self, TcpReport, Then, UdpReport};
use warden_tests::tls_hello::client_hello;
use warden_tests::{
    require_kernel, require_python, AgentFixture, Client, Daemon, E2e, EchoOrigin, HostsFile,
};

fn fixture(e2e: &E2e, name: &str) -> AgentFixture {
    AgentFixture::start_with(e2e, name, |daemon, _| daemon.intercept_all_ports())
}

/// Runs the probe in the agent cgroup: connect to `target`, send `payload`, then `then`.
fn probe(
    fx: &AgentFixture,
    hosts: &HostsFile,
    target: &str,
    payload: &[u8],
    then: Then,
) -> TcpReport {
    probe::report(
        &Client::new(probe::tcp(target, payload, then, 15_000))
            .in_cgroup(&fx.agent)
            .hosts(hosts)
            .run(),
    )
}

fn assert_rejected(daemon: &Daemon, pid: u32, reason: &str) -> Value {
    let record = connections::wait_for_record_of(daemon, pid);
    assert_eq!(record["disposition"], "rejected", "{record:#}");
    assert_eq!(record["reason"], reason, "{record:#}");
    record
}

#[test]
fn the_api_on_a_non_standard_port_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "port-8443");

    let out = fx.client(curl::chat_at("api.openai.com:8443")).run();

    assert_chat_reply(&out, fx.upstream.reply());
    let line = fx.daemon.wait_for_exchange(out.pid());
    assert_eq!(line.str("host"), Some("api.openai.com"), "{line}");
    let record = connections::wait_for_record_of(&fx.daemon, out.pid());
    assert_eq!(record["disposition"], "intercepted", "{record:#}");
    let address = fx.hosts.resolve("api.openai.com").expect("mapped");
    assert_eq!(
        record["original_dst"],
        format!("{address}:8443"),
        "{record:#}"
    );
}

#[test]
fn the_api_over_ipv6_on_a_non_standard_port_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "ipv6-8443");
    let over_ipv6 = HostsFile::new().with("api.openai.com", Ipv6Addr::LOCALHOST);

    let out = Client::new(curl::chat_at("api.openai.com:8443"))
        .in_cgroup(&fx.agent)
        .hosts(&over_ipv6)
        .trust(&fx.daemon.trust_bundle())
        .run();

    assert_chat_reply(&out, fx.upstream.reply());
    let record = connections::wait_for_record_of(&fx.daemon, out.pid());
    assert_eq!(record["disposition"], "intercepted", "{record:#}");
    assert_eq!(record["original_dst"], "[::1]:8443", "{record:#}");
}

/// Domain fronting: TLS naming a host that is not intercepted, sent to an address the API was
/// reached at. Warden learned that address from the intercepted call and refuses the tunnel.
#[test]
fn a_front_at_an_address_the_api_was_reached_at_is_not_tunneled() {
    let Some(e2e) = require_kernel() else { return };
    // The workload resolves api.openai.com and the front to one address of their own (a CDN
    // edge), where a "CDN" echo origin listens; Warden's own upstream is the fake upstream.
    let edge = EchoOrigin::start_fresh(443);
    let hosts = HostsFile::new()
        .with("api.openai.com", edge.ip())
        .with("front.test", edge.ip());
    let fx = fixture(&e2e, "fronting");

    let out = Client::new(curl::chat())
        .in_cgroup(&fx.agent)
        .hosts(&hosts)
        .trust(&fx.daemon.trust_bundle())
        .run();
    assert_chat_reply(&out, fx.upstream.reply());

    let report = probe(
        &fx,
        &hosts,
        "front.test:443",
        &client_hello("front.test"),
        Then::ReadToEnd,
    );

    let reason = format!(
        "destination {} is an address of intercepted host api.openai.com: not tunneled (domain fronting)",
        edge.ip()
    );
    let record = assert_rejected(&fx.daemon, report.pid, &reason);
    assert_eq!(record["server_name"], "front.test", "{record:#}");
    assert!(edge.finished().is_empty(), "nothing reached the edge");
}

#[test]
fn tls_to_an_ip_literal_is_refused_on_any_port() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "ip-literal");
    let ip = fresh_loopback();
    let origins = [EchoOrigin::start(ip, 443), EchoOrigin::start(ip, 8443)];

    for origin in &origins {
        // curl sends no server name for an IP literal.
        let url = format!("https://{}/v1/chat/completions", origin.addr());
        let out = fx.client(["curl", "-sS", "--max-time", "20", &url]).run();
        assert!(!out.status.success(), "{out}");
        assert_rejected(&fx.daemon, out.pid(), "TLS ClientHello has no server name");
        assert!(
            origin.finished().is_empty(),
            "nothing reached {}",
            origin.addr()
        );
    }
}

#[test]
fn bytes_that_are_neither_tls_nor_http_are_tunneled_except_on_tls_ports() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "other-bytes");
    let ip = fresh_loopback();
    let other = EchoOrigin::start(ip, 7000);
    let tls_only = EchoOrigin::start(ip, 443);
    let payload: Vec<u8> = (0..4096u32).map(|i| (i * 13 % 256) as u8).collect();
    let hosts = HostsFile::new();

    let report = probe(
        &fx,
        &hosts,
        &other.addr().to_string(),
        &payload,
        Then::ReadEcho,
    );
    assert_eq!(report.end, "echo-complete", "{report:?}");
    assert!(report.received() == payload, "the echo differs");
    let line = fx.daemon.wait_for_tunnel(report.pid);
    assert_eq!(line.str("reason"), Some("neither TLS nor HTTP"), "{line}");

    let report = probe(
        &fx,
        &hosts,
        &tls_only.addr().to_string(),
        &payload,
        Then::ReadToEnd,
    );
    assert_rejected(
        &fx.daemon,
        report.pid,
        "not a TLS ClientHello (refused on an intercepted port)",
    );
    assert!(
        tls_only.finished().is_empty(),
        "nothing reached the TLS port"
    );
}

/// Waits for the greeting, answers a line, prints what it got.
const GREETED_CLIENT: &str = r#"
import json, os, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=20)
f = s.makefile("rwb")
greeting = f.readline()
f.write(b"SSH-2.0-warden-test-client\r\n"); f.flush()
answer = f.readline()
print(json.dumps({"pid": os.getpid(), "greeting": greeting.decode(), "answer": answer.decode()}))
"#;

#[test]
fn a_server_that_speaks_first_is_relayed() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let fx = fixture(&e2e, "speaks-first");
    // An SSH-like server: it greets, then answers the client's line.
    let listener = TcpListener::bind((fresh_loopback(), 2222)).expect("binding the greeter");
    let addr = listener.local_addr().expect("the greeter's address");
    let greeter = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accepting");
        let mut writer = stream.try_clone().expect("cloning the stream");
        writer
            .write_all(b"SSH-2.0-warden-test-server\r\n")
            .expect("greeting");
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .expect("reading the client's line");
        writer
            .write_all(format!("got {line}").as_bytes())
            .expect("answering");
    });

    let out = Client::new([
        python.as_os_str(),
        "-c".as_ref(),
        GREETED_CLIENT.as_ref(),
        addr.to_string().as_ref(),
    ])
    .in_cgroup(&fx.agent)
    .hosts(&HostsFile::new())
    .run();

    out.assert_success();
    let printed = out.json();
    assert_eq!(
        printed["greeting"], "SSH-2.0-warden-test-server\r\n",
        "{out}"
    );
    assert_eq!(
        printed["answer"], "got SSH-2.0-warden-test-client\r\n",
        "{out}"
    );
    greeter.join().expect("the greeter ran to the end");
    let pid = printed["pid"].as_u64().expect("the script prints its pid") as u32;
    let line = fx.daemon.wait_for_tunnel(pid);
    assert_eq!(line.str("reason"), Some("the server spoke first"), "{line}");
    assert_eq!(
        line.str("destination"),
        Some(addr.to_string().as_str()),
        "{line}"
    );
}

#[test]
fn a_connect_to_wardens_own_listener_does_not_loop() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "own-listener");
    let own = SocketAddr::from((IpAddr::from([127, 0, 0, 1]), fx.daemon.listen_port()));

    let report = probe(
        &fx,
        &HostsFile::new(),
        &own.to_string(),
        &client_hello("api.openai.com"),
        Then::ReadToEnd,
    );

    assert!(report.connected, "{report:?}");
    assert_rejected(
        &fx.daemon,
        report.pid,
        "destination is Warden's own listener",
    );
    assert!(
        fx.daemon.logs().closed_connections().len() == 1,
        "one connection, no loop"
    );
}

fn udp(fx: &AgentFixture, to: &str) -> UdpReport {
    probe::report(&Client::new(probe::udp(to)).in_cgroup(&fx.agent).run())
}

#[test]
fn udp_is_refused_to_tls_ports_only_under_all() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "udp-all");

    for to in ["127.0.0.1:443", "[::1]:443", "[::ffff:127.0.0.1]:443"] {
        let refused = udp(&fx, to);
        assert_eq!(
            refused.sendto_errno,
            libc::EPERM,
            "sendto {to}: {refused:?}"
        );
    }
    // DNS and everything else over UDP is untouched.
    for to in ["127.0.0.1:53", "127.0.0.1:8443"] {
        let allowed = udp(&fx, to);
        assert_eq!(
            (
                allowed.sendto_errno,
                allowed.connect_errno,
                allowed.send_errno
            ),
            (0, 0, 0),
            "{to}: {allowed:?}"
        );
    }
}

#[test]
fn an_ipv4_mapped_connect_to_any_port_is_redirected() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "mapped-all");
    let origin = EchoOrigin::start_fresh(7001);
    let mapped = format!("[::ffff:{}]:7001", origin.ip());
    let mut payload = client_hello("mapped.test");
    payload.extend_from_slice(b"over a mapped address\n");

    let report = probe(&fx, &HostsFile::new(), &mapped, &payload, Then::ReadEcho);

    assert_eq!(report.received(), payload, "{report:?}");
    let line = fx.daemon.wait_for_tunnel(report.pid);
    assert_eq!(line.str("server_name"), Some("mapped.test"), "{line}");
    let received = origin.wait_for_finished(1, Duration::from_secs(10));
    assert!(
        received[0].bytes == payload,
        "the origin got different bytes"
    );
}

/// A local relay outside the selection (issue 14, point 2): the agent aims its TLS for the API at a
/// loopback port where a relay listens, hoping the relay's own connection goes direct. Under "all"
/// the agent's connect to the relay is redirected, and its ClientHello names the API: intercepted,
/// and the relay never receives a byte.
#[test]
fn tls_for_the_api_aimed_at_a_local_relay_is_intercepted_before_the_relay() {
    let Some(e2e) = require_kernel() else { return };
    let fx = fixture(&e2e, "relay");
    let relay = EchoOrigin::start_fresh(9443);
    let mut argv = curl::chat();
    let connect_to = format!("api.openai.com:443:{}:{}", relay.ip(), relay.addr().port());
    argv.splice(1..1, ["--connect-to".to_owned(), connect_to]);

    let out = fx.client(argv).run();

    assert_chat_reply(&out, fx.upstream.reply());
    let record = connections::wait_for_record_of(&fx.daemon, out.pid());
    assert_eq!(record["disposition"], "intercepted", "{record:#}");
    assert_eq!(
        record["original_dst"],
        relay.addr().to_string(),
        "{record:#}"
    );
    assert!(
        relay.finished().is_empty(),
        "the relay received a connection: {:?}",
        relay.finished()
    );
}
