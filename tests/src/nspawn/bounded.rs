//! Runs a command to completion within a deadline, its output captured in files (no pipe to fill).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::client::ClientOutput;
use crate::wait;

/// Runs `command` (stdin closed); kills it if it outlives `timeout` and panics with its output.
pub fn run_bounded(command: Command, timeout: Duration) -> ClientOutput {
    let (out, timed_out) = run_until(command, timeout);
    assert!(
        !timed_out,
        "`{}` did not finish within {timeout:?}\n{out}",
        out.description
    );
    out
}

/// Runs `command` (stdin closed) for at most `timeout`; returns its output and whether it had to
/// be killed at the deadline.
pub fn run_until(mut command: Command, timeout: Duration) -> (ClientOutput, bool) {
    let description = describe(&command);
    let stdout = tempfile::tempfile().expect("creating a file for stdout");
    let stderr = tempfile::tempfile().expect("creating a file for stderr");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("cloning the stdout file"))
        .stderr(stderr.try_clone().expect("cloning the stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("starting `{description}`: {e}"));
    let status = wait::within(timeout, || child.try_wait().ok().flatten());
    let timed_out = status.is_none();
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().expect("reaping a killed command")
    });
    let out = ClientOutput {
        description,
        status,
        stdout: read_all(stdout),
        stderr: read_all(stderr),
        pid: None,
        cgroup: None,
    };
    (out, timed_out)
}

fn read_all(mut file: File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    text.push_str(&String::from_utf8_lossy(&bytes));
    text
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
