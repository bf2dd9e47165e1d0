//! The revocation list on disk: `state_dir/revocations.json`, 0600, replaced atomically.
//!
//! The file, not the audit chain, is what a starting daemon reads: retention may prune the chain's
//! `revoked` record while the revocation stays in force.
use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Revocation, RevocationError};
use crate::{audit::governance::Actor, identity::selector::IdentitySelector};

/// The file's name inside the state directory.
pub const FILE_NAME: &str = "revocations.json";
/// The layout written today; a file with another one is refused rather than misread.
const VERSION: u32 = 1;

/// One revocation as stored: the selector in its canonical text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRevocation {
    pub selector: String,
    pub by: Actor,
    pub reason: Option<String>,
    /// Unix time in microseconds.
    pub at_us: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationFile {
    version: u32,
    revocations: Vec<StoredRevocation>,
}

pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// The revocations in force per `path`; none if the file does not exist. An unreadable file, or
/// one naming an invalid selector, is an error: a revocation list that cannot be read must not
/// silently become an empty one.
pub fn load(path: &Path) -> Result<Vec<Revocation>, RevocationError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RevocationError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let invalid = |message: String| RevocationError::InvalidFile {
        path: path.to_path_buf(),
        message,
    };
    let file: RevocationFile =
        serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    if file.version != VERSION {
        return Err(invalid(format!(
            "version {} is not the one this Warden reads ({VERSION})",
            file.version
        )));
    }
    file.revocations
        .into_iter()
        .map(|stored| {
            let selector = IdentitySelector::parse(&stored.selector)
                .map_err(|error| invalid(format!("entry {:?}: {error}", stored.selector)))?;
            Ok(Revocation { selector, stored })
        })
        .collect()
}

/// Replaces the file with `revocations`: written to a temporary file (0600) in the same
/// directory, synced, renamed over the old one, and the directory synced, so that a crash leaves
/// either the old list or the new one, never half of one.
pub fn save(path: &Path, revocations: &[Revocation]) -> Result<(), RevocationError> {
    let io_error = |source| RevocationError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = RevocationFile {
        version: VERSION,
        revocations: revocations.iter().map(|r| r.stored.clone()).collect(),
    };
    let mut bytes =
        serde_json::to_vec_pretty(&file).map_err(|error| RevocationError::InvalidFile {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
    bytes.push(b'\n');
    crate::private_file::replace(path, &bytes).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn revocation(selector: &str) -> Revocation {
        Revocation {
            selector: IdentitySelector::parse(selector).unwrap(),
            stored: StoredRevocation {
                selector: selector.into(),
                by: Actor {
                    uid: 0,
                    user: Some("root".into()),
                    pid: Some(7),
                    oidc: None,
                },
                reason: Some("incident 42".into()),
                at_us: 1_700_000_000_000_000,
            },
        }
    }

    #[test]
    fn a_saved_list_loads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert!(load(&path).unwrap().is_empty(), "no file: nothing revoked");
        let list = vec![revocation("account:billing-*"), revocation("uid:1000")];
        save(&path, &list).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].stored, list[0].stored);
        assert_eq!(loaded[1].selector, IdentitySelector::Uid(1000));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("revocations.json.tmp").exists());
    }

    #[test]
    fn an_unreadable_or_invalid_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            load(&path),
            Err(RevocationError::InvalidFile { .. })
        ));
        fs::write(
            &path,
            r#"{"version":1,"revocations":[{"selector":"nope","by":{"uid":0,"user":null,"pid":null},"reason":null,"at_us":1}]}"#,
        )
        .unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(
            error.contains("\"nope\"") && error.contains("no prefix"),
            "{error}"
        );
        fs::write(&path, r#"{"version":2,"revocations":[]}"#).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("version 2"));
    }
}
