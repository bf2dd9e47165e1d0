//! A small HTTP proxy on loopback, outside every selected cgroup: the "real" proxy an agent's
//! `HTTPS_PROXY` / `HTTP_PROXY` names. It answers `CONNECT` to the names it was given a route for
//! (loopback addresses only) and relays the tunnel; it refuses everything else. It records each
//! request line it received, so a test can tell whether a call went through it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::background::BackgroundRuntime;
use crate::net;

type Lines = Arc<Mutex<Vec<String>>>;

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct ConnectProxy {
    addr: SocketAddr,
    lines: Lines,
    _runtime: BackgroundRuntime,
}

impl ConnectProxy {
    /// Listens on port `port` of a fresh loopback address (0: any port). `routes` maps the
    /// `host:port` a CONNECT may name to the loopback address it is tunneled to.
    pub fn start(port: u16, routes: &[(&str, SocketAddr)]) -> Self {
        let routes: HashMap<String, SocketAddr> = routes
            .iter()
            .map(|(authority, addr)| {
                assert!(addr.ip().is_loopback(), "a proxy route must be loopback");
                (authority.to_string(), *addr)
            })
            .collect();
        let listener = StdTcpListener::bind((IpAddr::from(net::fresh_loopback()), port))
            .expect("binding the CONNECT proxy");
        let addr = listener
            .local_addr()
            .expect("local_addr of a bound listener");
        let lines: Lines = Arc::default();
        let recorded = Arc::clone(&lines);
        let runtime = BackgroundRuntime::serve("the CONNECT proxy", listener, |listener| {
            accept_loop(listener, Arc::new(routes), recorded)
        });
        Self {
            addr,
            lines,
            _runtime: runtime,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, as `HTTPS_PROXY` names it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines received so far (`CONNECT host:port HTTP/1.1`, `GET http://… HTTP/1.1`).
    pub fn request_lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

async fn accept_loop(
    listener: TcpListener,
    routes: Arc<HashMap<String, SocketAddr>>,
    lines: Lines,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let routes = Arc::clone(&routes);
        let lines = Arc::clone(&lines);
        tokio::spawn(async move {
            let _ = serve(client, &routes, &lines).await;
        });
    }
}

async fn serve(
    mut client: TcpStream,
    routes: &HashMap<String, SocketAddr>,
    lines: &Lines,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so that nothing after the head (the tunnel's first bytes) is consumed.
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default().to_owned();
    lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(line.clone());
    let mut words = line.split(' ');
    let route = match (words.next(), words.next()) {
        (Some("CONNECT"), Some(authority)) => routes.get(authority).copied(),
        _ => None,
    };
    let Some(target) = route else {
        let refusal = "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        client.write_all(refusal.as_bytes()).await?;
        return client.shutdown().await;
    };
    let mut server = TcpStream::connect(target).await?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp_echo::EchoOrigin;
    use std::io::{Read, Write};

    #[test]
    fn tunnels_a_routed_connect_and_refuses_the_rest() {
        let origin = EchoOrigin::start_fresh(0);
        let proxy = ConnectProxy::start(0, &[("echo.test:7", origin.addr())]);
        let mut stream = std::net::TcpStream::connect(proxy.addr()).unwrap();
        stream
            .write_all(b"CONNECT echo.test:7 HTTP/1.1\r\nHost: echo.test:7\r\n\r\nping")
            .unwrap();
        let expected = b"HTTP/1.1 200 Connection established\r\n\r\nping";
        let mut got = vec![0u8; expected.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, expected);

        let mut other = std::net::TcpStream::connect(proxy.addr()).unwrap();
        other
            .write_all(b"GET http://else.test/ HTTP/1.1\r\nHost: else.test\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        other.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert_eq!(
            proxy.request_lines(),
            [
                "CONNECT echo.test:7 HTTP/1.1",
                "GET http://else.test/ HTTP/1.1"
            ]
        );
    }
}
