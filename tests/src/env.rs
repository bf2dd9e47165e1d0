//! Decides whether a test can run here: root, cgroup2, eBPF, tools, the warden binary; skips or fails under CI.

use std::path::{Path, PathBuf};

use crate::{bpf, cgroup};

/// What an end-to-end test needs from its environment.
#[derive(Debug, Clone)]
pub struct E2e {
    /// Absolute path of the built `warden` binary (`WARDEN_BIN`).
    pub warden_bin: PathBuf,
}

/// Under `CI=true` a test that cannot run is a failure, never a silent skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Panics under CI, otherwise prints why the test is skipped. Always returns `None`.
fn skip<T>(why: &str) -> Option<T> {
    if in_ci() {
        panic!("CI=true and this test cannot run: {why}");
    }
    eprintln!("skipping: {why}");
    None
}

/// Root and a cgroup2 mount: enough for the harness self-tests that don't need Warden.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return skip::<()>("not running as root").is_some();
    }
    if cgroup::cgroup2_mount().is_none() {
        return skip::<()>("no cgroup2 mount in /proc/self/mountinfo").is_some();
    }
    true
}

/// Root, cgroup2, a usable bpf(2) and `WARDEN_BIN`: everything an end-to-end test needs.
///
/// Use as `let Some(e2e) = require_kernel() else { return };`.
pub fn require_kernel() -> Option<E2e> {
    if !require_root() {
        return None;
    }
    if let Err(why) = bpf::check_usable() {
        return skip(&format!("eBPF is not usable here: {why}"));
    }
    warden_bin()
}

/// Root, `WARDEN_BIN` and these programs on PATH: what a test of `warden install --root` needs
/// (no eBPF).
pub fn require_root_and_tools(tools: &[&str]) -> Option<E2e> {
    if !require_root() {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in tools {
        if !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()) {
            return skip(&format!(
                "{tool} is not on PATH (`cargo xtask test` installs it)"
            ));
        }
    }
    warden_bin()
}

/// Whether the system python (`/usr/bin/python3`) can import `module` (a Debian python3-* package).
pub fn require_system_python_module(module: &str) -> bool {
    let imported = std::process::Command::new(SYSTEM_PYTHON)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|out| out.status.success());
    imported
        || skip::<()>(&format!(
            "{SYSTEM_PYTHON} cannot import {module} (`cargo xtask test` installs it)"
        ))
        .is_some()
}

/// Debian's python, whose modules come from apt (the test venv is for the openai SDK).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn warden_bin() -> Option<E2e> {
    let Some(bin) = std::env::var_os("WARDEN_BIN") else {
        return skip("WARDEN_BIN is not set (run the suite through `cargo xtask test`)");
    };
    let warden_bin = PathBuf::from(bin);
    if !warden_bin.is_absolute() || !warden_bin.is_file() {
        return skip(&format!(
            "WARDEN_BIN={} is not an absolute path to a file",
            warden_bin.display()
        ));
    }
    Some(E2e { warden_bin })
}

/// The venv python with the official `openai` SDK (`WARDEN_TEST_PYTHON`).
pub fn require_python() -> Option<PathBuf> {
    let Some(python) = std::env::var_os("WARDEN_TEST_PYTHON") else {
        return skip("WARDEN_TEST_PYTHON is not set (run the suite through `cargo xtask test`)");
    };
    let python = PathBuf::from(python);
    if !Path::new(&python).is_file() {
        return skip(&format!(
            "WARDEN_TEST_PYTHON={} does not exist",
            python.display()
        ));
    }
    Some(python)
}

/// `promtool` (Debian package `prometheus`, installed by `cargo xtask test`).
pub fn require_promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(promtool) => Some(promtool),
        None => skip(
            "promtool is not on PATH (Debian package `prometheus`; `cargo xtask test` installs it)",
        ),
    }
}
