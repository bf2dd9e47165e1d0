//! warden-test-hostile: hostile clients that e2e tests run inside selected cgroups (idle floods,
//! slow senders, HTTP/2 rapid reset and CONTINUATION floods); prints one JSON report on stdout.
//!
//! `idle ADDR COUNT hold|until-closed TIMEOUT_S`, `slow ADDR SNI CA HEAD_HEX|@FILE TRICKLE_HEX TIMEOUT_S`,
//! `h2-rapid-reset ADDR SNI CA COUNT TIMEOUT_S`, `h2-continuation ADDR SNI CA FRAMES TIMEOUT_S`.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;
use warden_tests::hex;
use warden_tests::hostile::HostileReport;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let secs = |s: &str| -> Result<Duration> { Ok(Duration::from_secs(s.parse()?)) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = match args[..] {
        ["idle", to, count, then, timeout] => {
            idle(loopback(to)?, count.parse()?, then, secs(timeout)?)?
        }
        ["slow", to, sni, ca, head, trickle, timeout] => runtime.block_on(slow(
            loopback(to)?,
            sni,
            Path::new(ca),
            &match head.strip_prefix('@') {
                Some(path) => std::fs::read(path).context("reading the head")?,
                None => hex::decode(head).context("head is not hex")?,
            },
            &hex::decode(trickle).context("trickle is not hex")?,
            secs(timeout)?,
        ))?,
        ["h2-rapid-reset", to, sni, ca, count, timeout] => runtime.block_on(rapid_reset(
            loopback(to)?,
            sni,
            Path::new(ca),
            count.parse()?,
            secs(timeout)?,
        ))?,
        ["h2-continuation", to, sni, ca, frames, timeout] => runtime.block_on(continuation(
            loopback(to)?,
            sni,
            Path::new(ca),
            frames.parse()?,
            secs(timeout)?,
        ))?,
        _ => bail!("usage: see the module documentation of tests/src/bin/hostile.rs"),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn loopback(to: &str) -> Result<SocketAddr> {
    let addr: SocketAddr = to.parse().context("ADDR must be ip:port")?;
    if !addr.ip().is_loopback() {
        bail!("{addr}: the hostile client only talks to loopback");
    }
    Ok(addr)
}

fn new_report() -> HostileReport {
    HostileReport {
        pid: std::process::id(),
        ..Default::default()
    }
}

/// Opens as many descriptors as the hard limit allows.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn idle(to: SocketAddr, count: usize, then: &str, timeout: Duration) -> Result<HostileReport> {
    raise_open_file_limit();
    let mut report = new_report();
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        match TcpStream::connect_timeout(&to, timeout) {
            Ok(stream) => held.push(stream),
            Err(e) => {
                report.failed += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    report.sent = held.len();
    match then {
        "hold" => {
            println!("{}", serde_json::to_string(&report)?);
            loop {
                std::thread::park();
            }
        }
        "until-closed" => {
            let deadline = Instant::now() + timeout;
            let mut buf = [0u8; 512];
            for mut stream in held {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    report.end = "timeout".into();
                    break;
                }
                stream.set_read_timeout(Some(left))?;
                match stream.read(&mut buf) {
                    Ok(0) => report.closed_by_peer += 1,
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => report.closed_by_peer += 1,
                    Ok(_) => bail!("Warden sent bytes to a client that never spoke"),
                    Err(_) => {
                        report.end = "timeout".into();
                        break;
                    }
                }
            }
            Ok(report)
        }
        _ => bail!("then must be hold or until-closed"),
    }
}

async fn tls(
    to: SocketAddr,
    sni: &str,
    ca: &Path,
    alpn: &[u8],
) -> Result<TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("reading the CA")? {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(to).await?;
    let name = ServerName::try_from(sni.to_owned())?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}

/// Reads until the peer closes, returning how it ended.
async fn read_to_end(mut reader: impl AsyncRead + Unpin, received: &mut Vec<u8>) -> String {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return "eof".into(),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return "reset".into(),
            // rustls: the peer closed without close_notify.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return "eof".into(),
            Err(e) => return format!("error: {e}"),
        }
    }
}

