//! The drop-in install writes for every selected unit: it trusts Warden's CA for Node.js clients,
//! makes the unit need a running Warden and takes CAP_NET_RAW from services; and finding the
//! drop-ins install wrote earlier.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::{InstallError, UNIT_NAME};

/// The drop-in's file name inside `UNIT.d/`.
pub const DROPIN_FILE: &str = "warden.conf";
/// The first line of every drop-in Warden writes: only files starting with it are ever removed.
pub const DROPIN_MARKER: &str = "# Written by `warden install` for a unit in [select] units;";

/// The drop-in for `unit`, pointing Node.js clients at `ca_file` (a live path). `check` is the
/// command line of `warden status --quiet` with the unit's config.
///
/// Wants= rather than Requires=: with Requires=, systemd turns every automatic restart of Warden
/// (Restart=always after a crash) into a restart of every selected unit, whose new cgroup then
/// has to be selected again. The start guarantee comes from the ExecStartPre= check instead.
pub fn dropin_text(unit: &str, ca_file: &Path, check: &str) -> String {
    let mut text = format!(
        "{DROPIN_MARKER} removed when the unit\n\
         # leaves that list or by `warden uninstall`. Put your own settings in another file here.\n\
         [Unit]\n\
         # Started after Warden, which it pulls in; restarting Warden does not restart this unit.\n\
         Wants={UNIT_NAME}\n\
         After={UNIT_NAME}\n"
    );
    // Only a service runs processes whose environment and start systemd controls.
    if unit.ends_with(".service") {
        text.push_str(&format!(
            "\n[Service]\n\
             # Does not start unless Warden answers: from then on its connections are intercepted\n\
             # (and refused while Warden is down). `+`: the check needs root, whatever User= is.\n\
             ExecStartPre=+{check}\n\
             # Node.js trusts only its bundled roots; the system store covers Python, curl and Go.\n\
             Environment=NODE_EXTRA_CA_CERTS={}\n\
             # Packet sockets (AF_PACKET) and raw IP sockets write their own frames past Warden's\n\
             # connect hooks. Both need CAP_NET_RAW, which no process of this unit may hold.\n\
             CapabilityBoundingSet=~CAP_NET_RAW\n",
            ca_file.display()
        ));
    }
    text
}

/// The drop-in path of `unit` inside `systemd_dir`.
pub fn dropin_path(systemd_dir: &Path, unit: &str) -> PathBuf {
    systemd_dir.join(format!("{unit}.d")).join(DROPIN_FILE)
}

/// The units in `systemd_dir` that have a drop-in written by Warden, sorted.
pub fn units_with_dropins(systemd_dir: &Path) -> Result<Vec<String>, InstallError> {
    let entries = match fs::read_dir(systemd_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(InstallError::io("reading", systemd_dir)(e)),
    };
    let mut units = Vec::new();
    for entry in entries {
        let entry = entry.map_err(InstallError::io("reading", systemd_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(unit) = name.strip_suffix(".d") else {
            continue;
        };
        if is_wardens(&entry.path().join(DROPIN_FILE))? {
            units.push(unit.to_string());
        }
    }
    units.sort();
    Ok(units)
}

/// Whether `path` is a drop-in Warden wrote (a file of another author is never touched).
fn is_wardens(path: &Path) -> Result<bool, InstallError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text.starts_with(DROPIN_MARKER)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidData
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(InstallError::io("reading", path)(e)),
    }
}
