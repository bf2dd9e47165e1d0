//! cgroup v2 filesystem: find the mount, map cgroup paths to ids and back, find unit cgroups.
//!
//! Paths handed around in Warden are relative to the cgroup2 mount and start with `/`
//! (`/system.slice/agent.service`), the form `/proc/PID/cgroup` uses. The mount point differs between
//! hosts (`/sys/fs/cgroup` unified, `/sys/fs/cgroup/unified` hybrid), so it is always discovered.
use std::{
    fs, io,
    os::unix::{ffi::OsStringExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

/// How deep a tree walk goes before giving up (systemd trees are far shallower).
const MAX_WALK_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo)")]
    NoCgroup2Mount,
    #[error("reading /proc/self/mountinfo: {0}")]
    MountInfo(#[source] io::Error),
    #[error("cgroup path {0:?} must be absolute (relative to the cgroup2 mount) and must not contain '..'")]
    InvalidPath(String),
}

/// The cgroup2 hierarchy of this host.
#[derive(Clone, Debug)]
pub struct CgroupFs {
    mount: PathBuf,
}

impl CgroupFs {
    /// Finds the cgroup2 mount in /proc/self/mountinfo.
    pub fn discover() -> Result<Self, CgroupError> {
        // Read as bytes: mount points need not be UTF-8, and one such line must not hide the rest.
        let mountinfo = fs::read("/proc/self/mountinfo").map_err(CgroupError::MountInfo)?;
        mountinfo
            .split(|&b| b == b'\n')
            .find_map(cgroup2_mount_point)
            .map(|mount| CgroupFs { mount })
            .ok_or(CgroupError::NoCgroup2Mount)
    }

    /// A hierarchy mounted at `mount` (for tests).
    pub fn at(mount: impl Into<PathBuf>) -> Self {
        CgroupFs {
            mount: mount.into(),
        }
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The directory of the cgroup at `path` (`/a/b` → `<mount>/a/b`).
    pub fn dir(&self, path: &str) -> Result<PathBuf, CgroupError> {
        validate_path(path)?;
        Ok(self.mount.join(path.trim_start_matches('/')))
    }

    /// The cgroup id: the inode number of its directory, which is what
    /// `bpf_get_current_cgroup_id` returns.
    pub fn id_of(&self, path: &str) -> io::Result<u64> {
        let dir = self
            .dir(path)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(fs::metadata(dir)?.ino())
    }

    /// The path of the cgroup whose id is `id`, by walking the tree. Slow on big hosts: callers cache.
    pub fn path_of_id(&self, id: u64) -> Option<String> {
        self.walk_find(|_, meta| meta.ino() == id)
    }

    /// The shallowest cgroup named after a systemd unit (`billing-agent.service`).
    pub fn find_unit(&self, unit: &str) -> Option<String> {
        self.walk_find(|name, _| name == unit)
    }

    /// Breadth-first search, so the shallowest match wins.
    fn walk_find(&self, matches: impl Fn(&str, &fs::Metadata) -> bool) -> Option<String> {
        let root = fs::metadata(&self.mount).ok()?;
        if matches("", &root) {
            return Some("/".to_string());
        }
        let mut level = vec![self.mount.clone()];
        for _ in 0..MAX_WALK_DEPTH {
            let mut next = Vec::new();
            for dir in &level {
                let Ok(entries) = fs::read_dir(dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let Ok(meta) = entry.metadata() else { continue };
                    if !meta.is_dir() {
                        continue;
                    }
                    let name = entry.file_name();
                    if matches(&name.to_string_lossy(), &meta) {
                        return Some(self.relative(&entry.path()));
                    }
                    next.push(entry.path());
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        None
    }

    fn relative(&self, dir: &Path) -> String {
        let rel = dir.strip_prefix(&self.mount).unwrap_or(dir);
        format!("/{}", rel.display())
    }
}

/// Cgroup paths come from config and the admin socket: refuse anything that could escape the mount.
pub fn validate_path(path: &str) -> Result<(), CgroupError> {
    let escapes = path.split('/').any(|part| part == ".." || part == ".");
    if !path.starts_with('/') || escapes || path.contains('\0') {
        return Err(CgroupError::InvalidPath(path.to_string()));
    }
    Ok(())
}

/// The mount point of a mountinfo line if its filesystem type is cgroup2.
fn cgroup2_mount_point(line: &[u8]) -> Option<PathBuf> {
    // Fields: id parent major:minor root mount-point options [optional...] - fstype source super-options
    let separator = line.windows(3).position(|w| w == b" - ")?;
    let (before, after) = (&line[..separator], &line[separator + 3..]);
    if after.split(|&b| b == b' ').next()? != b"cgroup2" {
        return None;
    }
    let mount_point = before.split(|&b| b == b' ').nth(4)?;
    Some(PathBuf::from(std::ffi::OsString::from_vec(
        unescape_mountinfo(mount_point),
    )))
}

/// mountinfo escapes space, tab, newline and backslash as three octal digits (`\040`).
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|_| field[i] == b'\\')
            .and_then(|digits| {
                let text = std::str::from_utf8(digits).ok()?;
                u8::from_str_radix(text, 8).ok()
            });
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_and_unified_mounts() {
        let hybrid = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        assert_eq!(
            cgroup2_mount_point(hybrid.as_bytes()),
            Some("/sys/fs/cgroup/unified".into())
        );
        let unified =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate";
        assert_eq!(
            cgroup2_mount_point(unified.as_bytes()),
            Some("/sys/fs/cgroup".into())
        );
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu";
        assert_eq!(cgroup2_mount_point(v1.as_bytes()), None);
        let spaced = "41 31 0:38 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw";
        assert_eq!(
            cgroup2_mount_point(spaced.as_bytes()),
            Some("/mnt/cg two".into())
        );
        let non_utf8 = b"41 31 0:38 / /mnt/\xff\\04 rw - cgroup2 cgroup2 rw";
        let odd = cgroup2_mount_point(non_utf8).expect("non-UTF-8 mount point");
        assert_eq!(odd.as_os_str().as_encoded_bytes(), b"/mnt/\xff\\04");
    }

    #[test]
    fn refuses_paths_that_escape() {
        assert!(validate_path("/system.slice/a.service").is_ok());
        assert!(validate_path("/").is_ok());
        assert!(validate_path("relative").is_err());
        assert!(validate_path("/a/../../etc").is_err());
    }

    #[test]
    fn walks_a_tree_by_name_and_inode() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("system.slice/billing-agent.service/child")).unwrap();
        let cg = CgroupFs::at(tmp.path());
        assert_eq!(
            cg.find_unit("billing-agent.service").as_deref(),
            Some("/system.slice/billing-agent.service")
        );
        let id = cg
            .id_of("/system.slice/billing-agent.service/child")
            .unwrap();
        assert_eq!(
            cg.path_of_id(id).as_deref(),
            Some("/system.slice/billing-agent.service/child")
        );
        assert_eq!(cg.find_unit("absent.service"), None);
    }
}
