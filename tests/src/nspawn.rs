//! Boots the host's own systemd in a throwaway systemd-nspawn container whose writes never reach
//! the host, runs commands in it, and powers it off on Drop, leaving no process, mount or cgroup.
//!
//! How the container is made, and what was found on these machines (Debian 12's systemd 252,
//! kernel 6.18, cgroup v2 mounted hybrid at /sys/fs/cgroup/unified):
//!
//! - **Root filesystem.** `systemd-nspawn -D / --volatile=overlay` is refused ("Spawning container
//!   on root directory is not supported"). So [`ContainerBuilder::boot`] starts nspawn in a private
//!   mount namespace (`unshare -m --propagation private`), bind-mounts `/` (not recursively) on a
//!   directory of its own there, and boots that with `--volatile=overlay`: the host's root
//!   filesystem is the read-only lower layer, a tmpfs the upper one. Every write, to /etc, /usr,
//!   /usr/local, /var, lands in that tmpfs and is gone at power-off; the bind dies with the
//!   namespace. Only the root filesystem is seen this way: nspawn mounts its own /proc, /sys,
//!   /dev, /run and /tmp, and other host mounts are not in the container.
//! - **/usr/local** is writable inside (so are /etc and the trust store); nothing reaches the host.
//! - **bpffs** is not mounted at /sys/fs/bpf inside (systemd does not mount it in a container,
//!   and /sys is read-only there), but `mount -t bpf bpf /sys/fs/bpf` inside works: the container
//!   keeps CAP_SYS_ADMIN in its own mount namespace, so the bpffs is private to it and vanishes
//!   with it. [`Container::mount_bpffs`] does that.
//! - **cgroup2**: the container sees the host's layout, hybrid here (cgroup2 at
//!   /sys/fs/cgroup/unified, read-write, with v1 controllers read-only beside it). Its cgroup
//!   namespace is rooted at `<guard cgroup>/payload`, where its systemd makes init.scope and
//!   system.slice; nspawn itself sits in `<guard cgroup>/supervisor`. In the hybrid layout nspawn
//!   mirrors both in the v1 `name=systemd` hierarchy and removes neither: Drop does.
//! - **PID namespace**: always its own (nspawn has no host-pid option); PID 1 is systemd.
//! - **eBPF** needs `--capability=CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON` and the `bpf` system call
//!   allowed (`--system-call-filter=bpf`); nspawn's default capability set already holds
//!   CAP_SYS_ADMIN, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH. See [`EBPF_CAPABILITIES`].
//! - **Network**: the host's (no `--private-network`), so loopback servers of a test are reachable.
//! - **Boot target**: [`BOOT_TARGET`], bound in read-only, wants sysinit and sockets only, so the
//!   host's enabled services (a database, getty, apt timers) do not start in the container.
//!
//! Commands run inside through `nsenter --all` ([`Container::exec`]) or as transient units of the
//! container's systemd (`systemd-run --wait --pipe`, [`Container::run_unit`]). Each has a
//! deadline. Entered processes are put in [`EXEC_CGROUP`] first, a cgroup of the container's own
//! (`<guard cgroup>/payload/warden-test-exec` on the host), so they see a cgroup path inside the
//! container's cgroup namespace and the guard's cgroup holds everything the container ever ran.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cgroup::CgroupGuard;
use crate::client::ClientOutput;
use crate::wait;

mod bounded;
mod residue;

pub use bounded::run_bounded;
pub use residue::Footprint;

/// What eBPF inside the container needs beyond nspawn's defaults.
pub const EBPF_CAPABILITIES: &str = "CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON";

/// The unit the container boots into: sysinit and sockets, none of the host's enabled services.
pub const BOOT_TARGET: &str = "warden-test.target";
const BOOT_TARGET_UNIT: &str = "[Unit]
Description=Warden test container
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
AllowIsolate=yes
";

const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a command inside may run unless the caller says otherwise.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The cgroup (as the container sees it) that [`Container::exec`] runs commands in.
pub const EXEC_CGROUP: &str = "/warden-test-exec";

static NEXT_CONTAINER: AtomicU32 = AtomicU32::new(0);

