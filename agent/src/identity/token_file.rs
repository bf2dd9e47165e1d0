//! Reads a container's service-account token file without letting the container redirect the read.
use std::{
    ffi::CString,
    fs::File,
    io::{self, Read},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::fs::OpenOptionsExt,
    },
    path::Path,
};

use super::service_account::{MAX_TOKEN_BYTES, TOKEN_PATH};

/// openat2 asks for a retry (EAGAIN) when a concurrent rename could have let ".." escape the root.
const RESOLVE_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("opening the container root: {0}")]
    OpenRoot(io::Error),
    #[error("resolving the token path inside the container root: {0}")]
    Resolve(io::Error),
    #[error("inspecting the token file: {0}")]
    Stat(io::Error),
    #[error("the token path is not a regular file")]
    NotRegularFile,
    #[error("reading the token file: {0}")]
    Read(io::Error),
    #[error("the token file is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token file is not UTF-8")]
    NotUtf8,
}

/// The token of the container whose root directory is `root` (like `/proc/PID/root`), or None when
/// there is none or it cannot be read safely.
pub fn read_token(root: &Path) -> Option<String> {
    let opened = File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(root)
        .map_err(TokenFileError::OpenRoot);
    log_failure(opened.and_then(|root| try_read_token_at(root.as_fd())))
}

/// Like [`read_token`], for an already open root directory (any open mode, O_PATH included).
pub fn read_token_at(root: BorrowedFd<'_>) -> Option<String> {
    log_failure(try_read_token_at(root))
}

fn log_failure(read: Result<String, TokenFileError>) -> Option<String> {
    match read {
        Ok(token) => Some(token),
        // The usual case: a host process, or a pod without an automounted token.
        Err(TokenFileError::Resolve(e)) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::debug!(error = %e, "service account token not read");
            None
        }
    }
}

fn try_read_token_at(root: BorrowedFd<'_>) -> Result<String, TokenFileError> {
    let path = File::from(open_in_root(root, TOKEN_PATH).map_err(TokenFileError::Resolve)?);
    let metadata = path.metadata().map_err(TokenFileError::Stat)?;
    if !metadata.file_type().is_file() {
        return Err(TokenFileError::NotRegularFile);
    }
    // The O_PATH descriptor pins the inode that was checked; reopening it through /proc/self/fd
    // reads exactly that file. O_NONBLOCK and O_NOCTTY are belt and braces: it is a regular file.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", path.as_raw_fd()))
        .map_err(TokenFileError::Read)?;
    let mut token = Vec::new();
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut token)
        .map_err(TokenFileError::Read)?;
    if token.len() as u64 > MAX_TOKEN_BYTES {
        return Err(TokenFileError::TooLarge);
    }
    String::from_utf8(token).map_err(|_| TokenFileError::NotUtf8)
}

