//! The Python venv at target/e2e-venv with the pinned `openai` SDK that the end-to-end tests drive.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::{run_checked, succeeds, target_dir};

/// The exact SDK the e2e tests run: the newest release when pinned. Bumping it re-runs pip once.
pub const OPENAI_PIN: &str = "openai==3.52.0";

/// Inside the venv, so recreating the venv also forgets what was installed in it.
const STAMP_FILE: &str = ".warden-requirements";

/// Creates (or repairs) the venv and installs the pinned packages unless the stamp says they are in.
/// Returns the venv's python.
pub fn ensure_venv() -> Result<PathBuf> {
    let venv = target_dir()?.join("e2e-venv");
    let python = venv.join("bin").join("python");
    if venv_is_usable(&python) {
        println!("venv {}: ok", venv.display());
    } else {
        println!("venv {}: missing or broken, creating", venv.display());
        // --clear: a venv whose base interpreter moved or was upgraded is rebuilt, not patched.
        run_checked(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
        )
        .context("cannot create the e2e venv (is python3-venv installed?)")?;
    }
    let stamp = venv.join(STAMP_FILE);
    let wanted = requirements();
    if stamp_matches(&stamp, &wanted) {
        println!("{OPENAI_PIN}: ok");
        return Ok(python);
    }
    println!("{OPENAI_PIN}: installing");
    run_checked(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
            ])
            .arg(OPENAI_PIN),
    )?;
    fs::write(&stamp, &wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
    println!("{OPENAI_PIN}: installed");
    Ok(python)
}

/// The stamp's content: what pip was asked to install.
fn requirements() -> String {
    format!("{OPENAI_PIN}\n")
}

fn venv_is_usable(python: &Path) -> bool {
    succeeds(Command::new(python).args(["-c", "import sys"]))
        && succeeds(Command::new(python).args(["-m", "pip", "--version"]))
}

fn stamp_matches(stamp: &Path, wanted: &str) -> bool {
    fs::read_to_string(stamp).is_ok_and(|content| content == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_is_exact() {
        let (name, version) = OPENAI_PIN.split_once("==").expect("pinned with ==");
        assert_eq!(name, "openai");
        assert!(version.split('.').all(|part| part.parse::<u32>().is_ok()));
    }

    #[test]
    fn stamp_must_match_exactly() {
        let dir = std::env::temp_dir().join(format!("xtask-stamp-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let stamp = dir.join(STAMP_FILE);
        assert!(!stamp_matches(&stamp, &requirements()));
        fs::write(&stamp, "openai==0.0.1\n").expect("write");
        assert!(!stamp_matches(&stamp, &requirements()));
        fs::write(&stamp, requirements()).expect("write");
        assert!(stamp_matches(&stamp, &requirements()));
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