/// Puts the shell into the cgroup whose `cgroup.procs` is `$0`, then becomes the rest of the line.
const JOIN_CGROUP: &str = r#"echo $$ > "$0" && exec "$@""#;
/// Inside `unshare -m --propagation private`: binds `/` on `$0` (a mount only this namespace
/// sees), then becomes systemd-nspawn.
const BIND_ROOT: &str = r#"mount --bind / "$0" && exec "$@""#;

/// How to boot a container; [`ContainerBuilder::boot`] starts it.
#[derive(Debug, Clone)]
pub struct ContainerBuilder {
    hint: String,
    binds: Vec<OsString>,
    extra_args: Vec<OsString>,
    boot_timeout: Duration,
}

impl ContainerBuilder {
    /// Makes host path `source` visible, writable, at `target` inside.
    pub fn bind(mut self, source: &Path, target: &str) -> Self {
        self.binds.push(bind_arg("--bind=", source, target));
        self
    }

    /// Makes host path `source` visible, read-only, at `target` inside.
    pub fn bind_ro(mut self, source: &Path, target: &str) -> Self {
        self.binds.push(bind_arg("--bind-ro=", source, target));
        self
    }

    /// Passes one more option to systemd-nspawn (before the kernel command line).
    pub fn nspawn_arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.extra_args.push(arg.as_ref().to_owned());
        self
    }

    pub fn boot_timeout(mut self, timeout: Duration) -> Self {
        self.boot_timeout = timeout;
        self
    }

    /// Boots the container and waits until its systemd reports `running` (or `degraded`: the
    /// caller decides, see [`Container::system_state`]). Panics, with the console output, if it
    /// does not get there within the boot timeout.
    pub fn boot(self) -> Container {
        let n = NEXT_CONTAINER.fetch_add(1, Ordering::Relaxed);
        let machine = format!("wt-{}-{}-{n}", self.hint, std::process::id());
        let dir = tempfile::tempdir().expect("creating the container's tempdir");
        let root = dir.path().join("root");
        fs::create_dir(&root).expect("creating the root mount point");
        let target_file = dir.path().join(BOOT_TARGET);
        fs::write(&target_file, BOOT_TARGET_UNIT).expect("writing the boot target");
        let console = dir.path().join("console.log");
        let cgroup = CgroupGuard::new(&format!("nspawn-{}", self.hint));

        let mut argv: Vec<OsString> = vec!["sh".into(), "-c".into(), JOIN_CGROUP.into()];
        argv.push(cgroup.procs_file().into());
        argv.extend(["unshare", "-m", "--propagation", "private", "--"].map(OsString::from));
        argv.extend(["sh", "-c", BIND_ROOT].map(OsString::from));
        argv.push(root.clone().into());
        argv.extend(nspawn_args(&machine, &root, &target_file));
        argv.extend(self.binds.iter().cloned());
        argv.extend(self.extra_args.iter().cloned());
        argv.extend(kernel_command_line());

        let console_file = fs::File::create(&console).expect("creating the console log");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(console_file.try_clone().expect("cloning the console log"))
            .stderr(console_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting systemd-nspawn: {e}"));
        let mut container = Container {
            machine,
            nspawn: child,
            leader: 0,
            console,
            exec_cgroup: None,
            cgroup: Some(cgroup),
            dir: Some(dir),
        };
        container.leader = container.wait_for_leader(self.boot_timeout);
        // The container's cgroup namespace is rooted at payload/, which nspawn made before it
        // started the leader.
        let exec_path = format!("{}/payload{EXEC_CGROUP}", container.cgroup().path());
        container.exec_cgroup = Some(CgroupGuard::at(&exec_path));
        container.wait_until_booted(self.boot_timeout);
        container
    }
}

/// A booted container. Dropping it powers it off and removes everything it left.
#[derive(Debug)]
pub struct Container {
    machine: String,
    /// systemd-nspawn (the `sh`/`unshare` wrappers exec'd into it, so this is its pid).
    nspawn: Child,
    /// The container's PID 1 (systemd), as the host sees it.
    leader: u32,
    console: PathBuf,
    /// [`EXEC_CGROUP`]: where entered commands run. Dropped before `cgroup`.
    exec_cgroup: Option<CgroupGuard>,
    /// nspawn runs here (`--keep-unit`); the container's cgroups are below it.
    cgroup: Option<CgroupGuard>,
    dir: Option<TempDir>,
}

