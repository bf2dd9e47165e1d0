//! `warden exec -- CMD...`: run a command in a fresh cgroup that the running daemon intercepts.
//!
//! The cgroup (`/warden/exec-PID` under the cgroup2 mount) is created here, selected through the
//! admin socket before the command starts, and removed when it ends, together with anything the
//! command left running in it. The exit code is the command's (128+N when killed by signal N).
//! The command gets `NODE_EXTRA_CA_CERTS` (Warden's CA, for Node.js) unless it is already set.
use std::{
    ffi::{CString, OsString},
    fs,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;

use super::Cli;
use crate::{
    admin::{client, AdminRequest},
    cgroupfs::CgroupFs,
    ebpf::selection::{EXEC_CGROUP_PARENT, EXEC_CGROUP_PREFIX},
};

/// The variable that adds CAs to Node.js's bundled roots.
const NODE_EXTRA_CA_CERTS: &str = "NODE_EXTRA_CA_CERTS";

/// How long to wait for leftover processes to die before giving up on removing the cgroup.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    /// The command and its arguments (put `--` before it).
    #[arg(required = true, num_args = 1.., value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// The child's pid, for the signal handler that forwards SIGTERM/SIGINT/SIGHUP to it.
static CHILD_PID: AtomicI32 = AtomicI32::new(0);

pub fn run(cli: &Cli, args: &ExecArgs) -> anyhow::Result<u8> {
    let config = cli.load_config()?;
    let socket = config.admin_socket_path();
    let cgroupfs = CgroupFs::discover()?;
    let cgroup = ExecCgroup::create(&cgroupfs)?;

    client::call(
        &socket,
        &AdminRequest::SelectExec {
            path: cgroup.path.clone(),
        },
    )
    .context("registering the command's cgroup with the daemon")?;
    let ca_file = crate::install::trust::client_ca_file(&config);
    let status = spawn_in_cgroup(&cgroup, &args.command, &ca_file);
    if let Err(error) = client::call(
        &socket,
        &AdminRequest::UnselectExec {
            path: cgroup.path.clone(),
        },
    ) {
        eprintln!("warden: unregistering {}: {error}", cgroup.path);
    }
    let status = status?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128 + signal as u8,
        (None, None) => 1,
    })
}

fn spawn_in_cgroup(
    cgroup: &ExecCgroup,
    command: &[OsString],
    ca_file: &std::path::Path,
) -> anyhow::Result<std::process::ExitStatus> {
    let procs = CString::new(
        cgroup
            .dir
            .join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .context("cgroup path contains a NUL byte")?;
    // clap guarantees at least one value (`required`, `num_args = 1..`).
    let (program, args) = command.split_first().context("no command given")?;
    let mut child = Command::new(program);
    child.args(args);
    // Node.js trusts only its bundled roots; other clients read the system store. A value the
    // user set is theirs to keep.
    if std::env::var_os(NODE_EXTRA_CA_CERTS).is_none() {
        child.env(NODE_EXTRA_CA_CERTS, ca_file);
    }
    // SAFETY: between fork and exec only async-signal-safe calls are made (open, write, close), on
    // a path prepared before the fork. Writing "0" moves the calling process into the cgroup, so
    // the command starts already selected.
    unsafe {
        child.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            let error = std::io::Error::last_os_error();
            libc::close(fd);
            if written != 1 {
                return Err(error);
            }
            Ok(())
        });
    }
    // Installed before the spawn, so that no signal in between kills this process and leaves the
    // cgroup behind (one arriving before the child exists is not forwarded).
    forward_signals();
    let mut child = child
        .spawn()
        .with_context(|| format!("starting {}", program.to_string_lossy()))?;
    CHILD_PID.store(child.id() as i32, Ordering::SeqCst);
    let status = child.wait().context("waiting for the command")?;
    CHILD_PID.store(0, Ordering::SeqCst);
    Ok(status)
}

extern "C" fn forward_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
    // A terminal's Ctrl-C or Ctrl-\ (si_code SI_KERNEL) reaches the whole foreground process group,
    // the child included: forwarding it would deliver it twice.
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    if unsafe { (*info).si_code } == libc::SI_KERNEL {
        return;
    }
    let pid = CHILD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

fn forward_signals() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler only reads
        // an atomic and the siginfo and calls kill, all async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The command's cgroup; removed on drop, killing whatever is still in it.
struct ExecCgroup {
    path: String,
    dir: PathBuf,
    /// The shared parent, removed too when this was its last command.
    parent: PathBuf,
}

impl ExecCgroup {
    fn create(cgroupfs: &CgroupFs) -> anyhow::Result<ExecCgroup> {
        let parent = cgroupfs.dir(EXEC_CGROUP_PARENT)?;
        let path = format!(
            "{EXEC_CGROUP_PARENT}/{EXEC_CGROUP_PREFIX}{}",
            std::process::id()
        );
        let dir = cgroupfs.dir(&path)?;
        // Another `warden exec` may remove the shared parent between our two mkdirs when its
        // command ends: retry on NotFound.
        for _ in 0..3 {
            fs::create_dir_all(&parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(ExecCgroup { path, dir, parent }),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => bail!(
                    "creating cgroup {}: {error} (warden exec needs root)",
                    dir.display()
                ),
            }
        }
        bail!(
            "creating cgroup {}: its parent keeps disappearing",
            dir.display()
        )
    }
}

impl Drop for ExecCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + CLEANUP_TIMEOUT;
        while fs::remove_dir(&self.dir).is_err() {
            if Instant::now() > deadline {
                eprintln!(
                    "warden: could not remove cgroup {}: processes remain in it",
                    self.dir.display()
                );
                return;
            }
            kill_all(&self.dir);
            std::thread::sleep(Duration::from_millis(20));
        }
        // Fails while other commands still run under it, which is what should happen then.
        let _ = fs::remove_dir(&self.parent);
    }
}

/// Kills every process left in the cgroup (cgroup.kill where the kernel has it).
fn kill_all(dir: &std::path::Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
