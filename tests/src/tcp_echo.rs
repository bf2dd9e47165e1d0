//! A raw TCP origin that echoes every byte back and records, per connection, exactly what arrived.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::background::BackgroundRuntime;
use crate::{net, wait};

/// One finished connection: what the origin received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub peer: SocketAddr,
    pub bytes: Vec<u8>,
}

type Finished = Arc<Mutex<Vec<Received>>>;

/// An echo server on a loopback address; stops when dropped.
#[derive(Debug)]
pub struct EchoOrigin {
    addr: SocketAddr,
    finished: Finished,
    _runtime: BackgroundRuntime,
}

impl EchoOrigin {
    /// Listens on `ip:port`.
    pub fn start(ip: impl Into<IpAddr>, port: u16) -> Self {
        let ip = ip.into();
        assert!(ip.is_loopback(), "an echo origin only listens on loopback");
        let listener = StdTcpListener::bind((ip, port))
            .unwrap_or_else(|e| panic!("binding the echo origin on {ip}:{port}: {e}"));
        Self::serve(listener)
    }

    /// Listens on port `port` of a fresh loopback address.
    pub fn start_fresh(port: u16) -> Self {
        for _ in 0..64 {
            match StdTcpListener::bind((net::fresh_loopback(), port)) {
                Ok(listener) => return Self::serve(listener),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => panic!("binding the echo origin on port {port}: {e}"),
            }
        }
        panic!("no free loopback address for the echo origin");
    }

    fn serve(listener: StdTcpListener) -> Self {
        let addr = listener
            .local_addr()
            .expect("local_addr of a bound listener");
        let finished: Finished = Arc::default();
        let recorded = Arc::clone(&finished);
        let runtime = BackgroundRuntime::serve("the echo origin", listener, |listener| {
            accept_loop(listener, recorded)
        });
        Self {
            addr,
            finished,
            _runtime: runtime,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    /// Connections that have ended (the client closed its side), in the order they ended.
    pub fn finished(&self) -> Vec<Received> {
        self.finished
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits until `n` connections have ended.
    pub fn wait_for_finished(&self, n: usize, timeout: Duration) -> Vec<Received> {
        wait::until(
            &format!(
                "{n} finished connection(s) at the echo origin {}",
                self.addr
            ),
            timeout,
            || {
                let finished = self.finished();
                (finished.len() >= n).then_some(finished)
            },
        )
    }
}

async fn accept_loop(listener: TcpListener, finished: Finished) {
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            continue;
        };
        let finished = Arc::clone(&finished);
        tokio::spawn(async move {
            let mut bytes = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        bytes.extend_from_slice(&buf[..n]);
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = stream.shutdown().await;
            finished
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(Received { peer, bytes });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};

    #[test]
    fn echoes_and_records_byte_for_byte() {
        let origin = EchoOrigin::start_fresh(0);
        let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let mut stream = TcpStream::connect(origin.addr()).unwrap();
        stream.write_all(&payload).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed).unwrap();
        assert_eq!(echoed, payload);
        let finished = origin.wait_for_finished(1, Duration::from_secs(5));
        assert_eq!(finished[0].bytes, payload);
    }
}
