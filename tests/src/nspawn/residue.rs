//! What a container leaves on the host (processes, cgroups in both hierarchies, nspawn's
//! propagation directory), how to find it and remove it, and the check that it is all gone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where nspawn keeps each container's mount propagation directory.
const PROPAGATE_ROOT: &str = "/run/systemd/nspawn/propagate";

/// Everything of one container that must be gone after its guard is dropped.
#[derive(Debug, Clone)]
pub struct Footprint {
    /// systemd-nspawn and the container's PID 1.
    pub processes: Vec<u32>,
    /// The cgroup2 directory nspawn ran in.
    pub cgroup_dir: PathBuf,
    /// Its mirror in the v1 `name=systemd` hierarchy, when the host mounts one (hybrid layout).
    pub mirror_cgroup_dir: Option<PathBuf>,
    /// The guard's tempdir (root mount point, boot target, console log).
    pub dir: PathBuf,
    pub propagate_dir: PathBuf,
}

impl Footprint {
    /// Panics naming whatever is still there: a process, a cgroup, a directory, a mount.
    pub fn assert_gone(&self) {
        for &pid in &self.processes {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "process {pid} is still running"
            );
        }
        let dirs = [Some(&self.cgroup_dir), self.mirror_cgroup_dir.as_ref()];
        for dir in dirs
            .into_iter()
            .flatten()
            .chain([&self.dir, &self.propagate_dir])
        {
            assert!(!dir.exists(), "{} is still there", dir.display());
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
        let dir = self.dir.to_string_lossy();
        assert!(
            !mountinfo.contains(dir.as_ref()),
            "a mount below {dir} is still in the host's mount namespace"
        );
    }
}

/// Processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    parse_ppid(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The parent pid in a /proc/PID/stat line.
fn parse_ppid(stat: &str) -> Option<u32> {
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The process's name (`/proc/PID/comm`), empty once it is gone.
pub fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_owned())
        .unwrap_or_default()
}

/// Whether `pid` lives in a pid namespace other than ours.
pub fn in_other_pid_namespace(pid: u32) -> bool {
    let ours = fs::read_link("/proc/self/ns/pid").ok();
    let theirs = fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    theirs.is_some() && theirs != ours
}

/// `path` (a cgroup2 path, leading `/`) in the v1 `name=systemd` hierarchy, if the host mounts one.
pub fn v1_mirror(path: &str) -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = name_systemd_mount(&mountinfo)?;
    Some(mount.join(path.trim_start_matches('/')))
}

/// Where a mountinfo text mounts the v1 `name=systemd` hierarchy.
fn name_systemd_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mut fields = after.split(' ');
        let fstype = fields.next()?;
        let options = fields.nth(1)?;
        (fstype == "cgroup" && options.split(',').any(|o| o == "name=systemd"))
            .then(|| before.split(' ').nth(4).map(PathBuf::from))?
    })
}

/// Removes a v1 cgroup directory tree, deepest first (its processes must be gone already).
pub fn remove_v1_tree(dir: &Path) -> io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)?.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_v1_tree(&entry.path())?;
        }
    }
    crate::cgroup::remove_empty_dir(dir)
}

pub fn propagate_dir(machine: &str) -> PathBuf {
    Path::new(PROPAGATE_ROOT).join(machine)
}

/// nspawn removes its propagation directory only when /run is a tmpfs; here /run may be on disk.
pub fn remove_propagate_dir(machine: &str) -> Result<(), String> {
    let dir = propagate_dir(machine);
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parent_pid_past_a_comm_with_spaces_and_parentheses() {
        assert_eq!(parse_ppid("4242 (systemd) S 17 4242 4242 0 -1"), Some(17));
        assert_eq!(parse_ppid("9 (a) b (c)) R 3 9 9 0"), Some(3));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn finds_the_name_systemd_hierarchy_and_nothing_else() {
        let hybrid = "\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            name_systemd_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/systemd"))
        );
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(name_systemd_mount(unified), None);
    }
}
