//! IPv6 and UDP: connect6 redirects IPv6 and IPv4-mapped connects; UDP to an intercepted port from
//! a selected cgroup is refused (EPERM) so HTTP/3 clients fall back to TCP; other UDP is untouched.

use std::net::{Ipv6Addr, TcpStream};

use warden_tests::attribution::exchange_from;
use warden_tests::curl::{self, assert_chat_reply};
use warden_tests::net::fresh_loopback;
use warden_tests::probe::{self, TcpReport, Then, UdpReport};
use warden_tests::tls_hello::client_hello;
use warden_tests::{
    require_kernel, AgentFixture, CgroupGuard, Client, Daemon, EchoOrigin, HostsFile,
};

#[test]
fn curl_to_an_ipv6_address_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start(&e2e, "ipv6");
    let over_ipv6 = HostsFile::new().with("api.openai.com", Ipv6Addr::LOCALHOST);

    let out = Client::new(curl::chat())
        .in_cgroup(&fx.agent)
        .hosts(&over_ipv6)
        .trust(&fx.daemon.trust_bundle())
        .run();

    assert_chat_reply(&out, fx.upstream.reply());
    let line = exchange_from(&fx.daemon, &out, fx.agent.path());
    assert_eq!(line.u64("status"), Some(200), "{line}");
}

#[test]
fn an_ipv4_mapped_ipv6_connect_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let origin = EchoOrigin::start_fresh(443);
    let agent = CgroupGuard::new("mapped");
    let daemon = Daemon::builder(&e2e).select(&agent).start();

    let mapped = format!("[::ffff:{}]:443", origin.ip());
    // TLS for a name Warden does not intercept: tunneled to the mapped address's origin.
    let mut payload = client_hello("mapped.test");
    payload.extend_from_slice(b"hello over a mapped address\n");
    let report: TcpReport = probe::report(
        &Client::new(probe::tcp(&mapped, &payload, Then::ReadEcho, 10_000))
            .in_cgroup(&agent)
            .run(),
    );
    assert_eq!(report.received(), payload, "{report:?}");

    let line = daemon.wait_for_tunnel(report.pid);
    assert!(
        line.str("destination")
            .is_some_and(|d| d.contains(&origin.ip().to_string()) && d.ends_with(":443")),
        "{line}"
    );
    assert_eq!(
        line.u64("bytes_from_client"),
        Some(payload.len() as u64),
        "{line}"
    );
}

fn udp_from(cgroup: Option<&CgroupGuard>, to: &str) -> UdpReport {
    let mut client = Client::new(probe::udp(to));
    if let Some(cgroup) = cgroup {
        client = client.in_cgroup(cgroup);
    }
    probe::report(&client.run())
}

#[test]
fn udp_to_an_intercepted_port_is_refused_from_a_selected_cgroup_only() {
    let Some(e2e) = require_kernel() else { return };
    let agent = CgroupGuard::new("udp");
    let bystander = CgroupGuard::new("udp-bystander");
    let _daemon = Daemon::builder(&e2e).select(&agent).start();

    for to in ["127.0.0.1:443", "[::1]:443"] {
        let refused = udp_from(Some(&agent), to);
        assert_eq!(
            refused.sendto_errno,
            libc::EPERM,
            "sendto {to}: {refused:?}"
        );
        assert!(
            refused.connect_errno == libc::EPERM || refused.send_errno == libc::EPERM,
            "a connected UDP socket to {to} must not get through either: {refused:?}"
        );

        let allowed = udp_from(Some(&bystander), to);
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

    // Other ports are untouched, even from the selected cgroup.
    let other_port = udp_from(Some(&agent), "127.0.0.1:8443");
    assert_eq!(
        (
            other_port.sendto_errno,
            other_port.connect_errno,
            other_port.send_errno
        ),
        (0, 0, 0)
    );

    // TCP to the same port still works: it is redirected to Warden, although nothing listens there.
    let nowhere = format!("{}:443", fresh_loopback());
    assert!(
        TcpStream::connect(&nowhere).is_err(),
        "nothing listens on {nowhere}"
    );
    let report: TcpReport = probe::report(
        &Client::new(probe::connect(&nowhere))
            .in_cgroup(&agent)
            .run(),
    );
    assert!(report.connected, "{report:?}");
}
