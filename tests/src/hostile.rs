//! The `warden-test-hostile` helper's command lines and its JSON report, shared by the binary and
//! the tests: clients that attack the daemon from inside a selected cgroup.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::client::ClientOutput;
use crate::hex;

/// Where cargo put the `warden-test-hostile` binary (beside `warden-test-probe`).
pub fn hostile_bin() -> OsString {
    let probe = crate::probe::probe_bin();
    probe.with_file_name("warden-test-hostile").into()
}

/// After opening its idle connections, whether the client holds them until killed or waits for
/// Warden to close every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Print the report, then hold the connections until killed.
    Hold,
    /// Wait (at most the timeout) until Warden has closed each one, then report.
    UntilClosed,
}

/// Argv for: open `count` TCP connections to `to` that never send a byte. The client raises its
/// own open-file limit first.
pub fn idle(to: SocketAddr, count: usize, then: Idle, timeout_secs: u64) -> Vec<OsString> {
    let then = match then {
        Idle::Hold => "hold",
        Idle::UntilClosed => "until-closed",
    };
    vec![
        hostile_bin(),
        "idle".into(),
        to.to_string().into(),
        count.to_string().into(),
        then.into(),
        timeout_secs.to_string().into(),
    ]
}

/// Argv for: a TLS connection (server name `sni`, trusting `ca`, ALPN http/1.1) that sends `head`
/// at once, then `trickle` one byte a second, while reading what comes back, until Warden closes
/// the connection or `timeout_secs` pass.
pub fn slow(
    to: SocketAddr,
    sni: &str,
    ca: &Path,
    head: &[u8],
    trickle: &[u8],
    timeout_secs: u64,
) -> Vec<OsString> {
    vec![
        hostile_bin(),
        "slow".into(),
        to.to_string().into(),
        sni.into(),
        ca.into(),
        hex::encode(head).into(),
        hex::encode(trickle).into(),
        timeout_secs.to_string().into(),
    ]
}

/// Like [`slow`], with the head read from the file `head` (too large for a command line).
pub fn slow_from_file(
    to: SocketAddr,
    sni: &str,
    ca: &Path,
    head: &Path,
    trickle: &[u8],
    timeout_secs: u64,
) -> Vec<OsString> {
    let mut argv = slow(to, sni, ca, &[], trickle, timeout_secs);
    let mut from_file = OsString::from("@");
    from_file.push(head);
    argv[5] = from_file;
    argv
}

/// Argv for: an HTTP/2 connection that opens `count` requests and resets each at once
/// (CVE-2023-44487), then waits for the connection to end. `count` 0 is an idle h2 connection.
pub fn h2_rapid_reset(
    to: SocketAddr,
    sni: &str,
    ca: &Path,
    count: usize,
    timeout_secs: u64,
) -> Vec<OsString> {
    h2_argv("h2-rapid-reset", to, sni, ca, count, timeout_secs)
}

/// Argv for: an HTTP/2 connection that sends a HEADERS frame without END_HEADERS, then up to
/// `frames` CONTINUATION frames of 16 KiB, then waits for the connection to end.
pub fn h2_continuation(
    to: SocketAddr,
    sni: &str,
    ca: &Path,
    frames: usize,
    timeout_secs: u64,
) -> Vec<OsString> {
    h2_argv("h2-continuation", to, sni, ca, frames, timeout_secs)
}

fn h2_argv(
    mode: &str,
    to: SocketAddr,
    sni: &str,
    ca: &Path,
    count: usize,
    timeout_secs: u64,
) -> Vec<OsString> {
    vec![
        hostile_bin(),
        mode.into(),
        to.to_string().into(),
        sni.into(),
        ca.into(),
        count.to_string().into(),
        timeout_secs.to_string().into(),
    ]
}

/// What `warden-test-hostile` printed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostileReport {
    pub pid: u32,
    /// Connections opened, bytes trickled, requests or frames sent.
    pub sent: usize,
    /// Connects that failed, with the first error.
    pub failed: usize,
    pub first_error: Option<String>,
    /// Idle connections Warden closed (`until-closed`).
    pub closed_by_peer: usize,
    /// What came back (lossy UTF-8).
    pub received: String,
    /// How it ended: "eof", "reset", "goaway: …", "timeout", "error: …".
    pub end: String,
}

/// The report of a finished run; panics, showing the output, unless there is one.
pub fn report(out: &ClientOutput) -> HostileReport {
    out.assert_success();
    serde_json::from_value(out.last_line_json())
        .unwrap_or_else(|e| panic!("hostile client report ({e})\n{out}"))
}

/// The report line printed by a client still running (`idle … hold`).
pub fn parse_line(line: &str) -> HostileReport {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("hostile client report ({e}): {line}"))
}

/// What a process holds, read from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub rss_kib: u64,
    pub fds: usize,
}

/// `VmRSS` of /proc/PID/status and the entries of /proc/PID/fd.
pub fn resources(pid: u32) -> Resources {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/fd: {e}"))
        .count();
    Resources { rss_kib, fds }
}

/// This process's open-file hard limit, which the daemon and clients it starts inherit (and raise
/// their soft limit to).
pub fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed by pointer.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => limit.rlim_max,
        _ => 0,
    }
}