/// An O_PATH descriptor for `path` resolved with `root` as "/": absolute symlinks and ".." stay
/// inside it, and magic links (/proc/PID/fd/N, /proc/PID/root) are refused. Symlinks are otherwise
/// followed, since kubelet's token is `token -> ..data/token`, `..data -> ..<timestamp>`.
/// O_PATH never runs a device's open handler and never waits for a FIFO's writer.
fn open_in_root(root: BorrowedFd<'_>, path: &str) -> io::Result<OwnedFd> {
    let path = CString::new(path)?;
    // SAFETY: open_how is three integers, for which all-zeroes is valid (and means "unset").
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = u64::from((libc::O_PATH | libc::O_CLOEXEC).unsigned_abs());
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let mut error = io::Error::from_raw_os_error(libc::EAGAIN);
    for _ in 0..RESOLVE_ATTEMPTS {
        // SAFETY: root is an open descriptor, path a NUL-terminated string and how an open_how
        // whose exact size is passed with it; all outlive the call and the kernel only reads them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if rc >= 0 {
            let fd =
                RawFd::try_from(rc).map_err(|_| io::Error::other("descriptor out of range"))?;
            // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EAGAIN) {
            break;
        }
    }
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{os::unix::fs::symlink, path::PathBuf, sync::mpsc, time::Duration};

    const TOKEN: &str = "header.claims.signature";

    /// A fake container root with kubelet's token directory, the token path left to the test.
    fn fake_root() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root
            .path()
            .join("var/run/secrets/kubernetes.io/serviceaccount");
        std::fs::create_dir_all(&dir).unwrap();
        (root, dir)
    }

    /// Runs `read_token` on another thread so a blocking open fails the test instead of hanging it.
    fn read_within_a_second(root: &Path) -> Option<String> {
        let root = root.to_path_buf();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || sender.send(read_token(&root)));
        receiver
            .recv_timeout(Duration::from_secs(1))
            .expect("read_token blocked")
    }

    #[test]
    fn follows_kubelets_relative_symlink_chain() {
        let (root, dir) = fake_root();
        std::fs::create_dir(dir.join("..2024_05_01_10_00_00.123")).unwrap();
        std::fs::write(dir.join("..2024_05_01_10_00_00.123/token"), TOKEN).unwrap();
        symlink("..2024_05_01_10_00_00.123", dir.join("..data")).unwrap();
        symlink("..data/token", dir.join("token")).unwrap();
        assert_eq!(read_within_a_second(root.path()).as_deref(), Some(TOKEN));
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let (root, dir) = fake_root();
        symlink("/etc/hostname", dir.join("token")).unwrap();
        // Nothing at <root>/etc/hostname: the host's /etc/hostname must not be read instead.
        assert_eq!(read_within_a_second(root.path()), None);
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/hostname"), "inside").unwrap();
        assert_eq!(read_within_a_second(root.path()).as_deref(), Some("inside"));
    }

    #[test]
    fn dot_dot_cannot_climb_out_of_the_root() {
        let (root, dir) = fake_root();
        symlink(
            "../../../../../../../../../../etc/hostname",
            dir.join("token"),
        )
        .unwrap();
        assert_eq!(read_within_a_second(root.path()), None);
    }

    #[test]
    fn magic_links_are_refused() {
        // A container's own /proc holds magic links that lead out of its root; the host's serves.
        let host_root = File::open("/").unwrap();
        assert!(open_in_root(host_root.as_fd(), "etc").is_ok());
        let refused = open_in_root(host_root.as_fd(), "proc/self/root/etc").unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn a_fifo_does_not_block() {
        let (root, dir) = fake_root();
        let fifo = std::ffi::CString::new(dir.join("token").into_os_string().into_encoded_bytes())
            .unwrap();
        // SAFETY: fifo is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(read_within_a_second(root.path()), None);
    }

    #[test]
    fn a_directory_or_nothing_reads_as_none() {
        let (root, dir) = fake_root();
        assert_eq!(read_within_a_second(root.path()), None);
        std::fs::create_dir(dir.join("token")).unwrap();
        assert_eq!(read_within_a_second(root.path()), None);
        let fd = File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(root.path())
            .unwrap();
        assert!(matches!(
            try_read_token_at(fd.as_fd()),
            Err(TokenFileError::NotRegularFile)
        ));
    }

    #[test]
    fn oversized_and_binary_files_are_refused() {
        let (root, dir) = fake_root();
        let fd = File::open(root.path()).unwrap();
        let limit = usize::try_from(MAX_TOKEN_BYTES).unwrap();
        std::fs::write(dir.join("token"), "a".repeat(limit)).unwrap();
        assert_eq!(read_token_at(fd.as_fd()).map(|t| t.len()), Some(limit));
        std::fs::write(dir.join("token"), "a".repeat(limit + 1)).unwrap();
        assert!(matches!(
            try_read_token_at(fd.as_fd()),
            Err(TokenFileError::TooLarge)
        ));
        std::fs::write(dir.join("token"), [0xff, 0xfe]).unwrap();
        assert!(matches!(
            try_read_token_at(fd.as_fd()),
            Err(TokenFileError::NotUtf8)
        ));
    }
}
