//! `warden install` / `warden uninstall`: set a host (or an image root) up as a hardened systemd service.
//!
//! Every action is idempotent and reports whether it created, updated or left something unchanged
//! (or, in a dry run, what it would do), so that a second install changes nothing and says so.
//! `--root DIR` puts every path under DIR while the files' contents keep naming the live paths,
//! and runs no command against the live system.
mod defaults;
mod dropin;
mod removal;
mod setup;
mod step;
mod systemd;
pub mod trust;
mod unit;

use std::{
    io,
    path::{Path, PathBuf},
};

pub use defaults::{DEFAULT_CONFIG, STARTER_POLICY, STARTER_POLICY_FILE};
pub use dropin::{dropin_text, DROPIN_FILE, DROPIN_MARKER};
pub use removal::{uninstall, UninstallOptions};
pub use setup::{install, InstallOptions};
pub use step::{Outcome, Step, Steps};
pub use unit::{unit_text, UnitOptions};

use crate::config::{ConfigError, DEFAULT_CONFIG_PATH};
use crate::tls::TlsError;

/// Where install puts the binary (the unit's ExecStart names it).
pub const BINARY_PATH: &str = "/usr/local/bin/warden";
/// The directory of the configuration and the policies; kept by uninstall unless `--purge`.
pub const CONFIG_DIR: &str = "/etc/warden";
/// The directory systemd reads administrators' units and drop-ins from.
pub const SYSTEMD_DIR: &str = "/etc/systemd/system";
/// The unit's name.
pub const UNIT_NAME: &str = "warden.service";

/// The unit file's live path.
pub fn unit_path() -> PathBuf {
    Path::new(SYSTEMD_DIR).join(UNIT_NAME)
}

/// The configuration file install writes and reads (unless `--config` names another one).
pub fn config_path() -> &'static Path {
    Path::new(DEFAULT_CONFIG_PATH)
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no system trust store found under {root}: expected {} (Debian, Ubuntu) or {} \
         (RHEL, Fedora); install the ca-certificates package first",
        trust::TrustStore::Debian.anchor_dir().display(),
        trust::TrustStore::Rhel.anchor_dir().display()
    )]
    NoTrustStore { root: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the CA in {}: {source}", dir.display())]
    Ca {
        dir: PathBuf,
        #[source]
        source: TlsError,
    },
    #[error("`{command}` could not be run: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
}

impl InstallError {
    fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> InstallError + 'p {
        move |source| InstallError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where the installed files go: the live system, or an image root given with `--root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(Option<PathBuf>);

impl Root {
    /// The live system: paths are used as they are and commands run.
    pub fn live() -> Root {
        Root(None)
    }

    /// An image root: every path is put under `dir`, and no command runs.
    pub fn image(dir: PathBuf) -> Root {
        Root(Some(dir))
    }

    pub fn is_live(&self) -> bool {
        self.0.is_none()
    }

    /// Where the live path `path` (absolute) is under this root.
    pub fn path(&self, path: &Path) -> PathBuf {
        match &self.0 {
            None => path.to_path_buf(),
            Some(dir) => dir.join(path.strip_prefix("/").unwrap_or(path)),
        }
    }

    /// How error messages name this root.
    pub fn describe(&self) -> String {
        match &self.0 {
            None => "/".to_string(),
            Some(dir) => dir.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
