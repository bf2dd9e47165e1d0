//! A running `warden run` as a guard (started by [`DaemonBuilder`]): waits for "warden ready", reads
//! its JSON log, asks it for its status, and stops it (SIGTERM, then SIGKILL after a deadline) on Drop.

mod builder;
mod config;
mod policy_files;
mod status;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

use tempfile::TempDir;

use crate::bpffs::BpfFs;
use crate::cgroup::CgroupGuard;
use crate::client::{Client, ClientOutput};
use crate::env::E2e;
use crate::logs::{LogLine, Logs};
use crate::tmpfs::Tmpfs;
use crate::wait;

pub use builder::DaemonBuilder;
pub use config::{Account, UpstreamOverride};
pub use status::{Program, Selected, Status};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const CLI_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a connection's log line may take to appear once the client is done.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A running `warden run`. Dropping it stops it and removes its cgroup and files.
#[derive(Debug)]
pub struct Daemon {
    e2e: E2e,
    child: Child,
    exit: Option<ExitStatus>,
    config_path: PathBuf,
    state_dir: PathBuf,
    /// `[policy] dir`: a directory of this daemon's own.
    policy_dir: PathBuf,
    log_path: PathBuf,
    launch: builder::Launch,
    /// How many times [`Daemon::restart`] started it again; earlier logs are `daemon.log.N`.
    restarts: u32,
    listen_port: u16,
    /// `[metrics] listen` is `127.0.0.1:PORT`; None: metrics are off.
    metrics_port: Option<u16>,
    cgroup: Option<CgroupGuard>,
    /// `[proxy] pin_dir`, inside `bpffs`.
    pin_dir: PathBuf,
    /// Dropped after the daemon has stopped: releases whatever it left pinned.
    bpffs: Option<BpfFs>,
    /// `state_dir`'s own small filesystem, when the builder asked for one.
    state_tmpfs: Option<Tmpfs>,
    dir: TempDir,
}

impl Daemon {
    pub fn builder(e2e: &E2e) -> DaemonBuilder {
        DaemonBuilder::new(e2e)
    }

