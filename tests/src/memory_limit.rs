//! A memory limit for one process (the daemon under attack), and its OOM-kill count: cgroup2
//! `memory.max` / `memory.events` where cgroup2 has the memory controller, else the cgroup v1
//! memory hierarchy (`memory.limit_in_bytes` / `memory.oom_control`), as on hybrid hosts.
//! Removed on Drop, its processes moved back to the root first.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::cgroup::cgroup2_mount;

static NEXT: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
pub struct MemoryLimit {
    dir: PathBuf,
    root: PathBuf,
    v2: bool,
}

fn has_v2_memory(mount: &Path) -> bool {
    fs::read_to_string(mount.join("cgroup.controllers"))
        .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "memory"))
}

impl MemoryLimit {
    /// A new memory cgroup limited to `bytes`, with nothing in it yet.
    pub fn new(hint: &str, bytes: u64) -> Self {
        let name = format!(
            "warden-test-mem-{hint}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (root, v2) = match cgroup2_mount().filter(|mount| has_v2_memory(mount)) {
            Some(mount) => (mount, true),
            None => (PathBuf::from("/sys/fs/cgroup/memory"), false),
        };
        assert!(
            root.join("cgroup.procs").exists(),
            "no memory cgroup hierarchy at {}",
            root.display()
        );
        if v2 {
            // The memory controller for the root's children (harmless if already on).
            let _ = fs::write(root.join("cgroup.subtree_control"), "+memory");
        }
        let dir = root.join(name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let limit = Self { dir, root, v2 };
        let (file, swap_file) = match v2 {
            true => ("memory.max", "memory.swap.max"),
            false => ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
        };
        limit.write(file, &bytes.to_string());
        // No swap to escape to (the file is absent when the host has no swap accounting).
        let _ = fs::write(limit.dir.join(swap_file), bytes.to_string());
        limit
    }

    fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        fs::write(&path, value).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Moves process `pid` under the limit.
    pub fn add(&self, pid: u32) {
        self.write("cgroup.procs", &pid.to_string());
    }

    /// How many processes the kernel's OOM killer killed under this limit.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.v2 {
            true => "memory.events",
            false => "memory.oom_control",
        };
        let text = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or_else(|| panic!("no oom_kill count in {file}: {text}"))
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        let procs = fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _ = fs::write(self.root.join("cgroup.procs"), pid);
        }
        let _ = fs::remove_dir(&self.dir);
    }
}
