//! A sink's cursor: the last record its receiver acknowledged, kept in `state_dir/sinks/NAME.cursor`.
//!
//! The file holds the record's seq and hash, so a store replaced under the sink (its seq reused by
//! another record) is told apart from the same store. Written to a temporary file, fsynced, renamed
//! over the old one and the directory fsynced: a crash leaves the old cursor or the new one.
use std::{
    fs::{self, DirBuilder, File, OpenOptions, Permissions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Where a sink stands: every record up to `seq` was acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub seq: u64,
    /// The hex hash of record `seq` (empty at 0).
    pub hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("sink cursor {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sink cursor {}: unreadable ({reason}); move it away to start the sink over", path.display())]
    Unreadable { path: PathBuf, reason: String },
}

#[derive(Clone, Debug)]
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    /// The cursor of sink `name` under `state_dir`; creates `state_dir/sinks` (0700).
    pub fn new(state_dir: &Path, name: &str) -> Result<CursorFile, CursorError> {
        let dir = state_dir.join("sinks");
        let io = |source| CursorError::Io {
            path: dir.clone(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        fs::set_permissions(&dir, Permissions::from_mode(0o700)).map_err(io)?;
        Ok(CursorFile {
            path: dir.join(format!("{name}.cursor")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// None when the sink has no cursor yet (it is new).
    pub fn load(&self) -> Result<Option<Cursor>, CursorError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => {
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|err| CursorError::Unreadable {
                        path: self.path.clone(),
                        reason: err.to_string(),
                    })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CursorError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replaces the cursor durably (see the module's doc).
    pub fn store(&self, cursor: &Cursor) -> Result<(), CursorError> {
        let io = |source| CursorError::Io {
            path: self.path.clone(),
            source,
        };
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)
            .map_err(io)?;
        let text = serde_json::to_string(cursor).map_err(|err| io(std::io::Error::other(err)))?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&temporary, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_a_reopen_in_a_private_file() {
        let state = tempfile::tempdir().unwrap();
        let file = CursorFile::new(state.path(), "siem").unwrap();
        assert_eq!(file.load().unwrap(), None, "a new sink has no cursor");
        let cursor = Cursor {
            seq: 42,
            hash: "ab".repeat(32),
        };
        file.store(&cursor).unwrap();
        file.store(&Cursor {
            seq: 43,
            ..cursor.clone()
        })
        .unwrap();
        let reopened = CursorFile::new(state.path(), "siem").unwrap();
        assert_eq!(reopened.load().unwrap().unwrap().seq, 43);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(reopened.path()), 0o600);
        assert_eq!(mode(&state.path().join("sinks")), 0o700);
        assert!(!state.path().join("sinks/siem.cursor.tmp").exists());
    }

    #[test]
    fn a_damaged_cursor_is_an_error_not_a_restart() {
        let state = tempfile::tempdir().unwrap();
        let file = CursorFile::new(state.path(), "siem").unwrap();
        fs::write(file.path(), "garbage").unwrap();
        let error = file.load().unwrap_err().to_string();
        assert!(error.contains("move it away"), "{error}");
    }
}
