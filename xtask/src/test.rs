//! `cargo xtask test`: prepare a fresh machine (toolchain, host packages, Python venv, Node SDK, Go
//! client), build, run every test.

use std::process::Command;

use anyhow::{bail, Result};

use crate::build_cmd::{self, Profile};
use crate::process::{cargo, header, is_root, repo_root, run_checked};
use crate::{go_client, host_packages, node, python, toolchain};

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
    build_cmd::build_warden(Profile::Debug)?;
    run_checked(
        Command::new(cargo())
            .current_dir(repo_root()?)
            .arg("test")
            .args(TEST_PACKAGES)
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
    run_checked(
        Command::new(cargo())
            .current_dir(repo_root()?)
            .arg("test")
            .args(TEST_PACKAGES)
            .args(cargo_test_args)
            .envs(envs),
    )
}
