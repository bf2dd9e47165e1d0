//! A memory-limited cgroup that really OOM-kills what it holds: cgroup2's memory controller where
//! the cgroup2 root delegates it, otherwise the v1 memory hierarchy (hybrid hosts).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::cgroup::{cgroup2_mount, remove_empty_dir, unescape_mountinfo};

static NEXT_MEMCG: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hierarchy {
    V1,
    V2,
}

/// Removed on Drop, its remaining processes first moved back to the hierarchy's root.
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    root: PathBuf,
    hierarchy: Hierarchy,
}

impl MemoryCgroup {
    /// Creates `warden-test-<hint>-<pid>-<n>` in whichever memory hierarchy this host has.
    pub fn new(hint: &str) -> Self {
        let (root, hierarchy) = memory_root().expect(
            "no memory controller: neither in the cgroup2 root's cgroup.subtree_control nor a \
             cgroup v1 memory hierarchy in /proc/self/mountinfo",
        );
        let name = format!(
            "warden-test-{hint}-{}-{}",
            std::process::id(),
            NEXT_MEMCG.fetch_add(1, Ordering::Relaxed)
        );
        let dir = root.join(name);
        fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("creating memory cgroup {}: {e}", dir.display()));
        Self {
            dir,
            root,
            hierarchy,
        }
    }

    /// Moves process `pid` (all its threads) in.
    pub fn add(&self, pid: u32) {
        write(&self.dir.join("cgroup.procs"), &pid.to_string());
    }

    /// Bytes charged to the cgroup now.
    pub fn usage(&self) -> u64 {
        let file = match self.hierarchy {
            Hierarchy::V1 => "memory.usage_in_bytes",
            Hierarchy::V2 => "memory.current",
        };
        let text = read(&self.dir.join(file));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{file}: {text:?}: {e}"))
    }

    /// Sets the hard limit; past it, what cannot be reclaimed is OOM-killed.
    pub fn limit(&self, bytes: u64) {
        let file = match self.hierarchy {
            Hierarchy::V1 => "memory.limit_in_bytes",
            Hierarchy::V2 => "memory.max",
        };
        write(&self.dir.join(file), &bytes.to_string());
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.hierarchy {
            Hierarchy::V1 => "memory.oom_control",
            Hierarchy::V2 => "memory.events",
        };
        let text = read(&self.dir.join(file));
        text.lines()
            .find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no oom_kill line in {file}: {text:?}"))
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        if let Ok(procs) = fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
        if let Err(e) = remove_empty_dir(&self.dir) {
            let message = format!("cleaning up memory cgroup {}: {e}", self.dir.display());
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// cgroup2's root when it hands the memory controller to its children, else the v1 memory mount.
fn memory_root() -> Option<(PathBuf, Hierarchy)> {
    if let Some(root) = cgroup2_mount() {
        let delegated = fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
        if delegated.split_whitespace().any(|c| c == "memory") {
            return Some((root, Hierarchy::V2));
        }
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        // "... <mount point> <options> [optional...] - cgroup <source> <super options>"
        let (before, after) = line.split_once(" - ")?;
        let mut fields = after.split(' ');
        let is_memory = fields.next()? == "cgroup"
            && fields.nth(1)?.split(',').any(|option| option == "memory");
        let mount_point = before.split(' ').nth(4)?;
        is_memory.then(|| {
            (
                PathBuf::from(unescape_mountinfo(mount_point)),
                Hierarchy::V1,
            )
        })
    })
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {text} to {}: {e}", path.display()));
}
