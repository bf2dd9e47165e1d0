//! Where Warden's CA is trusted: the system trust store layouts install knows, and the one place
//! that says which CA file a client (Node's `NODE_EXTRA_CA_CERTS`) should be given.
use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{InstallError, Root};
use crate::{config::Config, tls};

/// A system trust store layout: a directory of local anchors and the command that rebuilds the
/// bundle clients read (OpenSSL's, curl's, Go's and Python's truststore all read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustStore {
    /// Debian and Ubuntu: `update-ca-certificates` reads `*.crt` files.
    Debian,
    /// RHEL and Fedora: `update-ca-trust extract` reads PEM anchors.
    Rhel,
}

impl TrustStore {
    /// Every layout, in the order detection tries them.
    pub const ALL: [TrustStore; 2] = [TrustStore::Debian, TrustStore::Rhel];

    /// The directory of local anchors (a live path).
    pub fn anchor_dir(self) -> &'static Path {
        Path::new(match self {
            TrustStore::Debian => "/usr/local/share/ca-certificates",
            TrustStore::Rhel => "/etc/pki/ca-trust/source/anchors",
        })
    }

    /// Warden's CA certificate in this store (a live path).
    pub fn anchor_path(self) -> PathBuf {
        self.anchor_dir().join(match self {
            TrustStore::Debian => "warden-ca.crt",
            TrustStore::Rhel => "warden-ca.pem",
        })
    }

    /// The command that rebuilds the system bundle after an anchor changed.
    pub fn update_command(self) -> &'static [&'static str] {
        match self {
            TrustStore::Debian => &["update-ca-certificates"],
            TrustStore::Rhel => &["update-ca-trust", "extract"],
        }
    }

    /// The command that rebuilds the system bundle after an anchor was removed. Debian's needs
    /// `--fresh`: without it the removed anchor's symlinks stay in /etc/ssl/certs.
    pub fn removal_command(self) -> &'static [&'static str] {
        match self {
            TrustStore::Debian => &["update-ca-certificates", "--fresh"],
            TrustStore::Rhel => &["update-ca-trust", "extract"],
        }
    }

    /// The layout `root` has (its anchor directory exists), or a clear error naming both.
    pub fn detect(root: &Root) -> Result<TrustStore, InstallError> {
        TrustStore::ALL
            .into_iter()
            .find(|store| root.path(store.anchor_dir()).is_dir())
            .ok_or_else(|| InstallError::NoTrustStore {
                root: root.describe(),
            })
    }
}

/// The CA file to hand a client that does not read the system store (Node.js): the installed
/// anchor when it is this config's CA, else the CA certificate in the state directory.
///
/// The anchor is preferred because it is world-readable, while the state directory is 0700.
pub fn client_ca_file(config: &Config) -> PathBuf {
    client_ca_file_under(&Root::live(), config)
}

/// [`client_ca_file`] for the system under `root`; the path returned is a live path.
pub(super) fn client_ca_file_under(root: &Root, config: &Config) -> PathBuf {
    let own = tls::cert_path(&config.ca_dir());
    // Unreadable (not root): the anchor cannot be compared, and is the only file the client can read.
    let own_pem = fs::read(root.path(&own)).ok();
    for store in TrustStore::ALL {
        let anchor = store.anchor_path();
        if let Ok(installed) = fs::read(root.path(&anchor)) {
            if own_pem.as_ref().is_none_or(|pem| *pem == installed) {
                return anchor;
            }
        }
    }
    own
}
