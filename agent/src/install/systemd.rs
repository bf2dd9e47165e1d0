//! The commands install and uninstall run on the live system: systemctl and the trust store's
//! update command.
use std::{path::Path, process::Command};

use super::{
    step::{Outcome, Steps},
    InstallError,
};

/// Whether systemd is the running init system (what `sd_booted()` checks).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Runs `argv` and fails with its output when it fails.
pub fn run(argv: &[&str]) -> Result<(), InstallError> {
    let command = argv.join(" ");
    let (program, args) = argv.split_first().ok_or_else(|| InstallError::Spawn {
        command: command.clone(),
        source: std::io::Error::other("empty command"),
    })?;
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| InstallError::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    Err(InstallError::Command {
        command,
        status: output.status,
        output: text,
    })
}

/// Whether `systemctl is-enabled` and `is-active` both say yes for `unit`.
pub fn enabled_and_active(unit: &str) -> bool {
    let yes = |verb: &str| {
        Command::new("systemctl")
            .args([verb, "--quiet", unit])
            .status()
            .is_ok_and(|status| status.success())
    };
    yes("is-enabled") && yes("is-active")
}

/// Whether `systemctl is-enabled` says yes for `unit`.
pub fn enabled(unit: &str) -> bool {
    Command::new("systemctl")
        .args(["is-enabled", "--quiet", unit])
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `argv` (in a dry run, only says it would) and reports it.
pub fn run_step(steps: &mut Steps, argv: &[&str]) -> Result<(), InstallError> {
    if !steps.dry_run() {
        run(argv)?;
    }
    steps.report(Outcome::Ran, argv.join(" "));
    Ok(())
}