impl Container {
    /// A container named after `hint` (short: it becomes part of the hostname), with the
    /// capabilities and system call eBPF needs.
    pub fn builder(hint: &str) -> ContainerBuilder {
        ContainerBuilder {
            hint: hint.to_owned(),
            binds: Vec::new(),
            extra_args: vec![
                format!("--capability={EBPF_CAPABILITIES}").into(),
                "--system-call-filter=bpf".into(),
            ],
            boot_timeout: BOOT_TIMEOUT,
        }
    }

    /// The machine name (also the container's hostname).
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// The container's PID 1 as the host sees it.
    pub fn leader_pid(&self) -> u32 {
        self.leader
    }

    /// systemd-nspawn's pid.
    pub fn nspawn_pid(&self) -> u32 {
        self.nspawn.id()
    }

    /// The cgroup nspawn and everything in the container run below.
    pub fn cgroup(&self) -> &CgroupGuard {
        self.cgroup
            .as_ref()
            .expect("the cgroup lives as long as the container")
    }

    /// What the console printed so far (systemd's boot and shutdown messages).
    pub fn console(&self) -> String {
        fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Runs `command` inside, in every namespace of the container and in [`EXEC_CGROUP`], for at
    /// most `timeout`. A daemon belongs in a unit instead ([`Container::run_unit`]).
    pub fn exec_with_timeout<I, S>(&self, command: I, timeout: Duration) -> ClientOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let exec_cgroup = self
            .exec_cgroup
            .as_ref()
            .expect("the exec cgroup lives as long as the container");
        let mut argv: Vec<OsString> = vec!["sh".into(), "-c".into(), JOIN_CGROUP.into()];
        argv.push(exec_cgroup.procs_file().into());
        argv.extend(["nsenter", "--target"].map(OsString::from));
        argv.push(self.leader.to_string().into());
        argv.extend(["--all", "--"].map(OsString::from));
        argv.extend(command.into_iter().map(|a| a.as_ref().to_owned()));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("HOME", "/root");
        run_bounded(cmd, timeout)
    }