    fn wait_until_ready(&mut self) {
        let ready = wait::within(READY_TIMEOUT, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return Some(false);
            }
            self.logs().find(|l| l.is("warden ready")).map(|_| true)
        });
        match ready {
            Some(true) => {}
            Some(false) => panic!(
                "warden run exited ({:?}) before it was ready\n{}",
                self.exit,
                self.log_text()
            ),
            None => panic!(
                "warden run was not ready after {READY_TIMEOUT:?}\n{}",
                self.log_text()
            ),
        }
    }

    fn write_trust_bundle(&self) {
        let mut bundle = fs::read_to_string(SYSTEM_CA_BUNDLE).unwrap_or_default();
        let warden_ca = fs::read_to_string(self.ca_pem())
            .unwrap_or_else(|e| panic!("reading Warden's CA at {}: {e}", self.ca_pem().display()));
        bundle.push('\n');
        bundle.push_str(&warden_ca);
        fs::write(self.trust_bundle(), bundle).expect("writing the trust bundle");
    }

    /// The pid of the process the test started (`unshare` when the daemon has a pid namespace
    /// of its own; see [`Daemon::warden_pid`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The host pid of `warden run` itself: the child's child when it runs in its own pid
    /// namespace.
    pub fn warden_pid(&self) -> u32 {
        if !self.launch.own_pid_namespace {
            return self.pid();
        }
        let pid = self.pid();
        let children = format!("/proc/{pid}/task/{pid}/children");
        wait::until("unshare to start warden", Duration::from_secs(10), || {
            fs::read_to_string(&children)
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    }

    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    /// `http://127.0.0.1:PORT/metrics`; panics unless the daemon was built with `.metrics()`.
    pub fn metrics_url(&self) -> String {
        let port = self
            .metrics_port
            .expect("metrics are off for this daemon: build it with `.metrics()`");
        format!("http://127.0.0.1:{port}/metrics")
    }

    /// `http://127.0.0.1:PORT/metrics` when the daemon serves metrics.
    pub fn metrics_url_if_served(&self) -> Option<String> {
        self.metrics_port
            .map(|port| format!("http://127.0.0.1:{port}/metrics"))
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `[proxy] pin_dir`: where the daemon pins its links (`links/`) and maps (`maps/`).
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The names pinned in `pin_dir/<sub>` (`links` or `maps`), sorted.
    pub fn pins(&self, sub: &str) -> Vec<String> {
        let bpffs = self
            .bpffs
            .as_ref()
            .expect("the pins outlive the daemon guard");
        bpffs.pins_in(&format!("warden/{sub}"))
    }

    /// The tmpfs `state_dir` is on; panics unless the builder asked for one.
    pub fn state_tmpfs(&self) -> &Tmpfs {
        self.state_tmpfs
            .as_ref()
            .expect("build the daemon with `.state_dir_on_tmpfs(size)`")
    }

    /// Switches the config file to `fail_mode = "open"`, for the next [`Daemon::restart`].
    pub fn set_fail_open(&self) {
        let text = fs::read_to_string(&self.config_path).expect("reading the daemon config");
        let switched = text.replace(r#"fail_mode = "closed""#, r#"fail_mode = "open""#);
        assert_ne!(text, switched, "the config names fail_mode = \"closed\"");
        fs::write(&self.config_path, switched).expect("writing the daemon config");
    }

    /// Removes every pin, as `warden uninstall` does: what the daemon left attached detaches.
    pub fn remove_pins(&self) {
        match fs::remove_dir_all(&self.pin_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                panic!("removing {}: {e}", self.pin_dir.display())
            }
            _ => {}
        }
    }

    /// Warden's CA certificate, where the contract puts it: `state_dir/ca/ca.pem`.
    pub fn ca_pem(&self) -> PathBuf {
        self.state_dir.join("ca").join("ca.pem")
    }

    /// The system CAs plus Warden's CA: what a client's `SSL_CERT_FILE` points at.
    pub fn trust_bundle(&self) -> PathBuf {
        self.dir.path().join("trust-bundle.pem")
    }

    /// The cgroup the daemon process runs in.
    pub fn cgroup(&self) -> &CgroupGuard {
        self.cgroup
            .as_ref()
            .expect("the daemon cgroup lives as long as the daemon guard")
    }

    /// The arguments that run a command through `warden exec` against this daemon.
    pub fn exec_launcher(&self) -> Vec<OsString> {
        vec![
            self.e2e.warden_bin.clone().into(),
            "exec".into(),
            "--config".into(),
            self.config_path.clone().into(),
            "--".into(),
        ]
    }

    /// Runs `warden <subcommand> --config FILE <args>` to completion.
    pub fn cli(&self, subcommand: &str, args: &[&str]) -> ClientOutput {
        let mut argv: Vec<OsString> = vec![
            self.e2e.warden_bin.clone().into(),
            subcommand.into(),
            "--config".into(),
            self.config_path.clone().into(),
        ];
        argv.extend(args.iter().map(OsString::from));
        Client::new(argv).timeout(CLI_TIMEOUT).run()
    }

    /// `warden status --json`, parsed; panics if it fails.
    pub fn status(&self) -> Status {
        let out = self.cli("status", &["--json"]);
        out.assert_success();
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
            panic!("`warden status --json` printed unexpected JSON ({e})\n{out}")
        })
    }

    /// Polls `warden status --json` until `predicate` holds.
    pub fn wait_for_status(
        &self,
        what: &str,
        timeout: Duration,
        mut predicate: impl FnMut(&Status) -> bool,
    ) -> Status {
        wait::until(what, timeout, || {
            let status = self.status();
            predicate(&status).then_some(status)
        })
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Every complete log line so far.
    pub fn logs(&self) -> Logs {
        Logs::parse(&self.log_text())
    }

    /// Polls the log until a line matches; panics with the whole log after `timeout`.
    pub fn wait_for_log(
        &self,
        what: &str,
        timeout: Duration,
        mut predicate: impl FnMut(&LogLine) -> bool,
    ) -> LogLine {
        let found = wait::within(timeout, || self.logs().find(&mut predicate).cloned());
        found.unwrap_or_else(|| {
            panic!(
                "no log line for {what} after {timeout:?}; the log:\n{}",
                self.log_text()
            )
        })
    }

    /// The "exchange" line logged for a request from `pid`.
    pub fn wait_for_exchange(&self, pid: u32) -> LogLine {
        self.wait_for_log(&format!("an exchange from pid {pid}"), LINE_TIMEOUT, |l| {
            l.is("exchange") && l.pid() == Some(pid)
        })
    }

    /// The "tunnel" line logged for a connection from `pid`.
    pub fn wait_for_tunnel(&self, pid: u32) -> LogLine {
        self.wait_for_log(&format!("a tunnel line for pid {pid}"), LINE_TIMEOUT, |l| {
            l.is("tunnel") && l.pid() == Some(pid)
        })
    }

    /// Whether `warden run` is still running.
    pub fn is_running(&mut self) -> bool {
        self.exit.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` and returns at once (see [`Daemon::stop`] to wait for the exit).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory preconditions. The pid is our unreaped child, or its child
        // (warden itself: unshare ignores SIGTERM and SIGINT), which lives as long as it does.
        unsafe { libc::kill(self.warden_pid() as libc::pid_t, signal) };
    }

    /// Sends `signal` and waits for the daemon to exit; SIGKILLs it (and panics) after a deadline.
    /// Calling it again returns the first exit status.
    pub fn stop(&mut self, signal: libc::c_int) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            self.exit = Some(status);
            return status;
        }
        // SAFETY: kill has no memory preconditions; the pid is our unreaped child (or warden, its
        // child, see `signal`), so it cannot have been reused.
        unsafe { libc::kill(self.warden_pid() as libc::pid_t, signal) };
        let exited = wait::within(STOP_TIMEOUT, || self.child.try_wait().ok().flatten());
        let status = match exited {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                let status = self.child.wait().expect("reaping a killed daemon");
                self.exit = Some(status);
                if !std::thread::panicking() {
                    panic!(
                        "warden run ignored signal {signal} for {STOP_TIMEOUT:?}\n{}",
                        self.log_text()
                    );
                }
                status
            }
        };
        self.exit = Some(status);
        status
    }
}

impl Daemon {
    /// SIGKILLs the daemon, as a crash would: no drain, no cleanup of any kind.
    pub fn kill9(&mut self) -> ExitStatus {
        self.stop(libc::SIGKILL)
    }

    /// Starts `warden run` again, in the same cgroup, on the same config file and state dir, once
    /// this one has exited (stopped or killed); waits for "warden ready". The previous run's log
    /// is kept as `daemon.log.N`.
    pub fn restart(&mut self) {
        self.respawn();
        self.wait_until_ready();
        self.write_trust_bundle();
    }

    /// Starts `warden run` again like [`Daemon::restart`], for a start that must fail: waits for
    /// it to exit and returns its status (its log is then [`Daemon::log_text`]). Panics if it
    /// gets ready instead.
    pub fn restart_expecting_exit(&mut self) -> ExitStatus {
        self.respawn();
        let exited = wait::within(READY_TIMEOUT, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(Some(status));
            }
            self.logs().find(|l| l.is("warden ready")).map(|_| None)
        });
        match exited {
            Some(Some(status)) => {
                self.exit = Some(status);
                status
            }
            Some(None) => panic!(
                "warden run got ready; it should have refused to start\n{}",
                self.log_text()
            ),
            None => panic!(
                "warden run neither exited nor got ready after {READY_TIMEOUT:?}\n{}",
                self.log_text()
            ),
        }
    }

    /// Starts `warden run` again like [`Daemon::restart`], without waiting for it to get ready
    /// (for a test that holds the start with a fault hook).
    pub fn respawn(&mut self) {
        assert!(
            !self.is_running(),
            "restart() is for a daemon that has exited; stop or kill it first"
        );
        self.restarts += 1;
        let previous = self
            .dir
            .path()
            .join(format!("daemon.log.{}", self.restarts));
        fs::rename(&self.log_path, &previous).expect("keeping the previous daemon log");
        let cgroup = self
            .cgroup
            .as_ref()
            .expect("the daemon cgroup lives as long as the daemon guard");
        self.child = builder::spawn_run(
            &self.e2e,
            &self.config_path,
            &self.launch,
            cgroup,
            self.dir.path(),
        );
        self.exit = None;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM);
        if std::thread::panicking() {
            let earlier =
                (1..=self.restarts).map(|n| self.dir.path().join(format!("daemon.log.{n}")));
            for path in earlier.chain([self.log_path.clone()]) {
                let text = fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(300)..];
                eprintln!(
                    "--- warden daemon log ({}) ---\n{}\n--- end of daemon log ---",
                    path.display(),
                    tail.join("\n")
                );
            }
        }
        // Drop the cgroup (killing anything the daemon left) and the pins before the tempdir goes.
        self.cgroup.take();
        self.bpffs.take();
        self.state_tmpfs.take();
    }
}
