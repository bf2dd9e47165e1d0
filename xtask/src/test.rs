//! `cargo xtask test`: prepare a fresh machine (toolchain, host packages, Python venv, Node SDK, Go
//! client), build, run every test.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::build_cmd::{self, Profile};
use crate::process::{cargo, header, is_root, repo_root, run_checked, target_dir};
use crate::{go_client, host_packages, node, python, toolchain};

const TEST_PACKAGES: &[&str] = &["-p", "warden", "-p", "warden-tests", "-p", "warden-bench"];
/// The e2e suite's warden has the test-only fault hooks (agent/src/proxy/fault_hooks.rs): the
/// faults tests hold a request at a chosen point to crash the daemon there. A user's build
/// (`cargo xtask build`, `cargo build`) never has them.
const FAULT_HOOKS: &str = "fault-hooks";
/// The same feature for `cargo test`, so that the warden library is built once, not once with
/// the hooks (for WARDEN_BIN) and once without (for the unit tests).
const TEST_FEATURES: &str = "warden/fault-hooks";

/// Runs the phases in order; the first failure stops the run with a non-zero exit.
pub fn test(cargo_test_args: &[String]) -> Result<()> {
    // The e2e tests create cgroups, network namespaces and eBPF links; without root they can only
    // fail, so say so before spending minutes on setup and builds.
    if !is_root() {
        let ci = std::env::var("CI").is_ok_and(|value| value == "true");
        bail!(
            "the tests need root (cgroups, namespaces, eBPF){}; re-run with \
             `sudo -E env PATH=\"$PATH\" cargo xtask test`",
            if ci { " and CI=true is set" } else { "" }
        );
    }
    header("[1/7] toolchain");
    toolchain::setup()?;
    header("[2/7] host packages");
    host_packages::ensure()?;
    header("[3/7] python venv");
    let python = python::ensure_venv()?;
    header("[4/7] node sdk");
    let node_sdk = node::ensure_sdk()?;
    header("[5/7] go client");
    let go_client = go_client::ensure_client()?;
    header("[6/7] build warden and tests");
    build_cmd::build_warden_with(Profile::Debug, &[FAULT_HOOKS])?;
    run_checked(
        Command::new(cargo())
            .current_dir(repo_root()?)
            .arg("test")
            .args(TEST_PACKAGES)
            .args(["--features", TEST_FEATURES])
            .arg("--no-run"),
    )?;
    header("[7/7] cargo test");
    let warden = build_cmd::warden_binary(Profile::Debug)?;
    let envs = [
        ("WARDEN_BIN", warden.into_os_string()),
        ("WARDEN_TEST_PYTHON", python.into_os_string()),
        ("WARDEN_TEST_NODE", node_sdk.node.into_os_string()),
        (
            "WARDEN_TEST_NODE_MODULES",
            node_sdk.modules.into_os_string(),
        ),
        ("WARDEN_TEST_GO_CLIENT", go_client.into_os_string()),
    ];
    for (name, value) in &envs {
        println!("    {name}={}", value.to_string_lossy());
    }
    let skip_log = target_dir()?.join("test-skips.log");
    match std::fs::remove_file(&skip_log) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("cannot remove {}", skip_log.display()));
        }
        _ => {}
    }
    println!("    {SKIP_LOG_VAR}={}", skip_log.display());
    let outcome = run_checked(
        Command::new(cargo())
            .current_dir(repo_root()?)
            .arg("test")
            .args(TEST_PACKAGES)
            .args(["--features", TEST_FEATURES])
            .args(cargo_test_args)
            .envs(envs)
            .env(SKIP_LOG_VAR, &skip_log),
    );
    let skipped = match std::fs::read_to_string(&skip_log) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", skip_log.display()));
        }
    };
    print!("{}", skip_report(&skipped));
    outcome
}

/// The file each skipped test appends `name<TAB>reason` to (tests/src/env.rs).
const SKIP_LOG_VAR: &str = "WARDEN_TEST_SKIP_LOG";

/// What the end of the run says about skipped tests: nothing when none was, else a loud count
/// and one line per test (cargo test counts a skipped test as passed and hides its output).
fn skip_report(skip_log: &str) -> String {
    let mut lines: Vec<&str> = skip_log.lines().filter(|line| !line.is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    lines.sort_unstable();
    let mut report = format!(
        "\n==> SKIPPED: {} test(s) did not run and were counted as passed (under CI=true they fail):\n",
        lines.len()
    );
    for line in lines {
        let (test, why) = line.split_once('\t').unwrap_or((line, ""));
        report.push_str(&format!("    SKIPPED {test}: {why}\n"));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::skip_report;

    #[test]
    fn no_skips_say_nothing() {
        assert_eq!(skip_report(""), "");
    }

    #[test]
    fn skips_are_counted_and_named() {
        let report = skip_report("curl::b\teBPF is not usable\ncurl::a\tno root\n");
        assert!(report.contains("SKIPPED: 2 test(s)"), "{report}");
        let a = report.find("SKIPPED curl::a: no root").expect(&report);
        let b = report
            .find("SKIPPED curl::b: eBPF is not usable")
            .expect(&report);
        assert!(a < b, "sorted by name: {report}");
    }
}
