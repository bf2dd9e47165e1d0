//! Connections Warden does not decrypt are tunneled byte for byte to their original destination:
//! TLS for a server name that is not intercepted. (Bytes that are not TLS at all are refused:
//! bad_input.rs.)

use std::path::PathBuf;
use std::time::Duration;

use warden_tests::attribution::{assert_attributed, assert_number};
use warden_tests::probe::{self, TcpReport, Then};
use warden_tests::tls_hello::client_hello;
use warden_tests::{require_kernel, CgroupGuard, Client, Daemon, EchoOrigin, HostsFile, LogLine};

/// Runs the probe in `agent`: send `payload` to `target`, read the echo back.
fn echo_through(agent: &CgroupGuard, hosts: &HostsFile, target: &str, payload: &[u8]) -> TcpReport {
    probe::report(
        &Client::new(probe::tcp(target, payload, Then::ReadEcho, 15_000))
            .in_cgroup(agent)
            .hosts(hosts)
            .run(),
    )
}

fn probe_exe() -> PathBuf {
    probe::probe_bin()
        .canonicalize()
        .expect("the probe binary exists")
}

/// Warden's tunnel line for the probe's connection from `agent` to `origin`: attributed to the
/// probe, naming the origin, counting all of `payload` each way, timed.
fn assert_tunneled(
    daemon: &Daemon,
    report: &TcpReport,
    agent: &CgroupGuard,
    origin: &EchoOrigin,
    payload: &[u8],
) -> LogLine {
    let line = daemon.wait_for_tunnel(report.pid);
    assert_attributed(&line, report.pid, &probe_exe(), agent.path());
    assert_eq!(
        line.str("destination"),
        Some(origin.addr().to_string().as_str()),
        "{line}"
    );
    for direction in ["bytes_from_client", "bytes_to_client"] {
        assert_eq!(line.u64(direction), Some(payload.len() as u64), "{line}");
    }
    assert_number(&line, "duration_ms");
    line
}

/// A stand-in for what follows a ClientHello: every byte value, many times.
fn arbitrary_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

#[test]
fn tls_for_a_server_name_that_is_not_intercepted_is_tunneled_byte_for_byte() {
    let Some(e2e) = require_kernel() else { return };
    let origin = EchoOrigin::start_fresh(443);
    let hosts = HostsFile::new().with("tunnel.test", origin.ip());
    let agent = CgroupGuard::new("tunnel");
    let daemon = Daemon::builder(&e2e).select(&agent).start();

    let mut payload = client_hello("tunnel.test");
    payload.extend(arbitrary_bytes(16 * 1024));
    let report = echo_through(&agent, &hosts, "tunnel.test:443", &payload);

    // Both directions are byte-identical.
    assert_eq!(report.end, "echo-complete", "{report:?}");
    assert!(
        report.received() == payload,
        "the client got back different bytes"
    );
    let received = origin.wait_for_finished(1, Duration::from_secs(10));
    assert!(
        received[0].bytes == payload,
        "the origin got different bytes"
    );
    // ...and they went through Warden: the origin's peer is not the client's socket.
    assert_ne!(Some(received[0].peer.to_string()), report.local);

    let line = assert_tunneled(&daemon, &report, &agent, &origin, &payload);
    assert_eq!(line.str("server_name"), Some("tunnel.test"), "{line}");
    assert_eq!(
        line.str("reason"),
        Some("server name not intercepted"),
        "{line}"
    );
    assert!(
        daemon.logs().exchanges().is_empty(),
        "nothing was decrypted"
    );
}
