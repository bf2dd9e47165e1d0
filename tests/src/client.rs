//! Runs a real, unmodified client inside a chosen cgroup and a private mount namespace with its own
//! /etc/hosts, with a deadline, and captures its output, pid and cgroup.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cgroup::{parse_proc_cgroup, CgroupGuard};
use crate::hosts::HostsFile;
use crate::wait;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const PID_MARKER: &str = "warden-test-pid=";
const CGROUP_MARKER: &str = "warden-test-cgroup=";

/// Moves the shell into the cgroup whose `cgroup.procs` is `$0`, then becomes the rest of the line.
const JOIN_CGROUP: &str = r#"echo $$ > "$0" && exec "$@""#;

/// Bind-mounts the hosts file `$0` (if any) over /etc/hosts — only ever run inside `unshare -m`, so
/// the mount dies with the process — reports pid and cgroup on stderr, then execs the client, which
/// keeps the pid.
const ANNOUNCE_AND_EXEC: &str = r#"
if [ -n "$0" ]; then mount --bind "$0" /etc/hosts || exit 125; fi
echo "warden-test-pid=$$" >&2
while IFS= read -r line; do echo "warden-test-cgroup=$line" >&2; done < /proc/self/cgroup
exec "$@"
"#;

/// A client command. Nothing from the test's environment leaks in: the environment is rebuilt with
/// only PATH, HOME, LANG and what the builder adds (so no proxy or CA variables of the host apply).
#[derive(Debug, Clone)]
pub struct Client {
    command: Vec<OsString>,
    launcher: Vec<OsString>,
    cgroup_procs: Option<PathBuf>,
    hosts: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
    timeout: Duration,
}

