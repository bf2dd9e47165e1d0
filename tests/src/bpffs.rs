//! A private bpf filesystem for one test daemon's pins, unmounted (so every pin in it released,
//! detaching what it kept attached) on Drop.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A bpffs instance mounted at a directory of the caller's. Each `mount -t bpf` is a new, empty
/// instance, so the pins of one test never meet another's, nor the host's /sys/fs/bpf.
#[derive(Debug)]
pub struct BpfFs {
    mount_point: PathBuf,
}

impl BpfFs {
    /// Mounts a fresh bpffs at `mount_point` (created if needed).
    pub fn mount(mount_point: &Path) -> Self {
        fs::create_dir_all(mount_point).expect("creating the bpffs mount point");
        let target = c_path(mount_point);
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let result = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                c"mode=0700".as_ptr().cast(),
            )
        };
        assert_eq!(
            result,
            0,
            "mounting a bpf filesystem at {}: {}",
            mount_point.display(),
            std::io::Error::last_os_error()
        );
        Self {
            mount_point: mount_point.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// The file names pinned under `dir` (relative to the mount), sorted; empty if it is absent.
    pub fn pins_in(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.mount_point.join(dir))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let target = c_path(&self.mount_point);
        // MNT_DETACH: a daemon that is somehow still running must not keep the mount alive.
        // SAFETY: the path is a NUL-terminated string that outlives the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        let _ = fs::remove_dir(&self.mount_point);
    }
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("a path without NUL bytes")
}
