//! How to start a daemon: the config it gets, the cgroup it runs in, and `warden run` itself.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{config, Account, Daemon, UpstreamOverride};
use crate::bpffs::BpfFs;
use crate::cgroup::CgroupGuard;
use crate::env::E2e;
use crate::fake_upstream::FakeUpstream;
use crate::net;
use crate::tmpfs::Tmpfs;

/// How to start a daemon. Defaults: a free listen port, intercept port 443 (only), intercepted host
/// `api.openai.com`, nothing selected, no overrides, log level info, and an empty policy directory
/// of its own (so that the machine's `/etc/warden/policies` never applies to a test).
#[derive(Debug, Clone)]
pub struct DaemonBuilder {
    e2e: E2e,
    listen_port: Option<u16>,
    intercept_ports: config::InterceptPorts,
    /// `[proxy] tls_ports`; `None` leaves the daemon's default.
    tls_ports: Option<Vec<u16>>,
    intercept_hosts: Vec<String>,
    select_cgroups: Vec<String>,
    select_units: Vec<String>,
    overrides: Vec<UpstreamOverride>,
    accounts: Vec<Account>,
    parent_cgroup: Option<String>,
    log_filter: String,
    /// File name and TOML text of each policy file the daemon starts with.
    policy_files: Vec<(String, String)>,
    /// File name and target of each symlink in the policy directory the daemon starts with.
    policy_links: Vec<(String, PathBuf)>,
    /// `[policy] max_inspect_bytes`; `None` leaves the daemon's default.
    max_inspect_bytes: Option<u64>,
    /// `[proxy] fail_mode`: "closed" (Warden's default) or "open".
    fail_mode: &'static str,
    /// Runs the daemon as PID 1 of a pid namespace of its own (`unshare --pid`).
    own_pid_namespace: bool,
    notify_socket: Option<PathBuf>,
    watchdog_usec: Option<u64>,
    /// Serve `/metrics` on a free loopback port; off by default.
    metrics: bool,
    /// Leave `[policy] dir` out of the config (the daemon's built-in default applies).
    unnamed_policy_dir: bool,
    /// TOML appended to the rendered config as is (tables the renderer does not model).
    extra_config: String,
    /// Environment variables the daemon gets (e.g. `CREDENTIALS_DIRECTORY`).
    env: Vec<(OsString, OsString)>,
    /// Put `state_dir` (and so the audit store) on a tmpfs of this many bytes.
    state_tmpfs_bytes: Option<u64>,
    /// A directory whose files are copied into `state_dir` before the daemon starts.
    seed_state: Option<PathBuf>,
}

impl DaemonBuilder {
    pub(super) fn new(e2e: &E2e) -> Self {
        Self {
            e2e: e2e.clone(),
            listen_port: None,
            intercept_ports: config::InterceptPorts::List(vec![443]),
            tls_ports: None,
            intercept_hosts: vec!["api.openai.com".to_owned()],
            select_cgroups: Vec::new(),
            select_units: Vec::new(),
            overrides: Vec::new(),
            accounts: Vec::new(),
            parent_cgroup: None,
            log_filter: "info".to_owned(),
            policy_files: Vec::new(),
            policy_links: Vec::new(),
            max_inspect_bytes: None,
            fail_mode: "closed",
            own_pid_namespace: false,
            notify_socket: None,
            watchdog_usec: None,
            metrics: false,
            unnamed_policy_dir: false,
            extra_config: String::new(),
            env: Vec::new(),
            state_tmpfs_bytes: None,
            seed_state: None,
        }
    }

    /// Starts the daemon with a copy of the files in `dir` (e.g. an audit store written beforehand,
    /// with its WAL) in its `state_dir`; SQLite's `-shm` index is rebuilt, so it is not copied.
    pub fn seed_state_dir(mut self, dir: &Path) -> Self {
        self.seed_state = Some(dir.to_owned());
        self
    }

    /// Puts `state_dir`, the audit store's directory, on a tmpfs of `size_bytes` (a disk a test
    /// can fill: [`Daemon::state_tmpfs`]); unmounted when the daemon guard drops.
    pub fn state_dir_on_tmpfs(mut self, size_bytes: u64) -> Self {
        self.state_tmpfs_bytes = Some(size_bytes);
        self
    }

    /// Leaves `[policy] dir` out of the config, so that the daemon uses its built-in default
    /// (`/etc/warden/policies`, which no config names and which may be absent).
    pub fn unnamed_policy_dir(mut self) -> Self {
        self.unnamed_policy_dir = true;
        self
    }

    /// `[proxy] fail_mode = "open"`: the programs detach when the daemon exits.
    pub fn fail_open(mut self) -> Self {
        self.fail_mode = "open";
        self
    }

