//! Shared plumbing for xtask commands: repository paths, PATH, root check and child processes.

use std::env;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The workspace root (xtask lives one level below it).
pub fn repo_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

/// Cargo's target directory for this workspace, honouring CARGO_TARGET_DIR.
pub fn target_dir() -> Result<PathBuf> {
    let root = repo_root()?;
    Ok(match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    })
}

/// The cargo that runs us (set by `cargo run`), so children use the same toolchain.
pub fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// `$CARGO_HOME/bin`, where rustup and `cargo install` put their binaries.
pub fn cargo_bin_dir() -> Result<PathBuf> {
    let home = match env::var_os("CARGO_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?)
            .join(".cargo"),
    };
    Ok(home.join("bin"))
}

/// Puts `$CARGO_HOME/bin` first on our PATH, so every child (aya-build in agent/build.rs above all)
/// finds the bpf-linker that setup checked.
pub fn put_cargo_bin_on_path() -> Result<()> {
    let bin = cargo_bin_dir()?;
    let current = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&current).next().as_deref() == Some(bin.as_path()) {
        return Ok(());
    }
    let rest = env::split_paths(&current).filter(|dir| dir != &bin);
    let joined = env::join_paths(std::iter::once(bin.clone()).chain(rest))
        .context("cannot build PATH with $CARGO_HOME/bin")?;
    // Single-threaded at this point (called first thing in main), so mutating the environment is sound.
    env::set_var("PATH", joined);
    Ok(())
}

/// The first executable file called `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Prints a phase header, so a long log shows where it is.
pub fn header(text: &str) {
    println!("==> {text}");
}

/// Renders a command for messages: program and arguments, lossily.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command with inherited stdio; fails unless it exits 0.
pub fn run_checked(cmd: &mut Command) -> Result<()> {
    let shown = describe(cmd);
    println!("    $ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its stdout; fails (with its stderr) unless it exits 0.
pub fn capture(cmd: &mut Command) -> Result<String> {
    let shown = describe(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !output.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{shown}` printed non-UTF-8 output"))
}

/// Whether a probe command starts and exits 0; its output is discarded.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}
