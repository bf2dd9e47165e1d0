//! IPv6 and UDP: connect6 redirects IPv6 and IPv4-mapped connects; UDP to an intercepted port from
//! a selected cgroup is refused (EPERM) so HTTP/3 clients fall back to TCP; other UDP is untouched.

use std::net::{Ipv6Addr, TcpStream};
use std::time::Duration;

use warden_tests::curl::{self, http_code};
use warden_tests::net::fresh_loopback;
use warden_tests::probe::{self, TcpReport, Then, UdpReport};
use warden_tests::{
    require_kernel, CgroupGuard, Client, Daemon, EchoOrigin, FakeUpstream, HostsFile,
};

#[test]
fn curl_to_an_ipv6_address_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", Ipv6Addr::LOCALHOST);
    let agent = CgroupGuard::new("ipv6");
    let daemon = Daemon::builder(&e2e)
        .select(&agent)
        .upstream(&upstream)
        .start();

    let out = Client::new(curl::chat())
        .in_cgroup(&agent)
        .hosts(&hosts)
        .trust(&daemon.trust_bundle())
        .run();

    out.assert_success();
    assert_eq!(http_code(&out), 200, "{out}");
    assert_eq!(
        out.json()["choices"][0]["message"]["content"],
        upstream.reply()
    );
    let line = daemon.wait_for_exchange(out.pid());
    assert_eq!(line.str("cgroup"), Some(agent.path()), "{line}");
    assert_eq!(line.u64("status"), Some(200), "{line}");
}

#[test]
fn an_ipv4_mapped_ipv6_connect_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let origin = EchoOrigin::start_fresh(443);
    let agent = CgroupGuard::new("mapped");
    let daemon = Daemon::builder(&e2e).select(&agent).start();

    let mapped = format!("[::ffff:{}]:443", origin.ip());
    let payload = b"hello over a mapped address\n".to_vec();
    let out = Client::new(probe::tcp(&mapped, &payload, Then::ReadEcho, 10_000))
        .in_cgroup(&agent)
        .run();
    out.assert_success();
    let report: TcpReport = serde_json::from_value(out.json()).expect("probe report");
    assert_eq!(report.received(), payload, "{report:?}");

    let line = daemon.wait_for_log(
        "a tunnel line for the mapped connect",
        Duration::from_secs(10),
        |l| l.is("tunnel") && l.pid() == Some(report.pid),
    );
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
    let out = client.run();
    out.assert_success();
    serde_json::from_value(out.json()).unwrap_or_else(|e| panic!("udp report ({e})\n{out}"))
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
    let tcp = Client::new(probe::connect(&nowhere))
        .in_cgroup(&agent)
        .run();
    tcp.assert_success();
    let report: TcpReport = serde_json::from_value(tcp.json()).expect("probe report");
    assert!(report.connected, "{report:?}");
}
