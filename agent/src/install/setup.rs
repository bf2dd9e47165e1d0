//! `warden install`, step by step: binary, configuration, policies, state and CA, trust store,
//! unit, drop-ins, then systemctl.
use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{
    config_path,
    defaults::{DEFAULT_CONFIG, STARTER_POLICY, STARTER_POLICY_FILE},
    dropin::{dropin_path, dropin_text, units_with_dropins},
    step::{Outcome, Steps},
    systemd,
    trust::TrustStore,
    unit::{unit_text, warden_command, UnitOptions},
    unit_path, InstallError, Root, BINARY_PATH, CONFIG_DIR, SYSTEMD_DIR, UNIT_NAME,
};
use crate::{
    config::{Config, DEFAULT_CONFIG_PATH},
    tls::{self, CertificateAuthority},
};

#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub root: Root,
    pub dry_run: bool,
    /// `systemctl enable --now`; false: `enable` only.
    pub start: bool,
    /// The global `--config`: read instead of `/etc/warden/warden.toml`, and named by ExecStart.
    pub config: Option<PathBuf>,
    /// The binary to install (the running one).
    pub binary: PathBuf,
}

/// Sets the host (or image root) up; every step is reported to `steps` as it happens.
pub fn install(options: &InstallOptions, steps: &mut Steps) -> Result<(), InstallError> {
    let root = &options.root;
    // First, so that a host without a trust store is refused before anything is written.
    let store = TrustStore::detect(root)?;

    let binary = steps.copy(
        &options.binary,
        &root.path(Path::new(BINARY_PATH)),
        0o755,
        "the warden binary",
    )?;
    steps.dir(
        &root.path(Path::new(CONFIG_DIR)),
        0o755,
        "configuration directory",
    )?;
    let default_config = root.path(config_path());
    steps.file_once(
        &default_config,
        DEFAULT_CONFIG.as_bytes(),
        0o644,
        "commented defaults",
    )?;
    let config = load_config(options, &default_config, steps.dry_run())?;

    install_policies(&root.path(&config.policy.dir), steps)?;
    steps.dir(&root.path(&config.state_dir), 0o700, "state directory")?;
    let ca_pem = install_ca(&root.path(&config.ca_dir()), steps)?;
    let anchor = install_anchor(&root.path(&store.anchor_path()), ca_pem.as_deref(), steps)?;

    let explicit_config = options
        .config
        .as_deref()
        .filter(|path| *path != Path::new(DEFAULT_CONFIG_PATH));
    let systemd_credentials: Vec<String> = config
        .credential_entries
        .iter()
        .filter_map(|c| c.systemd_credential.clone())
        .collect();
    let unit = unit_text(&UnitOptions {
        config: explicit_config,
        state_dir: &config.state_dir,
        pin_dir: &config.proxy.pin_dir,
        credentials: &systemd_credentials,
    });
    let unit = steps.file(
        &root.path(&unit_path()),
        unit.as_bytes(),
        0o644,
        "systemd unit",
    )?;
    let dropins = sync_dropins(
        &root.path(Path::new(SYSTEMD_DIR)),
        &config.select.units,
        &store.anchor_path(),
        &warden_command(explicit_config, "status --quiet"),
        steps,
    )?;

    finish(
        root,
        store,
        Changes {
            anchor: anchor.changed(),
            units: unit.changed() || dropins,
            restart_needed: binary == Outcome::Updated || unit == Outcome::Updated,
            start: options.start,
        },
        steps,
    )
}

/// The config install follows: `--config`, else the file it just wrote (in a dry run, possibly
/// only the template).
fn load_config(
    options: &InstallOptions,
    default_config: &Path,
    dry_run: bool,
) -> Result<Config, InstallError> {
    let path = options.config.as_deref().unwrap_or(default_config);
    if dry_run && options.config.is_none() && !path.exists() {
        return Ok(Config::from_toml(DEFAULT_CONFIG, path)?);
    }
    Ok(Config::load(Some(path))?)
}

/// A new policy directory gets the starter policy; an existing one is the administrator's.
fn install_policies(dir: &Path, steps: &mut Steps) -> Result<(), InstallError> {
    if dir.exists() {
        steps.report(
            Outcome::Unchanged,
            format!("{} (policy directory exists: left as it is)", dir.display()),
        );
        return Ok(());
    }
    steps.dir(dir, 0o755, "policy directory")?;
    steps.file(
        &dir.join(STARTER_POLICY_FILE),
        STARTER_POLICY.as_bytes(),
        0o644,
        "starter policy: masks secrets and personal data in prompts",
    )?;
    Ok(())
}

