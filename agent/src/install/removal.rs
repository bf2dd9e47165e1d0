//! `warden uninstall`, step by step: drop-ins, the service, the pinned programs, the unit, the
//! trust-store entry, the binary; the configuration and state only with `--purge`.
use std::path::{Path, PathBuf};

use super::{
    config_path,
    dropin::units_with_dropins,
    setup::remove_dropin,
    step::{Outcome, Steps},
    systemd,
    trust::TrustStore,
    unit_path, InstallError, Root, BINARY_PATH, CONFIG_DIR, SYSTEMD_DIR, UNIT_NAME,
};
use crate::config::Config;

#[derive(Debug, Clone)]
pub struct UninstallOptions {
    pub root: Root,
    pub dry_run: bool,
    /// Also remove `/etc/warden` and the state directory (audit store, CA).
    pub purge: bool,
    /// The global `--config`: where the state directory and pin directory are read from.
    pub config: Option<PathBuf>,
}

pub fn uninstall(options: &UninstallOptions, steps: &mut Steps) -> Result<(), InstallError> {
    let root = &options.root;
    let config = load_config(options)?;
    let live_systemd = root.is_live() && systemd::systemd_running();

    // The drop-ins go first, so that the selected units no longer pull Warden in or check for
    // it when systemd reloads.
    let systemd_dir = root.path(Path::new(SYSTEMD_DIR));
    let mut units_changed = false;
    for unit in units_with_dropins(&systemd_dir)? {
        units_changed |= remove_dropin(&systemd_dir, &unit, "uninstalled", steps)?;
    }
    let unit_file = root.path(&unit_path());
    if live_systemd {
        if units_changed {
            systemd::run_step(steps, &["systemctl", "daemon-reload"])?;
        }
        if unit_file.exists() {
            systemd::run_step(steps, &["systemctl", "disable", "--now", UNIT_NAME])?;
        }
    } else if root.is_live() {
        steps.report(
            Outcome::Skipped,
            format!(
                "systemctl disable --now {UNIT_NAME}: systemd is not running here (no \
                 /run/systemd/system); stop a `warden run` you started yourself"
            ),
        );
    }
    // With the daemon stopped: unlinking the pins detaches the programs (fail-closed ends here).
    steps.remove_tree(
        &root.path(&config.proxy.pin_dir),
        "pinned eBPF programs and maps",
    )?;
    let unit = steps.remove_file(&unit_file, "systemd unit")?;
    for store in TrustStore::ALL {
        let anchor = root.path(&store.anchor_path());
        let removed = steps.remove_file(&anchor, "Warden's CA in the system trust store")?;
        if removed.changed() {
            let update = store.removal_command();
            if root.is_live() {
                systemd::run_step(steps, update)?;
            } else {
                steps.report(
                    Outcome::Deferred,
                    format!("{} (--root: the image must run it)", update.join(" ")),
                );
            }
        }
    }
    steps.remove_file(&root.path(Path::new(BINARY_PATH)), "the warden binary")?;
    if live_systemd && unit.changed() {
        systemd::run_step(steps, &["systemctl", "daemon-reload"])?;
    }

    let kept = [
        (
            root.path(Path::new(CONFIG_DIR)),
            "configuration and policies",
        ),
        (root.path(&config.state_dir), "state: audit store and CA"),
    ];
    for (path, what) in kept {
        if options.purge {
            steps.remove_tree(&path, what)?;
        } else if path.exists() {
            steps.report(
                Outcome::Unchanged,
                format!("{} ({what}: kept; --purge removes it)", path.display()),
            );
        }
    }
    Ok(())
}

/// The config that says where the state and the pins are: `--config`, else the installed file,
/// else (already purged, or never written) the defaults.
fn load_config(options: &UninstallOptions) -> Result<Config, InstallError> {
    if let Some(path) = &options.config {
        return Ok(Config::load(Some(path))?);
    }
    let path = options.root.path(config_path());
    if path.exists() {
        Ok(Config::load(Some(&path))?)
    } else {
        Ok(Config::default())
    }
}
