//! `cargo xtask build`: set up the eBPF toolchain, then build the warden crate (which embeds the eBPF object).

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::process::{cargo, header, repo_root, run_checked, target_dir};
use crate::toolchain;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    pub fn from_release(release: bool) -> Self {
        if release {
            Self::Release
        } else {
            Self::Debug
        }
    }

    /// The directory under target/ that cargo writes this profile's binaries to.
    fn dir_name(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Release => "release",
        }
    }
}

/// Setup, then `cargo build -p warden [--release]`.
pub fn build(profile: Profile) -> Result<()> {
    header("toolchain");
    toolchain::setup()?;
    header(&format!("build warden ({})", profile.dir_name()));
    build_warden(profile)
}

/// `cargo build -p warden` alone; the caller has run setup.
pub fn build_warden(profile: Profile) -> Result<()> {
    build_warden_with(profile, &[])
}

/// `cargo build -p warden --features FEATURES`; the caller has run setup.
pub fn build_warden_with(profile: Profile, features: &[&str]) -> Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(repo_root()?)
        .args(["build", "-p", "warden"]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    run_checked(&mut cmd)
}

/// Absolute path of the warden binary that `build_warden(profile)` produces.
pub fn warden_binary(profile: Profile) -> Result<PathBuf> {
    Ok(target_dir()?.join(profile.dir_name()).join("warden"))
}