impl Client {
    pub fn new<I, S>(command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let command: Vec<OsString> = command.into_iter().map(|s| s.as_ref().to_owned()).collect();
        assert!(!command.is_empty(), "a client needs a command");
        Self {
            command,
            launcher: Vec::new(),
            cgroup_procs: None,
            hosts: None,
            envs: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Starts the client as a member of `cgroup`.
    pub fn in_cgroup(mut self, cgroup: &CgroupGuard) -> Self {
        self.cgroup_procs = Some(cgroup.procs_file());
        self
    }

    /// Makes the client see `hosts` as /etc/hosts (in a private mount namespace).
    pub fn hosts(mut self, hosts: &HostsFile) -> Self {
        self.hosts = Some(hosts.path());
        self
    }

    /// Makes OpenSSL-based clients (curl, Python) trust exactly this PEM bundle (`SSL_CERT_FILE`).
    pub fn trust(self, bundle: &Path) -> Self {
        self.env("SSL_CERT_FILE", bundle)
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs the client through a launcher, e.g. `warden exec --config F --`. The hosts mount and
    /// the pid report happen inside the launcher, right before the client itself.
    pub fn launched_by<I, S>(mut self, launcher: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.launcher = launcher
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .collect();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(procs) = &self.cgroup_procs {
            argv.extend(["sh".into(), "-c".into(), JOIN_CGROUP.into()]);
            argv.push(procs.clone().into());
        }
        argv.extend(self.launcher.iter().cloned());
        if self.hosts.is_some() {
            argv.extend(["unshare".into(), "-m".into(), "--".into()]);
        }
        argv.extend(["sh".into(), "-c".into(), ANNOUNCE_AND_EXEC.into()]);
        argv.push(self.hosts.clone().map(OsString::from).unwrap_or_default());
        argv.extend(self.command.iter().cloned());
        argv
    }

    fn describe(&self) -> String {
        self.command
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts the client; wait for it with [`RunningClient::wait`].
    pub fn spawn(self) -> RunningClient {
        let dir = tempfile::tempdir().expect("creating a tempdir for client output");
        let stdout = File::create(dir.path().join("stdout")).expect("creating stdout file");
        let stderr = File::create(dir.path().join("stderr")).expect("creating stderr file");
        let argv = self.argv();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env(
                "HOME",
                std::env::var_os("HOME").unwrap_or_else(|| "/root".into()),
            )
            .env("LANG", "C.UTF-8")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.describe()));
        RunningClient {
            child,
            dir,
            deadline: Instant::now() + self.timeout,
            description: self.describe(),
        }
    }

    /// Runs the client to completion (panics if it outlives its deadline).
    pub fn run(self) -> ClientOutput {
        self.spawn().wait()
    }
}

/// A client that was started and not yet waited for. Killed if dropped while still running.
#[derive(Debug)]
pub struct RunningClient {
    child: Child,
    dir: TempDir,
    deadline: Instant,
    description: String,
}

impl RunningClient {
    /// The pid once the client announced itself (it keeps that pid through exec).
    pub fn wait_for_pid(&self) -> u32 {
        let stderr = self.dir.path().join("stderr");
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        wait::until("the client to announce its pid", remaining, || {
            let text = fs::read_to_string(&stderr).ok()?;
            parse_markers(&text).pid
        })
    }

    /// Polls the client's stdout, as it is written, until a line for which `matches` holds appears,
    /// for at most `timeout`; `None` if none did (or the client exited without printing one).
    pub fn wait_for_stdout_line(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let stdout = self.dir.path().join("stdout");
        let find = || {
            let text = fs::read_to_string(&stdout).ok()?;
            // Only complete lines: the client may be half way through writing the last one.
            let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
            complete.lines().find(|l| matches(l)).map(str::to_owned)
        };
        let mut exited = false;
        let found = wait::within(timeout, || {
            exited = exited || matches!(self.child.try_wait(), Ok(Some(_)));
            find().map(Some).or(exited.then_some(None))
        });
        found.flatten()
    }

    /// Waits until the client exits; panics, with its output, if it outlives its deadline.
    pub fn wait(mut self) -> ClientOutput {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let status = wait::within(remaining, || self.child.try_wait().ok().flatten());
        match status {
            Some(status) => self.output(status),
            None => {
                let _ = self.child.kill();
                let status = self.child.wait().expect("reaping a killed client");
                panic!(
                    "client `{}` did not finish before its deadline\n{}",
                    self.description,
                    self.output(status)
                );
            }
        }
    }

    fn output(&self, status: ExitStatus) -> ClientOutput {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let raw_stderr = read("stderr");
        let markers = parse_markers(&raw_stderr);
        ClientOutput {
            description: self.description.clone(),
            status,
            stdout: read("stdout"),
            stderr: markers.rest,
            pid: markers.pid,
            cgroup: markers.cgroup,
        }
    }
}

impl Drop for RunningClient {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Markers {
    pid: Option<u32>,
    cgroup: Option<String>,
    rest: String,
}

fn parse_markers(stderr: &str) -> Markers {
    let mut pid = None;
    let mut cgroup_lines = String::new();
    let mut rest = String::new();
    for line in stderr.lines() {
        if let Some(p) = line.strip_prefix(PID_MARKER) {
            pid = pid.or(p.trim().parse().ok());
        } else if let Some(c) = line.strip_prefix(CGROUP_MARKER) {
            cgroup_lines.push_str(c);
            cgroup_lines.push('\n');
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    Markers {
        pid,
        cgroup: parse_proc_cgroup(&cgroup_lines),
        rest,
    }
}

/// What a client did.
#[derive(Debug)]
pub struct ClientOutput {
    pub description: String,
    pub status: ExitStatus,
    pub stdout: String,
    /// stderr without the wrapper's pid/cgroup report.
    pub stderr: String,
    /// The client's pid, as the wrapper reported it right before exec'ing the client.
    pub pid: Option<u32>,
    /// The client's cgroup2 path, as the wrapper read it right before exec'ing the client.
    pub cgroup: Option<String>,
}

impl ClientOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn pid(&self) -> u32 {
        self.pid
            .unwrap_or_else(|| panic!("the client never reported its pid\n{self}"))
    }

    pub fn cgroup(&self) -> &str {
        self.cgroup
            .as_deref()
            .unwrap_or_else(|| panic!("the client never reported its cgroup\n{self}"))
    }

    /// Panics, showing the output, unless the client exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "client failed\n{self}");
        self
    }

    /// The last line of stdout as JSON, for clients that print progress lines before their result
    /// (panics, showing the output, if it isn't JSON).
    pub fn last_line_json(&self) -> serde_json::Value {
        let last = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("the last line of client stdout is not JSON ({e})\n{self}"))
    }

    /// stdout as JSON (panics, showing the output, if it isn't).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("client stdout is not JSON ({e})\n{self}"))
    }
}

impl std::fmt::Display for ClientOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "command: {}", self.description)?;
        writeln!(f, "status: {}", self.status)?;
        writeln!(f, "pid: {:?}, cgroup: {:?}", self.pid, self.cgroup)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_the_wrapper_report_from_the_client_stderr() {
        let markers = parse_markers(
            "warden-test-pid=4242\nwarden-test-cgroup=1:cpu:/\nwarden-test-cgroup=0::/warden-test-x\ncurl: (60) bad cert\n",
        );
        assert_eq!(markers.pid, Some(4242));
        assert_eq!(markers.cgroup.as_deref(), Some("/warden-test-x"));
        assert_eq!(markers.rest, "curl: (60) bad cert\n");
    }

    #[test]
    fn runs_a_command_and_reports_its_pid() {
        let out = Client::new(["sh", "-c", "echo $$; echo oops >&2; exit 3"]).run();
        assert_eq!(out.code(), Some(3));
        assert_eq!(out.stdout.trim().parse::<u32>().ok(), out.pid);
        assert_eq!(out.stderr, "oops\n");
        assert!(out.cgroup.is_some());
    }

    #[test]
    fn sees_stdout_lines_while_the_client_runs() {
        let mut running = Client::new(["sh", "-c", "echo ready; exec sleep 1000"]).spawn();
        let line = running.wait_for_stdout_line(Duration::from_secs(20), |l| l == "ready");
        assert_eq!(line.as_deref(), Some("ready"));
        assert!(
            matches!(running.child.try_wait(), Ok(None)),
            "still running"
        );
    }

    #[test]
    fn stops_looking_for_a_line_when_the_client_exits() {
        let mut running = Client::new(["sh", "-c", "echo other"]).spawn();
        let line = running.wait_for_stdout_line(Duration::from_secs(60), |l| l == "never");
        assert_eq!(line, None);
        assert_eq!(running.wait().stdout, "other\n");
    }

    #[test]
    fn the_environment_is_rebuilt() {
        let out = Client::new(["sh", "-c", "echo \"[$SSL_CERT_DIR][$X]\""])
            .env("X", "y")
            .run();
        out.assert_success();
        assert_eq!(out.stdout, "[][y]\n");
    }
}
