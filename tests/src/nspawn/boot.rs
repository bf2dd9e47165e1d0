//! Boots a [`Container`]: the systemd-nspawn command line, the wrappers around it (its cgroup, a
//! private mount namespace with `/` bound for the overlay), and the waits for PID 1 and for boot.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{
    residue, run_until, Container, BOOT_TARGET, EBPF_CAPABILITIES, EXEC_CGROUP, JOIN_CGROUP,
};
use crate::cgroup::CgroupGuard;
use crate::wait;

const BOOT_TARGET_UNIT: &str = "[Unit]
Description=Warden test container
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
AllowIsolate=yes
";

const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

static NEXT_CONTAINER: AtomicU32 = AtomicU32::new(0);

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

impl Container {
    /// A container named after `hint` (short: it becomes part of the machine name), with the
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
    fn wait_until_booted(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        let booted = wait::within(timeout, || {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                last = Some(format!("systemd-nspawn exited ({status})"));
                return Some(false);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let is_running = self.enter(["systemctl", "is-system-running", "--wait"]);
            let (out, _) = run_until(is_running, remaining.max(Duration::from_secs(1)));
            let state = out.stdout.trim().to_owned();
            last = Some(out.to_string());
            (state == "running" || state == "degraded").then_some(true)
        });
        if booted != Some(true) {
            panic!(
                "container {} did not finish booting within {timeout:?}\n{}\n--- console ---\n{}",
                self.machine,
                last.unwrap_or_default(),
                self.console()
            );
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
    // The workspace (the warden binary, the venv, the Node and Go clients under target/) at its
    // own path: a checkout under /tmp or /run would otherwise be hidden by the tmpfs nspawn
    // mounts there.
    let workspace = workspace_root();
    args.push(bind_arg(
        "--bind-ro=",
        &workspace,
        &workspace.to_string_lossy(),
    ));
    args.push("--boot".into());
    args
}

/// The cargo workspace these tests belong to.
fn workspace_root() -> std::path::PathBuf {
    let tests_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_crate
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
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
