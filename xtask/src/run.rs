//! `cargo xtask run`: build warden, then replace this process with `warden run ARGS...` in the foreground.

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::build_cmd::{self, Profile};
use crate::process::{header, is_root};

/// Builds, then execs the daemon; returns only on failure (warden's own exit code is the process's).
pub fn run(profile: Profile, args: &[String]) -> Result<()> {
    // Checked before building: the daemon loads eBPF programs, and a long build that then fails
    // on permissions wastes minutes.
    if !is_root() {
        bail!(
            "warden run needs root to load and attach eBPF programs; re-run as root, \
             e.g. `sudo -E env PATH=\"$PATH\" cargo xtask run`"
        );
    }
    build_cmd::build(profile)?;
    let binary = build_cmd::warden_binary(profile)?;
    header(&format!("{} run {}", binary.display(), args.join(" ")));
    // exec, not spawn: signals (Ctrl-C, SIGTERM) reach warden directly and its exit status
    // becomes ours without translation.
    let err = Command::new(&binary).arg("run").args(args).exec();
    Err(err).with_context(|| format!("cannot exec {}", binary.display()))
}
