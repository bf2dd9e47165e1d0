//! `cargo xtask test`: prepare a fresh machine (toolchain, host packages, Python venv), build, run every test.

use std::process::Command;

use anyhow::{bail, Result};

use crate::build_cmd::{self, Profile};
use crate::process::{cargo, header, is_root, repo_root, run_checked};
use crate::{host_packages, python, toolchain};

const TEST_PACKAGES: &[&str] = &["-p", "warden", "-p", "warden-tests", "-p", "warden-bench"];

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
    header("[1/5] toolchain");
    toolchain::setup()?;
    header("[2/5] host packages");
    host_packages::ensure()?;
    header("[3/5] python venv");
    let python = python::ensure_venv()?;
    header("[4/5] build warden and tests");
    build_cmd::build_warden(Profile::Debug)?;
    run_checked(
        Command::new(cargo())
            .current_dir(repo_root()?)
            .arg("test")
            .args(TEST_PACKAGES)
            .arg("--no-run"),
    )?;
    header("[5/5] cargo test");
    let warden = build_cmd::warden_binary(Profile::Debug)?;
    println!("    WARDEN_BIN={}", warden.display());
    println!("    WARDEN_TEST_PYTHON={}", python.display());
    run_checked(
        Command::new(cargo())
            .current_dir(repo_root()?)
            .arg("test")
            .args(TEST_PACKAGES)
            .args(cargo_test_args)
            .env("WARDEN_BIN", &warden)
            .env("WARDEN_TEST_PYTHON", &python),
    )
}
