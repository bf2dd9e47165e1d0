//! Assertions about the identity fields Warden puts on every connection's log line.

use std::path::Path;

use crate::client::ClientOutput;
use crate::daemon::Daemon;
use crate::logs::LogLine;

/// Warden's exchange line for `client`'s request, which must place the client in `cgroup`.
pub fn exchange_from(daemon: &Daemon, client: &ClientOutput, cgroup: &str) -> LogLine {
    let line = daemon.wait_for_exchange(client.pid());
    assert_eq!(line.str("cgroup"), Some(cgroup), "{line}");
    line
}

/// The line names process `pid`, running `exe` as root, in cgroup `cgroup`.
pub fn assert_attributed(line: &LogLine, pid: u32, exe: &Path, cgroup: &str) {
    let expect = |field: &str, ok: bool, wanted: &dyn std::fmt::Debug| {
        assert!(ok, "log field `{field}` should be {wanted:?} in\n{line}");
    };
    expect("pid", line.pid() == Some(pid), &pid);
    expect(
        "exe",
        line.str("exe") == exe.to_str(),
        &exe.display().to_string(),
    );
    expect("uid", line.u64("uid") == Some(0), &0);
    expect("gid", line.u64("gid") == Some(0), &0);
    expect("user", line.str("user") == Some("root"), &"root");
    expect("cgroup", line.str("cgroup") == Some(cgroup), &cgroup);
}

/// A field that must be a JSON number (durations may be fractional).
pub fn assert_number(line: &LogLine, field: &str) {
    assert!(
        line.get(field).is_some_and(serde_json::Value::is_number),
        "log field `{field}` should be a number in\n{line}"
    );
}
