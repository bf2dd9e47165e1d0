//! Decides whether a test can run here: root, cgroup2, eBPF, tools, the warden binary, the real
//! clients and systemd-nspawn; skips or fails under CI.

use std::io::Write;
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

/// Names the file that every skipped test appends one line to (`cargo xtask test` sets it and
/// prints the count and the names after the run: cargo test hides a passing test's output).
pub const SKIP_LOG_VAR: &str = "WARDEN_TEST_SKIP_LOG";

/// Panics under CI, otherwise says loudly why the test is skipped and records it in the skip log.
/// Always returns `None`.
fn skip<T>(why: &str) -> Option<T> {
    if in_ci() {
        panic!("CI=true and this test cannot run: {why}");
    }
    let test = current_test_name();
    // Straight to fd 2: libtest captures `eprintln!` of passing tests, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    if let Some(log) = std::env::var_os(SKIP_LOG_VAR) {
        if let Err(error) = record_skip(Path::new(&log), &test, why) {
            panic!(
                "{test} is skipped ({why}) and cannot be recorded in {}: {error}",
                Path::new(&log).display()
            );
        }
    }
    None
}

/// `binary::test_path`: the test binary (without cargo's hash) and the test, which libtest names
/// the test's thread after.
fn current_test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
            _ => stem,
        })
        .unwrap_or_else(|| "?".to_owned());
    let thread = std::thread::current();
    format!("{binary}::{}", thread.name().unwrap_or("?"))
}

/// Appends `test<TAB>why` to the skip log with one write (O_APPEND keeps the lines of tests
/// that run in parallel, in threads and processes, whole).
pub fn record_skip(log: &Path, test: &str, why: &str) -> std::io::Result<()> {
    let line = format!("{test}\t{}\n", why.replace(['\n', '\t'], " "));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?
        .write_all(line.as_bytes())
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
    match find_on_path("promtool") {
        Some(promtool) => Some(promtool),
        None => skip(
            "promtool is not on PATH (Debian package `prometheus`; `cargo xtask test` installs it)",
        ),
    }
}

/// The e2e tests' Node: `node` and the node_modules holding the pinned official `openai` npm
/// package, which a client gets as `NODE_PATH`.
#[derive(Debug, Clone)]
pub struct NodeSdk {
    /// `WARDEN_TEST_NODE`.
    pub node: PathBuf,
    /// `WARDEN_TEST_NODE_MODULES`.
    pub modules: PathBuf,
}

/// node and the official `openai` npm package (`WARDEN_TEST_NODE`, `WARDEN_TEST_NODE_MODULES`).
pub fn require_node() -> Option<NodeSdk> {
    let node = require_path("WARDEN_TEST_NODE", "node")?;
    let modules = require_path("WARDEN_TEST_NODE_MODULES", "the openai npm package")?;
    if !modules.join("openai").is_dir() {
        return skip(&format!(
            "WARDEN_TEST_NODE_MODULES={} has no openai package",
            modules.display()
        ));
    }
    Some(NodeSdk { node, modules })
}

/// The Go client built from tests/clients/go with the host's go (`WARDEN_TEST_GO_CLIENT`).
pub fn require_go_client() -> Option<PathBuf> {
    require_path("WARDEN_TEST_GO_CLIENT", "the Go client")
}

/// The tools that boot systemd in a container and enter it: root, cgroup2, `systemd-nspawn`,
/// `nsenter` and `unshare`. Returns the path of `systemd-nspawn`.
pub fn require_nspawn() -> Option<PathBuf> {
    if !require_root() {
        return None;
    }
    for tool in ["nsenter", "unshare", "mount"] {
        if find_on_path(tool).is_none() {
            return skip(&format!("{tool} is not on PATH (util-linux)"));
        }
    }
    match find_on_path("systemd-nspawn") {
        Some(nspawn) => Some(nspawn),
        None => skip("systemd-nspawn is not on PATH (Debian package systemd-container)"),
    }
}

/// Chromium and chromedriver (Debian packages `chromium`, `chromium-driver`), for
/// [`crate::browser::Browser`]. Use as `if !require_browser() { return }`.
pub fn require_browser() -> bool {
    crate::browser::find_binaries().is_some()
        || skip::<()>(
            "chromium or chromedriver is not installed (Debian packages chromium, chromium-driver; \
             `cargo xtask test` installs them)",
        )
        .is_some()
}

/// The absolute path in `variable`, which must exist (`what` names it in the skip message).
fn require_path(variable: &str, what: &str) -> Option<PathBuf> {
    let Some(value) = std::env::var_os(variable) else {
        return skip(&format!(
            "{variable} ({what}) is not set (run the suite through `cargo xtask test`)"
        ));
    };
    let path = PathBuf::from(value);
    if !path.is_absolute() || !path.exists() {
        return skip(&format!(
            "{variable}={} is not an absolute path that exists",
            path.display()
        ));
    }
    Some(path)
}

/// The first file called `name` in a PATH directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_from_many_threads_are_recorded_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        std::thread::scope(|scope| {
            for n in 0..8 {
                let log = &log;
                scope.spawn(move || {
                    record_skip(log, &format!("bin::t{n}"), "no\neBPF\there").unwrap()
                });
            }
        });
        let text = std::fs::read_to_string(&log).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines.len(), 8, "{text}");
        assert_eq!(lines[0], "bin::t0\tno eBPF here");
    }

    #[test]
    fn the_test_name_is_the_binary_and_the_thread() {
        let name = std::thread::Builder::new()
            .name("suite::a_test".to_owned())
            .spawn(current_test_name)
            .unwrap()
            .join()
            .unwrap();
        assert!(name.ends_with("::suite::a_test"), "{name}");
        assert!(name.starts_with("warden_tests::"), "{name}");
    }
}
