//! Runs `warden run` as a guard: writes its config, waits for "warden ready", reads its JSON log,
//! asks it for its status, and stops it (SIGTERM, then SIGKILL after a deadline) on Drop.

mod config;
mod status;

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::cgroup::CgroupGuard;
use crate::client::{Client, ClientOutput};
use crate::env::E2e;
use crate::fake_upstream::FakeUpstream;
use crate::logs::{LogLine, Logs};
use crate::{net, wait};

pub use config::{Account, UpstreamOverride};
pub use status::{Program, Selected, Status};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const CLI_TIMEOUT: Duration = Duration::from_secs(15);
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How to start a daemon. Defaults: a free listen port, intercept port 443, intercepted host
/// `api.openai.com`, nothing selected, no overrides, log level info.
#[derive(Debug, Clone)]
pub struct DaemonBuilder {
    e2e: E2e,
    listen_port: Option<u16>,
    intercept_ports: Vec<u16>,
    intercept_hosts: Vec<String>,
    select_cgroups: Vec<String>,
    select_units: Vec<String>,
    overrides: Vec<UpstreamOverride>,
    accounts: Vec<Account>,
    parent_cgroup: Option<String>,
    log_filter: String,
}

impl DaemonBuilder {
    /// Selects `cgroup` (and its descendants) in the config file.
    pub fn select(mut self, cgroup: &CgroupGuard) -> Self {
        self.select_cgroups.push(cgroup.path().to_owned());
        self
    }

    /// Selects a cgroup path that may not exist yet.
    pub fn select_path(mut self, path: &str) -> Self {
        self.select_cgroups.push(path.to_owned());
        self
    }

    /// Selects a systemd unit by name (`select.units`).
    pub fn select_unit(mut self, unit: &str) -> Self {
        self.select_units.push(unit.to_owned());
        self
    }

    /// Adds an `[[account]]` entry; entries keep their order, and the first match wins.
    pub fn account(mut self, account: Account) -> Self {
        self.accounts.push(account);
        self
    }

    /// Also decrypts TLS for this server name.
    pub fn intercept_host(mut self, host: &str) -> Self {
        self.intercept_hosts.push(host.to_owned());
        self
    }

    /// Sends `api.openai.com` to this fake upstream, trusting its test CA.
    pub fn upstream(self, upstream: &FakeUpstream) -> Self {
        self.upstream_override(UpstreamOverride::new(
            "api.openai.com",
            upstream.addr(),
            Some(upstream.ca_pem_path()),
        ))
    }

    pub fn upstream_override(mut self, over: UpstreamOverride) -> Self {
        self.overrides.push(over);
        self
    }

    /// Runs the daemon itself in a child cgroup of `cgroup` instead of a cgroup of its own.
    pub fn run_inside(mut self, cgroup: &CgroupGuard) -> Self {
        self.parent_cgroup = Some(cgroup.path().to_owned());
        self
    }

    /// `WARDEN_LOG` for the daemon (default `info`).
    pub fn log_filter(mut self, filter: &str) -> Self {
        self.log_filter = filter.to_owned();
        self
    }

    /// Writes the config, starts `warden run`, and waits for "warden ready".
    pub fn start(self) -> Daemon {
        let dir = tempfile::tempdir().expect("creating the daemon's tempdir");
        let state_dir = dir.path().join("state");
        let config_path = dir.path().join("warden.toml");
        let listen_port = self.listen_port.unwrap_or_else(net::free_dual_stack_port);
        let config = config::ConfigFile {
            state_dir: state_dir.clone(),
            proxy: config::Proxy {
                listen_port,
                intercept_ports: self.intercept_ports.clone(),
                intercept_hosts: self.intercept_hosts.clone(),
            },
            select: config::Select {
                cgroups: self.select_cgroups.clone(),
                units: self.select_units.clone(),
            },
            upstream: (!self.overrides.is_empty()).then(|| config::Upstream {
                overrides: self.overrides.clone(),
            }),
            accounts: self.accounts.clone(),
        };
        fs::write(&config_path, config.render()).expect("writing the daemon config");

        // The daemon gets a cgroup of its own so that "nothing is left behind" can be checked
        // by looking at it, and so that Drop can kill anything it leaves.
        let cgroup = match &self.parent_cgroup {
            Some(parent) => CgroupGuard::at(&format!("{parent}/warden-daemon")),
            None => CgroupGuard::new("daemon"),
        };
        let log_path = dir.path().join("daemon.log");
        let stdout = File::create(dir.path().join("daemon.stdout")).expect("creating stdout file");
        let stderr = File::create(&log_path).expect("creating the daemon log file");
        let child = Command::new("sh")
            .args(["-c", r#"echo $$ > "$0" && exec "$@""#])
            .arg(cgroup.procs_file())
            .arg(&self.e2e.warden_bin)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("WARDEN_LOG", &self.log_filter)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawning warden run");

        let mut daemon = Daemon {
            e2e: self.e2e,
            child,
            exit: None,
            config_path,
            state_dir,
            log_path,
            listen_port,
            cgroup: Some(cgroup),
            dir,
        };
        daemon.wait_until_ready();
        daemon.write_trust_bundle();
        daemon
    }
}

/// A running `warden run`. Dropping it stops it and removes its cgroup and files.
#[derive(Debug)]
pub struct Daemon {
    e2e: E2e,
    child: Child,
    exit: Option<ExitStatus>,
    config_path: PathBuf,
    state_dir: PathBuf,
    log_path: PathBuf,
    listen_port: u16,
    cgroup: Option<CgroupGuard>,
    dir: TempDir,
}

impl Daemon {
    pub fn builder(e2e: &E2e) -> DaemonBuilder {
        DaemonBuilder {
            e2e: e2e.clone(),
            listen_port: None,
            intercept_ports: vec![443],
            intercept_hosts: vec!["api.openai.com".to_owned()],
            select_cgroups: Vec::new(),
            select_units: Vec::new(),
            overrides: Vec::new(),
            accounts: Vec::new(),
            parent_cgroup: None,
            log_filter: "info".to_owned(),
        }
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
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
        self.wait_for_log(
            &format!("an exchange from pid {pid}"),
            Duration::from_secs(10),
            |l| l.is("exchange") && l.pid() == Some(pid),
        )
    }

    /// Whether `warden run` is still running.
    pub fn is_running(&mut self) -> bool {
        self.exit.is_none() && matches!(self.child.try_wait(), Ok(None))
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
        // SAFETY: kill has no memory preconditions; the pid is our unreaped child, so it cannot
        // have been reused.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
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

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM);
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "--- warden daemon log ({}) ---\n{}\n--- end of daemon log ---",
                self.log_path.display(),
                tail.join("\n")
            );
        }
        // Drop the cgroup (killing anything the daemon left) before the tempdir goes.
        self.cgroup.take();
    }
}