/// Creates the CA now, so that it can be trusted before the first start; returns its certificate
/// (None in a dry run that would create it).
fn install_ca(ca_dir: &Path, steps: &mut Steps) -> Result<Option<String>, InstallError> {
    let cert = tls::cert_path(ca_dir);
    let subject = format!(
        "{} (Warden's CA: {}, key {} 0600)",
        ca_dir.display(),
        cert.display(),
        tls::key_path(ca_dir).display()
    );
    let exists = cert.exists() && tls::key_path(ca_dir).exists();
    if steps.dry_run() {
        let outcome = if exists {
            Outcome::Unchanged
        } else {
            Outcome::Created
        };
        steps.report(outcome, subject);
        return Ok(fs::read_to_string(&cert).ok());
    }
    let ca = CertificateAuthority::load_or_create(ca_dir).map_err(|source| InstallError::Ca {
        dir: ca_dir.to_path_buf(),
        source,
    })?;
    let outcome = if exists {
        Outcome::Unchanged
    } else {
        Outcome::Created
    };
    steps.report(outcome, subject);
    Ok(Some(ca.cert_pem().to_string()))
}

fn install_anchor(
    anchor: &Path,
    ca_pem: Option<&str>,
    steps: &mut Steps,
) -> Result<Outcome, InstallError> {
    const WHAT: &str = "Warden's CA in the system trust store";
    match ca_pem {
        Some(pem) => steps.file(anchor, pem.as_bytes(), 0o644, WHAT),
        // A dry run before the CA exists: the anchor's contents are not known yet.
        None => {
            let outcome = if anchor.exists() {
                Outcome::Updated
            } else {
                Outcome::Created
            };
            Ok(steps.report(outcome, format!("{} ({WHAT}, 0644)", anchor.display())))
        }
    }
}

/// Writes the drop-in of every selected unit and removes Warden's drop-ins of units no longer
/// selected; returns whether anything changed.
fn sync_dropins(
    systemd_dir: &Path,
    units: &[String],
    ca_file: &Path,
    check: &str,
    steps: &mut Steps,
) -> Result<bool, InstallError> {
    let mut changed = false;
    for unit in units {
        let text = dropin_text(unit, ca_file, check);
        let path = dropin_path(systemd_dir, unit);
        let what = if unit.ends_with(".service") {
            "drop-in: Wants/After warden.service, starts only if Warden answers, NODE_EXTRA_CA_CERTS"
        } else {
            "drop-in: Wants/After warden.service"
        };
        changed |= steps.file(&path, text.as_bytes(), 0o644, what)?.changed();
    }
    for unit in units_with_dropins(systemd_dir)? {
        if !units.contains(&unit) {
            changed |= remove_dropin(systemd_dir, &unit, "no longer selected", steps)?;
        }
    }
    Ok(changed)
}

/// Removes Warden's drop-in of `unit`, and its directory when nothing else is in it.
pub(super) fn remove_dropin(
    systemd_dir: &Path,
    unit: &str,
    why: &str,
    steps: &mut Steps,
) -> Result<bool, InstallError> {
    let path = dropin_path(systemd_dir, unit);
    let outcome = steps.remove_file(&path, &format!("Warden's drop-in for {unit}: {why}"))?;
    if !steps.dry_run() {
        if let Some(dir) = path.parent() {
            // Fails when the administrator keeps other drop-ins there, which is what should happen.
            let _ = fs::remove_dir(dir);
        }
    }
    Ok(outcome.changed())
}

/// What the file steps changed, which decides the commands to run.
struct Changes {
    anchor: bool,
    units: bool,
    restart_needed: bool,
    start: bool,
}

/// The commands that finish an install: on the live system they run, for an image they are named.
fn finish(
    root: &Root,
    store: TrustStore,
    changes: Changes,
    steps: &mut Steps,
) -> Result<(), InstallError> {
    let update = store.update_command();
    let enable = if changes.start {
        vec!["systemctl", "enable", "--now", UNIT_NAME]
    } else {
        vec!["systemctl", "enable", UNIT_NAME]
    };
    if !root.is_live() {
        // Nothing runs against the live system; the image runs these when it is built or boots.
        for argv in [update, &["systemctl", "enable", UNIT_NAME][..]] {
            steps.report(
                Outcome::Deferred,
                format!("{} (--root: the image must run it)", argv.join(" ")),
            );
        }
        return Ok(());
    }
    if changes.anchor {
        systemd::run_step(steps, update)?;
    }
    if !systemd::systemd_running() {
        steps.report(
            Outcome::Skipped,
            format!(
                "systemctl daemon-reload, {}: systemd is not running here (no \
                     /run/systemd/system); start Warden with `{BINARY_PATH} run`",
                enable.join(" ")
            ),
        );
        return Ok(());
    }
    if changes.units {
        systemd::run_step(steps, &["systemctl", "daemon-reload"])?;
    }
    let done = if changes.start {
        systemd::enabled_and_active(UNIT_NAME)
    } else {
        systemd::enabled(UNIT_NAME)
    };
    if done {
        let state = if changes.start {
            "enabled and running"
        } else {
            "enabled"
        };
        steps.report(Outcome::Unchanged, format!("{UNIT_NAME} ({state})"));
        if changes.restart_needed {
            steps.report(
                Outcome::Skipped,
                format!(
                    "restart: {UNIT_NAME} still runs the previous version; `systemctl \
                         restart warden` (restarts the selected units too) starts this one"
                ),
            );
        }
    } else {
        systemd::run_step(steps, &enable)?;
    }
    Ok(())
}