async fn slow(
    to: SocketAddr,
    sni: &str,
    ca: &Path,
    head: &[u8],
    trickle: &[u8],
    timeout: Duration,
) -> Result<HostileReport> {
    let mut report = new_report();
    let stream = tls(to, sni, ca, b"http/1.1").await?;
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reading = tokio::spawn(async move {
        let mut received = Vec::new();
        let end = read_to_end(reader, &mut received).await;
        (received, end)
    });
    let run = async {
        writer.write_all(head).await?;
        for byte in trickle {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Warden answered or closed: the reader says how.
            if reading.is_finished() || writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            report.sent += 1;
        }
        anyhow::Ok(())
    };
    let _ = tokio::time::timeout(timeout, run).await;
    let (received, end) = match tokio::time::timeout(timeout, &mut reading).await {
        Ok(Ok(done)) => done,
        _ => (Vec::new(), "timeout".into()),
    };
    report.received = String::from_utf8_lossy(&received).into_owned();
    report.end = end;
    Ok(report)
}

async fn rapid_reset(
    to: SocketAddr,
    sni: &str,
    ca: &Path,
    count: usize,
    timeout: Duration,
) -> Result<HostileReport> {
    let mut report = new_report();
    let stream = tls(to, sni, ca, b"h2").await?;
    let (client, connection) = h2::client::handshake(stream).await?;
    let mut connection = tokio::spawn(connection);
    let mut ended = None;
    for _ in 0..count {
        let ready = tokio::select! {
            ready = client.clone().ready() => ready,
            done = &mut connection => {
                ended = Some(done);
                break;
            }
        };
        let request = http::Request::post(format!("https://{sni}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(())?;
        let sent = ready.and_then(|mut ready| ready.send_request(request, false));
        match sent {
            Ok((_response, mut body)) => {
                body.send_reset(h2::Reason::CANCEL);
                report.sent += 1;
            }
            Err(e) => {
                report.first_error = Some(e.to_string());
                break;
            }
        }
        // Let the connection task write the frames and read the server's.
        tokio::task::yield_now().await;
    }
    let ended = match ended {
        Some(done) => Ok(done),
        None => tokio::time::timeout(timeout, &mut connection).await,
    };
    report.end = match ended {
        Err(_) => "timeout".into(),
        Ok(Ok(Ok(()))) => "eof".into(),
        Ok(Ok(Err(e))) if e.is_go_away() => format!("goaway: {:?}", e.reason()),
        Ok(Ok(Err(e))) => format!("error: {e}"),
        Ok(Err(e)) => format!("error: {e}"),
    };
    drop(client);
    Ok(report)
}

/// HTTP/2 frame header: length, type, flags, stream id.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

async fn continuation(
    to: SocketAddr,
    sni: &str,
    ca: &Path,
    frames: usize,
    timeout: Duration,
) -> Result<HostileReport> {
    const HEADERS: u8 = 0x1;
    const SETTINGS: u8 = 0x4;
    const CONTINUATION: u8 = 0x9;
    let mut report = new_report();
    let stream = tls(to, sni, ca, b"h2").await?;
    let (reader, mut writer) = tokio::io::split(stream);
    let reading = tokio::spawn(async move {
        let mut received = Vec::new();
        let end = read_to_end(reader, &mut received).await;
        (received, end)
    });
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    // HPACK: :method POST, :scheme https, :path /, then :authority as a literal.
    let mut block = vec![0x83, 0x87, 0x84, 0x41, sni.len() as u8];
    block.extend_from_slice(sni.as_bytes());
    // No END_HEADERS: the header block goes on in CONTINUATION frames.
    start.extend(frame(HEADERS, 0, 1, &block));
    writer.write_all(&start).await?;
    // Literal headers "a: b" without indexing, 4 bytes each, 16 KiB per frame.
    let filler: Vec<u8> = [0x00, 0x01, b'a', 0x01, b'b'].repeat(16 * 1024 / 5);
    let continuation = frame(CONTINUATION, 0, 1, &filler);
    let flood = async {
        for _ in 0..frames {
            if writer.write_all(&continuation).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            report.sent += 1;
        }
    };
    let _ = tokio::time::timeout(timeout, flood).await;
    let (received, end) = match tokio::time::timeout(timeout, reading).await {
        Ok(Ok(done)) => done,
        _ => (Vec::new(), "timeout".into()),
    };
    // GOAWAY is frame type 7; its error code is the last 4 bytes of its 8-byte payload.
    report.received = hex::encode(&received);
    report.end = end;
    Ok(report)
}
