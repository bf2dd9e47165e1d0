//! A small tmpfs mounted at a test's directory (a disk that fills up on demand), unmounted on Drop.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A tmpfs of a fixed size at a directory of the caller's.
#[derive(Debug)]
pub struct Tmpfs {
    mount_point: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_bytes`, mode 0700, at `mount_point` (created if needed).
    pub fn mount(mount_point: &Path, size_bytes: u64) -> Self {
        fs::create_dir_all(mount_point).expect("creating the tmpfs mount point");
        let target = c_path(mount_point);
        let options = CString::new(format!("size={size_bytes},mode=0700")).expect("no NUL");
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let result = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        assert_eq!(
            result,
            0,
            "mounting a tmpfs at {}: {}",
            mount_point.display(),
            io::Error::last_os_error()
        );
        Self {
            mount_point: mount_point.to_path_buf(),
        }
    }

    /// Writes `name` until the filesystem is full (ENOSPC); returns the bytes written.
    pub fn fill(&self, name: &str) -> u64 {
        let path = self.mount_point.join(name);
        let mut file =
            File::create(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let block = vec![0xa5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        // Page-sized leftovers: a write of one byte fills the last partial page, if any.
        while let Ok(1) = file.write(&[0xa5]) {
            written += 1;
        }
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = c_path(&self.mount_point);
        // MNT_DETACH: a process that still holds a file in it must not keep the mount alive.
        // SAFETY: the path is a NUL-terminated string that outlives the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("a path without NUL bytes")
}
