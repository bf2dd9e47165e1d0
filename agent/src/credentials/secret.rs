//! Reading one secret: from a file that only root can read (opened without following a symlink,
//! checked on the open descriptor), or from systemd's `$CREDENTIALS_DIRECTORY`.
use std::{
    io::Read,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::config::credentials::SecretSource;

/// The environment variable systemd sets for a service with `LoadCredential=`.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";
/// API keys are short; a large file is not one.
const MAX_SECRET_BYTES: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: is a symbolic link; point secret_file at the file itself", path.display())]
    Symlink { path: PathBuf },
    #[error("{}: is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: is owned by uid {uid}, not root; run: chown root:root {}", path.display(), path.display())]
    NotRootOwned { path: PathBuf, uid: u32 },
    #[error("{}: mode {mode:04o} lets its group or other users access it; run: chmod 600 {}", path.display(), path.display())]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{}: larger than {MAX_SECRET_BYTES} bytes; an API key file holds the key alone", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{}: holds characters an HTTP header cannot carry (the key must be one line of printable ASCII)", path.display())]
    NotHeaderSafe { path: PathBuf },
    #[error("systemd credential {name}: ${CREDENTIALS_DIRECTORY} is not set (the unit needs LoadCredential={name}:PATH; `warden install` writes it)")]
    NoCredentialsDirectory { name: String },
}

/// Where the secret of `source` is read from now.
pub fn secret_path(source: &SecretSource) -> Result<PathBuf, SecretError> {
    match source {
        SecretSource::File(path) => Ok(path.clone()),
        SecretSource::Systemd(name) => std::env::var_os(CREDENTIALS_DIRECTORY)
            .filter(|dir| !dir.is_empty())
            .map(|dir| Path::new(&dir).join(name))
            .ok_or_else(|| SecretError::NoCredentialsDirectory { name: name.clone() }),
    }
}

/// Reads a secret: a regular file, not a symlink, owned by root, with no group or other
/// permission bits (0600 or 0400), holding one line of printable ASCII (surrounding whitespace,
/// such as the final newline, is dropped). systemd credentials pass the same checks: systemd
/// writes them root-owned and 0400.
pub fn read_secret(path: &Path) -> Result<SecretString, SecretError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        // The final component must not be a symlink: checked by the kernel, not by a racy lstat.
        // O_NONBLOCK: a FIFO put in the key's place must be refused (not a regular file), not
        // hang the start waiting for a writer.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => SecretError::Symlink {
                path: path.to_path_buf(),
            },
            _ => SecretError::Open {
                path: path.to_path_buf(),
                source,
            },
        })?;
    // fstat on the descriptor just opened: what is checked is what is read.
    let metadata = file.metadata().map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let path_buf = || path.to_path_buf();
    if !metadata.file_type().is_file() {
        return Err(SecretError::NotAFile { path: path_buf() });
    }
    if metadata.uid() != 0 {
        return Err(SecretError::NotRootOwned {
            path: path_buf(),
            uid: metadata.uid(),
        });
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::TooOpen {
            path: path_buf(),
            mode,
        });
    }
    if metadata.len() > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge { path: path_buf() });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(metadata.len() as usize));
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| SecretError::Read {
            path: path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge { path: path_buf() });
    }
    let key = bytes.trim_ascii();
    if key.is_empty() {
        return Err(SecretError::Empty { path: path_buf() });
    }
    if !key.iter().all(u8::is_ascii_graphic) {
        return Err(SecretError::NotHeaderSafe { path: path_buf() });
    }
    // Printable ASCII is UTF-8; the buffer read into is zeroized when dropped.
    let key: String = key.iter().map(|&b| char::from(b)).collect();
    Ok(SecretString::from(key))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use secrecy::ExposeSecret;

    use super::*;

    fn secret_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("key");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn as_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn a_root_only_file_is_read_and_trimmed() {
        if !as_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400] {
            let path = secret_file(dir.path(), "sk-real-key-1234\n", mode);
            assert_eq!(
                read_secret(&path).unwrap().expose_secret(),
                "sk-real-key-1234"
            );
        }
    }

    #[test]
    fn group_or_world_access_is_refused_with_the_mode_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660] {
            let path = secret_file(dir.path(), "sk-real-key-1234", mode);
            let error = read_secret(&path).unwrap_err();
            if !as_root() {
                assert!(matches!(error, SecretError::NotRootOwned { .. }), "{error}");
                continue;
            }
            assert!(matches!(error, SecretError::TooOpen { .. }), "{error}");
            let text = error.to_string();
            assert!(text.contains(&format!("mode 0{mode:o}")), "{text}");
            assert!(text.contains("chmod 600"), "{text}");
            assert!(!text.contains("sk-real"), "{text}");
        }
    }

    #[test]
    fn a_symlink_a_directory_a_fifo_an_empty_file_and_a_multiline_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = secret_file(dir.path(), "sk-real-key-1234", 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            read_secret(&link),
            Err(SecretError::Symlink { .. })
        ));
        assert!(matches!(
            read_secret(dir.path()),
            Err(SecretError::NotAFile { .. })
        ));
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c_path` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert!(
            matches!(read_secret(&fifo), Err(SecretError::NotAFile { .. })),
            "a FIFO is refused without waiting for a writer"
        );
        if !as_root() {
            return;
        }
        let empty = secret_file(dir.path(), " \n", 0o600);
        assert!(matches!(
            read_secret(&empty),
            Err(SecretError::Empty { .. })
        ));
        let two_lines = secret_file(dir.path(), "sk-one\nsk-two\n", 0o600);
        assert!(matches!(
            read_secret(&two_lines),
            Err(SecretError::NotHeaderSafe { .. })
        ));
    }

    #[test]
    fn a_systemd_credential_is_read_from_the_credentials_directory() {
        let name = SecretSource::Systemd("openai-prod".into());
        // The variable is process-wide: set and read it in this one test only.
        std::env::set_var(CREDENTIALS_DIRECTORY, "/run/credentials/warden.service");
        assert_eq!(
            secret_path(&name).unwrap(),
            Path::new("/run/credentials/warden.service/openai-prod")
        );
        std::env::remove_var(CREDENTIALS_DIRECTORY);
        let error = secret_path(&name).unwrap_err().to_string();
        assert!(error.contains("LoadCredential=openai-prod"), "{error}");
    }
}
