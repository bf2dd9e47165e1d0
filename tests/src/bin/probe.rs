//! warden-test-probe: a tiny socket client that e2e tests run inside selected cgroups.
//!
//! `warden-test-probe tcp HOST:PORT HEX close|echo|eof TIMEOUT_MS` and `warden-test-probe udp ADDR`;
//! prints one JSON report on stdout.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use warden_tests::hex;
use warden_tests::probe::{TcpReport, Then, UdpReport};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let report = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["tcp", target, payload, then, timeout_ms] => {
            let payload = hex::decode(payload).context("payload is not hex")?;
            let then = Then::from_arg(then).context("then must be close, echo or eof")?;
            let timeout = Duration::from_millis(timeout_ms.parse().context("timeout_ms")?);
            serde_json::to_string(&tcp(target, &payload, then, timeout)?)?
        }
        ["udp", target] => serde_json::to_string(&udp(target)?)?,
        _ => {
            bail!("usage: warden-test-probe tcp HOST:PORT HEX close|echo|eof TIMEOUT_MS | udp ADDR")
        }
    };
    println!("{report}");
    Ok(())
}

fn resolve(target: &str) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .with_context(|| format!("resolving {target}"))?
        .collect();
    if addrs
        .iter()
        .any(|a| !a.ip().is_loopback() && !is_mapped_loopback(a))
    {
        bail!("{target} resolves to {addrs:?}: the probe only talks to loopback");
    }
    Ok(addrs)
}

fn is_mapped_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        SocketAddr::V4(_) => false,
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn tcp(target: &str, payload: &[u8], then: Then, timeout: Duration) -> Result<TcpReport> {
    let mut report = TcpReport {
        pid: std::process::id(),
        connected: false,
        connect_errno: None,
        local: None,
        sent: 0,
        received_hex: String::new(),
        end: String::new(),
    };
    let mut last_error = None;
    let mut stream = None;
    for addr in resolve(target)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        report.connect_errno = last_error.as_ref().map(errno);
        report.end = format!("error: connect: {last_error:?}");
        return Ok(report);
    };
    report.connected = true;
    report.local = stream.local_addr().ok().map(|a| a.to_string());
    if let Err(e) = stream.write_all(payload) {
        report.end = format!("error: write: {e}");
        return Ok(report);
    }
    report.sent = payload.len();

    let mut received = Vec::new();
    report.end = match then {
        Then::Close => "closed".to_owned(),
        Then::ReadEcho | Then::ReadToEnd => {
            let deadline = Instant::now() + timeout;
            let mut buf = [0u8; 16 * 1024];
            loop {
                if then == Then::ReadEcho && received.len() >= payload.len() {
                    break "echo-complete".to_owned();
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break "timeout".to_owned();
                }
                stream.set_read_timeout(Some(left))?;
                match stream.read(&mut buf) {
                    Ok(0) => break "eof".to_owned(),
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        break "timeout".to_owned()
                    }
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset".to_owned(),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => break format!("error: read: {e}"),
                }
            }
        }
    };
    report.received_hex = hex::encode(&received);
    Ok(report)
}

fn udp(target: &str) -> Result<UdpReport> {
    let addr = *resolve(target)?.first().context("no address")?;
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let datagram = b"warden-test-probe";

    let unconnected = UdpSocket::bind(bind)?;
    let sendto_errno = match unconnected.send_to(datagram, addr) {
        Ok(_) => 0,
        Err(e) => errno(&e),
    };

    let connected = UdpSocket::bind(bind)?;
    let (connect_errno, send_errno) = match connected.connect(addr) {
        Ok(()) => match connected.send(datagram) {
            Ok(_) => (0, 0),
            Err(e) => (0, errno(&e)),
        },
        Err(e) => (errno(&e), -1),
    };
    Ok(UdpReport {
        pid: std::process::id(),
        sendto_errno,
        connect_errno,
        send_errno,
    })
}
