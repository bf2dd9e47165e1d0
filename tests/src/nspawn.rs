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
//! - **PID namespace**: always its own (nspawn has no host-pid option); PID 1 is systemd. The
//!   kernel's tgids are the host's: a program that records `bpf_get_current_pid_tgid` hands a
//!   daemon inside pids its /proc does not have (measured: Warden, with its pid-namespace check
//!   patched out, logged the exchange of a curl that had a pid near 60 inside as pid 2585,
//!   `process_exited: true`).
//! - **eBPF**: Warden's programs load and attach at the container's cgroup root once the `bpf`
//!   system call is allowed (`--system-call-filter=bpf`); without it bpf() fails with EPERM from
//!   nspawn's seccomp filter ("failed to create map `COUNTERS`: Operation not permitted"). No
//!   capability has to be added for that: nspawn's default set holds CAP_SYS_ADMIN (and
//!   CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH), which the kernel accepts for loading and attaching.
//!   CAP_SYS_ADMIN cannot be dropped: systemd does not boot without it ("Failed to mount API
//!   filesystems"). [`EBPF_CAPABILITIES`] is added anyway, so the container holds what a
//!   hardened warden.service grants.
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
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use tempfile::TempDir;

use crate::cgroup::CgroupGuard;
use crate::client::ClientOutput;
use crate::wait;

mod boot;
mod bounded;
mod residue;

pub use boot::ContainerBuilder;
pub use bounded::{run_bounded, run_until};
pub use residue::{v1_mirror, Footprint};

/// Added to nspawn's default capabilities: what a hardened warden.service grants (CAP_BPF,
/// CAP_NET_ADMIN) and CAP_PERFMON. (The default CAP_SYS_ADMIN alone already lets bpf() work.)
pub const EBPF_CAPABILITIES: &str = "CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON";

/// The unit the container boots into: sysinit and sockets, none of the host's enabled services.
pub const BOOT_TARGET: &str = "warden-test.target";

const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a command inside may run unless the caller says otherwise.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The cgroup (as the container sees it) that [`Container::exec`] runs commands in.
pub const EXEC_CGROUP: &str = "/warden-test-exec";

/// Puts the shell into the cgroup whose `cgroup.procs` is `$0`, then becomes the rest of the line.
const JOIN_CGROUP: &str = r#"echo $$ > "$0" && exec "$@""#;

/// A booted container. Dropping it powers it off and removes everything it left.
#[derive(Debug)]
pub struct Container {
    machine: String,
    /// systemd-nspawn (the `sh`/`unshare` wrappers exec'd into it, so this is its pid).
    nspawn: Child,
    /// The container's PID 1 (systemd), as the host sees it; 0 until it is found.
    leader: u32,
    console: PathBuf,
    /// [`EXEC_CGROUP`]: where entered commands run. Dropped before `cgroup`.
    exec_cgroup: Option<CgroupGuard>,
    /// nspawn runs here (`--keep-unit`); the container's cgroups are below it.
    cgroup: Option<CgroupGuard>,
    dir: Option<TempDir>,
}

impl Container {
    /// The machine name (the container's hostname is the host's: its systemd sets it from
    /// /etc/hostname, in a UTS namespace of its own).
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
        run_bounded(self.enter(command), timeout)
    }

    /// The command that runs `command` inside, in [`EXEC_CGROUP`].
    fn enter<I, S>(&self, command: I) -> Command
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
        cmd
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

    /// `systemd-run OPTIONS -- COMMAND` inside, e.g. `--unit=NAME`, `--slice=NAME.slice`,
    /// `--property=K=V`, `--setenv=K=V`; with `--wait --pipe` it returns the unit's output.
    pub fn systemd_run<I, S>(&self, options: &[&str], command: I) -> ClientOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut argv: Vec<OsString> = vec!["systemd-run".into()];
        argv.extend(options.iter().map(OsString::from));
        argv.push("--".into());
        argv.extend(command.into_iter().map(|a| a.as_ref().to_owned()));
        self.exec(argv)
    }

    /// Runs `command` as the transient service `unit` of the container's systemd and waits for
    /// it, so it runs in its own unit and cgroup; its output and exit code come back.
    pub fn run_unit<I, S>(&self, unit: &str, command: I) -> ClientOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let unit_option = format!("--unit={unit}");
        let options = [
            "--wait",
            "--pipe",
            "--quiet",
            "--collect",
            "--service-type=exec",
            unit_option.as_str(),
        ];
        self.systemd_run(&options, command)
    }

    /// What `unit` logged, message text only (`journalctl -u UNIT -o cat`).
    pub fn journal(&self, unit: &str) -> String {
        self.exec(["journalctl", "--no-pager", "-o", "cat", "-u", unit])
            .stdout
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

    /// Asks systemd to power off (SIGRTMIN+4 to PID 1), waits for nspawn to exit, and kills
    /// everything if it does not in time.
    fn power_off(&mut self) {
        if !matches!(self.nspawn.try_wait(), Ok(None)) {
            return;
        }
        // Before the leader is known (a boot that failed early) there is no PID 1 to ask, and
        // kill(0, ...) would signal our own process group.
        if self.leader != 0 {
            // SAFETY: kill has no memory preconditions; the leader is the container's systemd
            // while nspawn runs (it waits for it), so the pid cannot have been reused.
            unsafe { libc::kill(self.leader as libc::pid_t, libc::SIGRTMIN() + 4) };
            let exited = wait::within(POWEROFF_TIMEOUT, || self.nspawn.try_wait().ok().flatten());
            if exited.is_some() {
                return;
            }
            eprintln!(
                "container {} did not power off within {POWEROFF_TIMEOUT:?}; killing it",
                self.machine
            );
        }
        // The cgroup guards kill whatever nspawn leaves behind.
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
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
