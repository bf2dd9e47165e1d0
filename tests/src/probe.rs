//! The probe helper binary's command line and its JSON reports, shared by the binary and the tests.

use std::ffi::OsString;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::ClientOutput;
use crate::hex;

/// Where cargo put the `warden-test-probe` binary: next to the test executable's `deps/` dir.
pub fn probe_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("WARDEN_TEST_PROBE") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps");
    let probe = dir.join("warden-test-probe");
    assert!(
        probe.is_file(),
        "{} is missing: cargo builds it for the integration tests of warden-tests",
        probe.display()
    );
    probe
}

/// What a TCP probe does after sending its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Close the connection at once (a client that gives up mid-handshake).
    Close,
    /// Read until as many bytes came back as were sent (an echo through a tunnel).
    ReadEcho,
    /// Read until the peer closes (waiting for Warden to end the connection).
    ReadToEnd,
}

impl Then {
    fn as_arg(self) -> &'static str {
        match self {
            Then::Close => "close",
            Then::ReadEcho => "echo",
            Then::ReadToEnd => "eof",
        }
    }

    pub fn from_arg(arg: &str) -> Option<Self> {
        match arg {
            "close" => Some(Then::Close),
            "echo" => Some(Then::ReadEcho),
            "eof" => Some(Then::ReadToEnd),
            _ => None,
        }
    }
}

/// Argv for: connect to `connect` (a `host:port`, resolved through /etc/hosts), send `payload`,
/// then do `then`, giving up after `timeout_ms`.
pub fn tcp(connect: &str, payload: &[u8], then: Then, timeout_ms: u64) -> Vec<OsString> {
    vec![
        probe_bin().into(),
        "tcp".into(),
        connect.into(),
        hex::encode(payload).into(),
        then.as_arg().into(),
        timeout_ms.to_string().into(),
    ]
}

/// Argv for: send one UDP datagram to `to`, unconnected (sendto) and connected (connect + send).
pub fn udp(to: &str) -> Vec<OsString> {
    vec![probe_bin().into(), "udp".into(), to.into()]
}

/// Argv for: a plain TCP connect to `to`, closed at once.
pub fn connect(to: &str) -> Vec<OsString> {
    tcp(to, &[], Then::Close, 5000)
}

/// The report a probe run printed ([`TcpReport`] or [`UdpReport`]); panics, showing the output,
/// unless the probe exited 0 and printed one.
pub fn report<T: DeserializeOwned>(out: &ClientOutput) -> T {
    out.assert_success();
    serde_json::from_value(out.json()).unwrap_or_else(|e| panic!("probe report ({e})\n{out}"))
}

/// What `warden-test-probe tcp` printed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TcpReport {
    pub pid: u32,
    pub connected: bool,
    /// errno of a failed connect.
    pub connect_errno: Option<i32>,
    pub local: Option<String>,
    pub sent: usize,
    pub received_hex: String,
    /// How the exchange ended: "closed", "echo-complete", "eof", "reset", "timeout", "error: …".
    pub end: String,
}

impl TcpReport {
    pub fn received(&self) -> Vec<u8> {
        hex::decode(&self.received_hex).unwrap_or_default()
    }
}

/// What `warden-test-probe udp` printed: errno per step, 0 for success.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UdpReport {
    pub pid: u32,
    pub sendto_errno: i32,
    pub connect_errno: i32,
    /// errno of send() on the connected socket (-1 if connect already failed).
    pub send_errno: i32,
}
