//! Finds the cgroup2 mount and owns test cgroups: created on demand, emptied and removed on Drop.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::wait;

static NEXT_CGROUP: AtomicU32 = AtomicU32::new(0);
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where cgroup2 is mounted (`/sys/fs/cgroup` when unified, `/sys/fs/cgroup/unified` when hybrid).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <fstype> <source> ..."
        let (before, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        before
            .split(' ')
            .nth(4)
            .map(|p| PathBuf::from(unescape_mountinfo(p)))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
pub(crate) fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount() -> PathBuf {
    cgroup2_mount().expect("no cgroup2 mount in /proc/self/mountinfo")
}

/// The cgroup2 path (relative to the mount, leading `/`) that process `pid` is in.
pub fn cgroup_of(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_proc_cgroup(&text)
}

/// The unified-hierarchy entry (`0::/path`) of a /proc/PID/cgroup file.
pub fn parse_proc_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

/// A cgroup the test owns. Dropping it kills every process in it (and its descendants) and removes it.
#[derive(Debug)]
pub struct CgroupGuard {
    dir: PathBuf,
    path: String,
}

impl CgroupGuard {
    /// Creates `/warden-test-<hint>-<pid>-<n>` at the cgroup2 root.
    pub fn new(hint: &str) -> Self {
        let name = format!(
            "warden-test-{hint}-{}-{}",
            std::process::id(),
            NEXT_CGROUP.fetch_add(1, Ordering::Relaxed)
        );
        Self::create(mount(), &format!("/{name}"))
    }

    /// Creates a child cgroup `name` below this one.
    pub fn child(&self, name: &str) -> Self {
        Self::at(&format!("{}/{name}", self.path))
    }

    /// Creates the cgroup at `path` (relative to the cgroup2 mount, leading `/`).
    pub fn at(path: &str) -> Self {
        Self::create(mount(), path)
    }

    fn create(mount: PathBuf, path: &str) -> Self {
        let dir = mount.join(path.trim_start_matches('/'));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
        Self {
            dir,
            path: path.to_owned(),
        }
    }

    /// The path relative to the cgroup2 mount, e.g. `/warden-test-curl-123-0`, as Warden logs it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The directory in cgroupfs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a process writes its pid into to join this cgroup.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// The cgroup id, which on cgroup2 is the inode number of its directory.
    pub fn id(&self) -> u64 {
        fs::metadata(&self.dir)
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.dir.display()))
            .ino()
    }

    /// Processes directly in this cgroup.
    pub fn pids(&self) -> Vec<u32> {
        pids_in(&self.dir)
    }

    /// Kills everything inside, removes the directory (and any children) and creates it again,
    /// which gives it a new id, like systemd does when a unit restarts. Returns the new id.
    pub fn recreate(&self) -> u64 {
        remove_tree(&self.dir).unwrap_or_else(|e| panic!("removing {}: {e}", self.dir.display()));
        fs::create_dir(&self.dir)
            .unwrap_or_else(|e| panic!("re-creating cgroup {}: {e}", self.dir.display()));
        self.id()
    }

    /// Kills everything inside and removes the directory and its children now.
    pub fn remove(&self) {
        remove_tree(&self.dir).unwrap_or_else(|e| panic!("removing {}: {e}", self.dir.display()));
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.dir) {
            let message = format!("cleaning up cgroup {}: {e}", self.dir.display());
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

fn pids_in(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn child_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn pids_below(dir: &Path) -> Vec<u32> {
    let mut pids = pids_in(dir);
    for child in child_dirs(dir) {
        pids.extend(pids_below(&child));
    }
    pids
}

fn kill_all(dir: &Path) {
    // cgroup.kill (Linux 5.14+) kills the whole subtree atomically, without racing with forks.
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() && fs::write(&kill_file, "1").is_ok() {
        return;
    }
    for pid in pids_below(dir) {
        // SAFETY: kill has no memory preconditions; a pid that exited meanwhile yields ESRCH.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

/// Empties the cgroup subtree at `dir` and removes it, deepest first. A missing directory is fine.
fn remove_tree(dir: &Path) -> io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let emptied = wait::within(EMPTY_TIMEOUT, || {
        kill_all(dir);
        pids_below(dir).is_empty().then_some(())
    });
    if emptied.is_none() {
        return Err(io::Error::other(format!(
            "processes {:?} still in the cgroup after {EMPTY_TIMEOUT:?}",
            pids_below(dir)
        )));
    }
    rmdir_tree(dir)
}

fn rmdir_tree(dir: &Path) -> io::Result<()> {
    for child in child_dirs(dir) {
        rmdir_tree(&child)?;
    }
    remove_empty_dir(dir)
}

/// Removes an empty cgroup directory, retrying while the kernel still reports it busy (EBUSY
/// for a moment after its last task exited); absent is fine.
pub fn remove_empty_dir(dir: &Path) -> io::Result<()> {
    let mut last_error = None;
    let removed = wait::within(EMPTY_TIMEOUT, || match fs::remove_dir(dir) {
        Ok(()) => Some(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(()),
        Err(e) => {
            last_error = Some(e);
            None
        }
    });
    match (removed, last_error) {
        (Some(()), _) => Ok(()),
        (None, Some(e)) => Err(e),
        (None, None) => Err(io::Error::other("rmdir timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_octal_sequences_in_mount_points() {
        assert_eq!(unescape_mountinfo(r"/a\040b\\c"), r"/a b\\c");
        assert_eq!(unescape_mountinfo(r"/a\134b"), r"/a\b");
        assert_eq!(unescape_mountinfo("/sys/fs/cgroup"), "/sys/fs/cgroup");
    }

    #[test]
    fn reads_the_unified_entry_of_proc_cgroup() {
        let hybrid = "4:memory:/x\n1:cpu:/\n0::/warden-test-a/child\n";
        assert_eq!(
            parse_proc_cgroup(hybrid).as_deref(),
            Some("/warden-test-a/child")
        );
        assert_eq!(parse_proc_cgroup("0::/\n").as_deref(), Some("/"));
        assert_eq!(parse_proc_cgroup("1:cpu:/\n"), None);
    }
}
