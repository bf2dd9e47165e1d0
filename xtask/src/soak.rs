//! `cargo xtask soak`: build warden and warden-bench in release, then run `warden-bench soak`.

use std::process::Command;

use anyhow::{bail, Result};

use crate::bench::shell_quote;
use crate::build_cmd::{self, Profile};
use crate::process::{cargo, header, is_root, repo_root, run_checked, target_dir};
use crate::toolchain;

/// Sets up, builds, and soaks; the exit is non-zero when the soak fails (a figure not flat, a
/// request failed, a record missing, the chain not verified).
pub fn soak(requests: Option<u64>, warden_bench_args: &[String]) -> Result<()> {
    let invocation = command_line(requests, warden_bench_args);
    // eBPF programs, a cgroup and a mount namespace: without root the soak can only fail.
    if !is_root() {
        bail!(
            "the soak needs root (eBPF, cgroups, a mount namespace); re-run with \
             `sudo -E env PATH=\"$PATH\" {invocation}`"
        );
    }
    let root = repo_root()?;
    header("[1/3] toolchain");
    toolchain::setup()?;
    header("[2/3] build warden and warden-bench (release)");
    build_cmd::build_warden(Profile::Release)?;
    run_checked(Command::new(cargo()).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "warden-bench",
    ]))?;

    header("[3/3] warden-bench soak");
    let report = target_dir()?.join("soak").join("report.json");
    let mut run = Command::new(target_dir()?.join("release").join("warden-bench"));
    run.current_dir(&root)
        .arg("soak")
        .arg("--warden-bin")
        .arg(build_cmd::warden_binary(Profile::Release)?)
        .arg("--out")
        .arg(&report)
        .arg("--command-line")
        .arg(&invocation);
    if let Some(requests) = requests {
        run.arg("--requests").arg(requests.to_string());
    }
    run_checked(run.args(warden_bench_args))?;
    println!("    report: {}", report.display());
    Ok(())
}

/// How the report says it was produced: the xtask command as typed, extra arguments quoted.
fn command_line(requests: Option<u64>, warden_bench_args: &[String]) -> String {
    let mut line = String::from("cargo xtask soak");
    if let Some(requests) = requests {
        line.push_str(&format!(" --requests {requests}"));
    }
    if !warden_bench_args.is_empty() {
        line.push_str(" --");
        for arg in warden_bench_args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_says_how_the_soak_was_invoked() {
        assert_eq!(command_line(None, &[]), "cargo xtask soak");
        let extra = ["--concurrency".to_owned(), "8".to_owned()];
        assert_eq!(
            command_line(Some(5_000), &extra),
            "cargo xtask soak --requests 5000 -- --concurrency 8"
        );
    }
}