    /// [`Container::exec_with_timeout`] with [`COMMAND_TIMEOUT`].
    pub fn exec<I, S>(&self, command: I) -> ClientOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.exec_with_timeout(command, COMMAND_TIMEOUT)
    }

    /// `sh -c SCRIPT` inside; panics, showing the output, unless it exits 0.
    pub fn sh(&self, script: &str) -> ClientOutput {
        let out = self.exec(["sh", "-c", script]);
        assert!(
            out.status.success(),
            "`{script}` failed in {}\n{out}",
            self.machine
        );
        out
    }

    /// Runs `command` as a transient service of the container's systemd (`systemd-run --wait
    /// --pipe`), so it runs in its own unit and cgroup; its output comes back through the pipe.
    pub fn run_unit<I, S>(&self, unit: &str, command: I) -> ClientOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut argv: Vec<OsString> = [
            "systemd-run",
            "--wait",
            "--pipe",
            "--quiet",
            "--collect",
            "--service-type=exec",
        ]
        .map(OsString::from)
        .to_vec();
        argv.push(format!("--unit={unit}").into());
        argv.push("--".into());
        argv.extend(command.into_iter().map(|a| a.as_ref().to_owned()));
        self.exec(argv)
    }

    /// `systemctl is-system-running`: "running", "degraded", "starting", ...
    pub fn system_state(&self) -> String {
        self.exec(["systemctl", "is-system-running"])
            .stdout
            .trim()
            .to_owned()
    }

    /// Mounts a bpffs of the container's own at /sys/fs/bpf (see the module doc).
    pub fn mount_bpffs(&self) {
        self.sh("mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf");
    }

    /// What must be gone once this container is dropped.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            processes: vec![self.nspawn.id(), self.leader],
            cgroup_dir: self.cgroup().dir().to_owned(),
            mirror_cgroup_dir: residue::v1_mirror(self.cgroup().path()),
            dir: self
                .dir
                .as_ref()
                .map(|d| d.path().to_owned())
                .unwrap_or_default(),
            propagate_dir: residue::propagate_dir(&self.machine),
        }
    }

    /// Finds the container's PID 1: nspawn's child in another pid namespace, once it is systemd
    /// (nspawn sets the namespaces up in that child before it execs systemd).
    fn wait_for_leader(&mut self, timeout: Duration) -> u32 {
        let nspawn = self.nspawn.id();
        let found = wait::within(timeout, || {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return Some(None);
            }
            residue::children_of(nspawn)
                .into_iter()
                .find(|&pid| {
                    residue::in_other_pid_namespace(pid) && residue::comm(pid) == "systemd"
                })
                .map(Some)
        });
        match found.flatten() {
            Some(pid) => pid,
            None => panic!(
                "systemd-nspawn ({}) booted no systemd within {timeout:?}\n{}",
                self.machine,
                self.console()
            ),
        }
    }

    /// Polls `systemctl is-system-running --wait` until systemd answers with its final state:
    /// before systemd listens on its private socket (PID 1 still being set up) the answer is
    /// "offline".
    fn wait_until_booted(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        let booted = wait::within(timeout, || {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let out = self.exec_with_timeout(
                ["systemctl", "is-system-running", "--wait"],
                remaining.max(Duration::from_secs(1)),
            );
            let state = out.stdout.trim().to_owned();
            last = Some(out);
            (state == "running" || state == "degraded").then_some(())
        });
        if booted.is_none() {
            let last = last.map(|out| out.to_string()).unwrap_or_default();
            panic!(
                "container {} did not finish booting within {timeout:?}\n{last}\n--- console ---\n{}",
                self.machine,
                self.console()
            );
        }
    }

    /// Asks systemd to power off (SIGRTMIN+4 to PID 1), waits for nspawn to exit, and kills
    /// everything if it does not in time.
    fn power_off(&mut self) {
        if let Ok(None) = self.nspawn.try_wait() {
            // SAFETY: kill has no memory preconditions; the leader is the container's systemd
            // while nspawn runs (it waits for it), so the pid cannot have been reused.
            unsafe { libc::kill(self.leader as libc::pid_t, libc::SIGRTMIN() + 4) };
            let exited = wait::within(POWEROFF_TIMEOUT, || self.nspawn.try_wait().ok().flatten());
            if exited.is_none() {
                eprintln!(
                    "container {} did not power off within {POWEROFF_TIMEOUT:?}; killing it",
                    self.machine
                );
                let _ = self.nspawn.kill();
                let _ = self.nspawn.wait();
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.power_off();
        let mirror = self
            .cgroup
            .as_ref()
            .and_then(|c| residue::v1_mirror(c.path()));
        // Kills and removes whatever is left in the cgroups (exec first: it is below).
        drop(self.exec_cgroup.take());
        drop(self.cgroup.take());
        let mut problems = Vec::new();
        if let Some(mirror) = mirror {
            if let Err(e) = residue::remove_v1_tree(&mirror) {
                problems.push(format!("removing {}: {e}", mirror.display()));
            }
        }
        if let Err(e) = residue::remove_propagate_dir(&self.machine) {
            problems.push(e);
        }
        drop(self.dir.take());
        if !problems.is_empty() {
            let message = format!(
                "cleaning up container {}: {}",
                self.machine,
                problems.join("; ")
            );
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

fn bind_arg(option: &str, source: &Path, target: &str) -> OsString {
    let mut arg = OsString::from(option);
    arg.push(source.as_os_str());
    arg.push(":");
    arg.push(target);
    arg
}

fn nspawn_args(machine: &str, root: &Path, boot_target: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["systemd-nspawn".into(), "--directory".into()];
    args.push(root.into());
    args.extend(
        [
            "--volatile=overlay",
            "--register=no",
            "--keep-unit",
            // The host may keep a journal under the same machine id: never link to it.
            "--link-journal=no",
            "--console=read-only",
        ]
        .map(OsString::from),
    );
    args.push(format!("--machine={machine}").into());
    args.push(bind_arg(
        "--bind-ro=",
        boot_target,
        &format!("/etc/systemd/system/{BOOT_TARGET}"),
    ));
    args.push("--boot".into());
    args
}

/// Arguments after the options: systemd's kernel command line inside the container. nspawn
/// wants them last, so builders add their options before.
fn kernel_command_line() -> Vec<OsString> {
    vec![
        "--".into(),
        "systemd.firstboot=off".into(),
        format!("systemd.unit={BOOT_TARGET}").into(),
    ]
}
