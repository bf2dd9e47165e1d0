//! The Python venvs under target/, each with one pinned package: openai for the e2e tests, mitmproxy for the bench.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process::{run_checked, succeeds, target_dir};

/// The exact SDK the e2e tests run: the newest release when pinned. Bumping it re-runs pip once.
pub const OPENAI_PIN: &str = "openai==3.52.0";

/// The mitmproxy the bench compares Warden with. 11.0.2 is the newest release that installs on
/// Python 3.11 (later ones require 3.12), which is what Debian bookworm ships.
pub const MITMPROXY_PIN: &str = "mitmproxy==11.0.2";

/// Inside the venv, so recreating the venv also forgets what was installed in it.
const STAMP_FILE: &str = ".warden-requirements";

/// One venv under target/: its directory name, the package pinned in it and the program in its
/// bin/ that callers run.
#[derive(Debug, Clone, Copy)]
pub struct Venv {
    pub dir_name: &'static str,
    pub pin: &'static str,
    pub program: &'static str,
}

/// The e2e tests' venv; they run its python against the openai SDK.
pub const E2E_VENV: Venv = Venv {
    dir_name: "e2e-venv",
    pin: OPENAI_PIN,
    program: "python",
};

/// The bench's venv; it runs mitmproxy's `mitmdump` as the comparison proxy.
pub const BENCH_VENV: Venv = Venv {
    dir_name: "bench-venv",
    pin: MITMPROXY_PIN,
    program: "mitmdump",
};

/// Makes target/e2e-venv ready and returns its python.
pub fn ensure_venv() -> Result<PathBuf> {
    ensure(&E2E_VENV)
}

/// Makes target/bench-venv ready and returns its `mitmdump`.
pub fn ensure_mitmdump() -> Result<PathBuf> {
    ensure(&BENCH_VENV)
}

/// Creates (or repairs) the venv and installs the pin unless the stamp says it is in.
/// Returns the absolute path of `venv.program`.
pub fn ensure(venv: &Venv) -> Result<PathBuf> {
    let dir = target_dir()?.join(venv.dir_name);
    let python = dir.join("bin").join("python");
    let program = dir.join("bin").join(venv.program);
    // A program that vanished while the stamp stayed would never be reinstalled: pip sees the
    // package as present. Rebuilding the venv is the one repair that always works.
    if venv_is_usable(&python) && program.is_file() {
        println!("venv {}: ok", dir.display());
    } else {
        println!("venv {}: missing or broken, creating", dir.display());
        // --clear: a venv whose base interpreter moved or was upgraded is rebuilt, not patched.
        run_checked(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&dir),
        )
        .with_context(|| {
            format!(
                "cannot create the {} venv (is python3-venv installed?)",
                venv.dir_name
            )
        })?;
    }
    let stamp = dir.join(STAMP_FILE);
    let wanted = requirements(venv);
    if stamp_matches(&stamp, &wanted) {
        println!("{}: ok", venv.pin);
    } else {
        println!("{}: installing", venv.pin);
        run_checked(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                ])
                .arg(venv.pin),
        )?;
        fs::write(&stamp, &wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
        println!("{}: installed", venv.pin);
    }
    if !program.is_file() {
        bail!(
            "{} is missing after installing {}",
            program.display(),
            venv.pin
        );
    }
    Ok(program)
}

/// The stamp's content: what pip was asked to install.
fn requirements(venv: &Venv) -> String {
    format!("{}\n", venv.pin)
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

    fn assert_exact_pin(pin: &str, package: &str) {
        let (name, version) = pin.split_once("==").expect("pinned with ==");
        assert_eq!(name, package);
        assert!(version.split('.').all(|part| part.parse::<u32>().is_ok()));
    }

    #[test]
    fn pin_is_exact() {
        assert_exact_pin(OPENAI_PIN, "openai");
    }

    #[test]
    fn mitmproxy_pin_is_exact_and_installs_on_python_3_11() {
        assert_exact_pin(MITMPROXY_PIN, "mitmproxy");
        let (_, version) = MITMPROXY_PIN.split_once("==").expect("pinned with ==");
        let mut parts = version
            .split('.')
            .map(|part| part.parse::<u32>().expect("numeric"));
        let major_minor = (parts.next().expect("major"), parts.next().expect("minor"));
        // Releases after 11.0 require Python 3.12; bumping past it needs a newer host Python first.
        assert!(
            major_minor <= (11, 0),
            "{MITMPROXY_PIN} needs Python >= 3.12"
        );
    }

    #[test]
    fn venvs_do_not_share_a_directory() {
        assert_ne!(E2E_VENV.dir_name, BENCH_VENV.dir_name);
        assert_eq!(BENCH_VENV.pin, MITMPROXY_PIN);
        assert_eq!(BENCH_VENV.program, "mitmdump");
    }

    #[test]
    fn stamp_must_match_exactly() {
        let dir = std::env::temp_dir().join(format!("xtask-stamp-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let stamp = dir.join(STAMP_FILE);
        let wanted = requirements(&E2E_VENV);
        assert!(!stamp_matches(&stamp, &wanted));
        fs::write(&stamp, "openai==0.0.1\n").expect("write");
        assert!(!stamp_matches(&stamp, &wanted));
        fs::write(&stamp, requirements(&BENCH_VENV)).expect("write");
        assert!(!stamp_matches(&stamp, &wanted));
        fs::write(&stamp, &wanted).expect("write");
        assert!(stamp_matches(&stamp, &wanted));
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
