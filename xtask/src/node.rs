//! The official `openai` npm package, pinned, installed with npm into target/e2e-node for the e2e tests' Node client.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process::{find_on_path, run_checked, succeeds, target_dir};

/// The npm package the e2e tests run, pinned exactly. 6.49.0 is the newest release that runs on
/// the Node of this machine kind (20; Debian bookworm's is 18): every 7.x declares node >= 22.
/// Bumping it reinstalls once.
pub const OPENAI_NPM_PACKAGE: &str = "openai";
pub const OPENAI_NPM_VERSION: &str = "6.49.0";

const DIR_NAME: &str = "e2e-node";

/// Inside the install directory, so removing the directory also forgets what was installed.
const STAMP_FILE: &str = ".warden-requirements";

/// What the e2e tests need to run a Node client against the SDK.
#[derive(Debug)]
pub struct NodeSdk {
    /// The `node` the tests run (absolute).
    pub node: PathBuf,
    /// The node_modules directory holding the pinned SDK: the client's `NODE_PATH`.
    pub modules: PathBuf,
}

/// Makes target/e2e-node hold exactly the pinned SDK; returns node and the modules directory.
pub fn ensure_sdk() -> Result<NodeSdk> {
    let node = find_on_path("node").context("node is not on PATH (host packages install it)")?;
    let npm = find_on_path("npm").context("npm is not on PATH (host packages install it)")?;
    let dir = target_dir()?.join(DIR_NAME);
    let modules = dir.join("node_modules");
    let stamp = dir.join(STAMP_FILE);
    let wanted = requirements();
    if stamp_matches(&stamp, &wanted) && sdk_loads(&node, &modules) {
        println!("{OPENAI_NPM_PACKAGE}@{OPENAI_NPM_VERSION} (npm): ok");
    } else {
        println!("{OPENAI_NPM_PACKAGE}@{OPENAI_NPM_VERSION} (npm): installing");
        // A fresh directory: an older pin's lock file or modules must not survive the bump.
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::write(dir.join("package.json"), package_json())
            .with_context(|| format!("cannot write {}/package.json", dir.display()))?;
        run_checked(Command::new(&npm).current_dir(&dir).args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]))?;
        if !sdk_loads(&node, &modules) {
            bail!(
                "node cannot load {OPENAI_NPM_PACKAGE}@{OPENAI_NPM_VERSION} from {} after npm install",
                modules.display()
            );
        }
        fs::write(&stamp, &wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
        println!("{OPENAI_NPM_PACKAGE}@{OPENAI_NPM_VERSION} (npm): installed");
    }
    Ok(NodeSdk { node, modules })
}

/// A private package that depends on exactly the pinned SDK.
fn package_json() -> String {
    format!(
        "{{\n  \"name\": \"warden-e2e-node\",\n  \"private\": true,\n  \"dependencies\": {{ \"{OPENAI_NPM_PACKAGE}\": \"{OPENAI_NPM_VERSION}\" }}\n}}\n"
    )
}

/// The stamp's content: what npm was asked to install.
fn requirements() -> String {
    format!("{OPENAI_NPM_PACKAGE}@{OPENAI_NPM_VERSION}\n")
}

/// Whether node, with `NODE_PATH=modules`, loads the SDK at the pinned version.
fn sdk_loads(node: &Path, modules: &Path) -> bool {
    let check = format!(
        "const {{ OpenAI }} = require('{OPENAI_NPM_PACKAGE}'); \
         const {{ VERSION }} = require('{OPENAI_NPM_PACKAGE}/version'); \
         if (typeof OpenAI !== 'function' || VERSION !== '{OPENAI_NPM_VERSION}') process.exit(1);"
    );
    succeeds(
        Command::new(node)
            .args(["-e", &check])
            .env("NODE_PATH", modules),
    )
}

fn stamp_matches(stamp: &Path, wanted: &str) -> bool {
    fs::read_to_string(stamp).is_ok_and(|content| content == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_is_exact() {
        assert!(!OPENAI_NPM_VERSION.is_empty());
        assert!(OPENAI_NPM_VERSION
            .split('.')
            .all(|part| part.parse::<u32>().is_ok()));
        assert_eq!(OPENAI_NPM_VERSION.split('.').count(), 3);
    }

    #[test]
    fn package_json_pins_exactly() {
        let text = package_json();
        assert!(
            text.contains(&format!("\"openai\": \"{OPENAI_NPM_VERSION}\"")),
            "{text}"
        );
        assert!(!text.contains('^') && !text.contains('~'), "{text}");
    }
}