    /// Gives the daemon `NOTIFY_SOCKET=path`, as systemd does for a `Type=notify` unit.
    pub fn notify_socket(mut self, path: &Path) -> Self {
        self.notify_socket = Some(path.to_path_buf());
        self
    }

    /// Gives the daemon `WATCHDOG_USEC` (and `WATCHDOG_PID`, its own pid), as `WatchdogSec=` does.
    pub fn watchdog_usec(mut self, usec: u64) -> Self {
        self.watchdog_usec = Some(usec);
        self
    }

    /// Runs `warden run` as PID 1 of a new pid namespace (with its own /proc), as in a container
    /// without host PID.
    pub fn in_own_pid_namespace(mut self) -> Self {
        self.own_pid_namespace = true;
        self
    }

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

    /// `intercept_ports = "all"`: every TCP connect of a selected cgroup comes to Warden.
    pub fn intercept_all_ports(mut self) -> Self {
        self.intercept_ports = config::InterceptPorts::ALL;
        self
    }

    /// `[proxy] tls_ports`: the redirected ports where only TLS is accepted.
    pub fn tls_ports(mut self, ports: &[u16]) -> Self {
        self.tls_ports = Some(ports.to_vec());
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

    /// Puts a policy file named `name` (e.g. `models.toml`) holding `toml_text` in the daemon's
    /// policy directory (`[policy] dir`) before it starts.
    pub fn policy_file(mut self, name: &str, toml_text: &str) -> Self {
        self.policy_files
            .push((name.to_owned(), toml_text.to_owned()));
        self
    }

    /// Puts a symlink named `name` to `target` (a policy file kept elsewhere, as configuration
    /// tools deploy them) in the daemon's policy directory before it starts.
    pub fn policy_link(mut self, name: &str, target: &Path) -> Self {
        self.policy_links
            .push((name.to_owned(), target.to_path_buf()));
        self
    }

    /// `[policy] max_inspect_bytes`: the largest body the policy reads (default: the daemon's).
    pub fn max_inspect_bytes(mut self, bytes: u64) -> Self {
        self.max_inspect_bytes = Some(bytes);
        self
    }

    /// Serves `/metrics` on 127.0.0.1 at a free port (`[metrics] listen`; see
    /// [`Daemon::metrics_url`]). Without it the daemon's metrics are off.
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Appends `toml_text` (whole tables, e.g. `[[credential]]`) to the daemon's config.
    pub fn extra_config(mut self, toml_text: &str) -> Self {
        self.extra_config.push_str(toml_text);
        self.extra_config.push('\n');
        self
    }

    /// Sets an environment variable for `warden run` (its environment is otherwise cleared).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Writes the config, starts `warden run`, and waits for "warden ready".
    pub fn start(self) -> Daemon {
        let dir = tempfile::tempdir().expect("creating the daemon's tempdir");
        let state_dir = dir.path().join("state");
        let config_path = dir.path().join("warden.toml");
        let listen_port = self.listen_port.unwrap_or_else(net::free_dual_stack_port);
        // Pins go to a bpffs of this daemon's own, never the host's /sys/fs/bpf: unmounting it
        // (on Drop) releases them, which detaches programs a fail-closed daemon left attached.
        let bpffs = BpfFs::mount(&dir.path().join("bpffs"));
        let pin_dir = bpffs.path().join("warden");
        let metrics_port = self.metrics.then(net::free_dual_stack_port);
        let policy_dir = dir.path().join("policies");
        fs::create_dir(&policy_dir).expect("creating the daemon's policy directory");
        for (name, text) in &self.policy_files {
            fs::write(policy_dir.join(name), text)
                .unwrap_or_else(|e| panic!("writing policy file {name}: {e}"));
        }
        for (name, target) in &self.policy_links {
            std::os::unix::fs::symlink(target, policy_dir.join(name))
                .unwrap_or_else(|e| panic!("linking policy file {name}: {e}"));
        }
        let config = config::ConfigFile {
            state_dir: state_dir.clone(),
            proxy: config::Proxy {
                listen_port,
                intercept_ports: self.intercept_ports.clone(),
                tls_ports: self.tls_ports.clone(),
                intercept_hosts: self.intercept_hosts.clone(),
                resolve_intercepted_hosts: false,
                fail_mode: self.fail_mode,
                pin_dir: pin_dir.clone(),
            },
            select: config::Select {
                cgroups: self.select_cgroups.clone(),
                units: self.select_units.clone(),
            },
            upstream: (!self.overrides.is_empty()).then(|| config::Upstream {
                overrides: self.overrides.clone(),
            }),
            accounts: self.accounts.clone(),
            policy: config::PolicySection {
                dir: (!self.unnamed_policy_dir).then(|| policy_dir.clone()),
                max_inspect_bytes: self.max_inspect_bytes,
            },
            metrics: config::MetricsSection {
                listen: metrics_port.map_or_else(String::new, |port| format!("127.0.0.1:{port}")),
            },
        };
        let text = format!("{}\n{}", config.render(), self.extra_config);
        fs::write(&config_path, text).expect("writing the daemon config");

        // The daemon gets a cgroup of its own so that "nothing is left behind" can be checked
        // by looking at it, and so that Drop can kill anything it leaves.
        let cgroup = match &self.parent_cgroup {
            Some(parent) => CgroupGuard::at(&format!("{parent}/warden-daemon")),
            None => CgroupGuard::new("daemon"),
        };
        let log_path = dir.path().join("daemon.log");
        let launch = Launch {
            log_filter: self.log_filter.clone(),
            own_pid_namespace: self.own_pid_namespace,
            notify_socket: self.notify_socket.clone(),
            watchdog_usec: self.watchdog_usec,
            env: self.env.clone(),
        };
        let state_tmpfs = (self.state_tmpfs_bytes).map(|size| Tmpfs::mount(&state_dir, size));
        if let Some(seed) = &self.seed_state {
            seed_state_dir(seed, &state_dir);
        }
        let child = spawn_run(&self.e2e, &config_path, &launch, &cgroup, dir.path());

        let mut daemon = Daemon {
            e2e: self.e2e,
            child,
            exit: None,
            config_path,
            state_dir,
            policy_dir,
            log_path,
            launch,
            restarts: 0,
            listen_port,
            metrics_port,
            cgroup: Some(cgroup),
            pin_dir,
            bpffs: Some(bpffs),
            state_tmpfs,
            dir,
        };
        daemon.wait_until_ready();
        daemon.write_trust_bundle();
        daemon
    }
}

/// How `warden run` is started, the same way at every restart.
#[derive(Debug, Clone)]
pub(super) struct Launch {
    pub log_filter: String,
    pub own_pid_namespace: bool,
    /// sd_notify's `NOTIFY_SOCKET`, and `WATCHDOG_USEC` (with `WATCHDOG_PID` set to the daemon's
    /// own pid, as systemd does).
    pub notify_socket: Option<PathBuf>,
    pub watchdog_usec: Option<u64>,
    pub env: Vec<(OsString, OsString)>,
}

/// Starts `warden run --config CONFIG` in `cgroup`, its stdout in `dir/daemon.stdout` and its
/// (JSON) log in `dir/daemon.log`, both created afresh.
pub(super) fn spawn_run(
    e2e: &E2e,
    config_path: &Path,
    launch: &Launch,
    cgroup: &CgroupGuard,
    dir: &Path,
) -> Child {
    let stdout = File::create(dir.join("daemon.stdout")).expect("creating stdout file");
    let stderr = File::create(dir.join("daemon.log")).expect("creating the daemon log file");
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            r#"echo $$ > "$0" && export WATCHDOG_PID=$$ && exec "$@""#,
        ])
        .arg(cgroup.procs_file());
    if launch.own_pid_namespace {
        // unshare stays the parent: a signal that ends it is passed on to warden (PID 1 inside).
        command.args([
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child=SIGTERM",
            "--",
        ]);
    }
    command
        .arg(&e2e.warden_bin)
        .arg("run")
        .arg("--config")
        .arg(config_path)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .env("WARDEN_LOG", &launch.log_filter)
        .env("RUST_BACKTRACE", "1")
        .envs(
            launch
                .notify_socket
                .iter()
                .map(|p| ("NOTIFY_SOCKET", p.as_os_str())),
        )
        .envs(
            launch
                .watchdog_usec
                .iter()
                .map(|usec| ("WATCHDOG_USEC", OsString::from(usec.to_string()))),
        )
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawning warden run")
}

/// Copies the regular files of `seed` (but SQLite's `-shm`) into `state_dir`, private as the
/// daemon keeps it.
fn seed_state_dir(seed: &Path, state_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(state_dir).expect("creating the state directory");
    fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700))
        .expect("making the state directory private");
    for entry in fs::read_dir(seed).expect("reading the seed directory") {
        let entry = entry.expect("a seed directory entry");
        let name = entry.file_name();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !name.to_string_lossy().ends_with("-shm") {
            fs::copy(entry.path(), state_dir.join(&name))
                .unwrap_or_else(|e| panic!("seeding {}: {e}", name.to_string_lossy()));
        }
    }
}
