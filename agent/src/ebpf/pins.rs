//! Pins in bpffs: the links and maps that keep the programs attached while Warden is not running.
//!
//! `<pin_dir>/links/<program>` holds each program's cgroup link and `<pin_dir>/maps/<MAP>` the maps
//! that the programs and the daemon share. A link that is pinned stays attached when the process
//! that made it exits, however it exits, so a selected process's connect still goes to Warden's
//! port and is refused while nothing listens there (fail closed). A daemon that starts again
//! re-adopts the pins: it swaps its own freshly loaded program into each pinned link
//! (`BPF_LINK_UPDATE`, atomic: there is never a moment with no program or with two), and reuses the
//! pinned maps, so the selection and the origins of connections in flight carry over.
use std::{
    ffi::CString,
    fs, io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::DirBuilderExt},
    },
    path::{Path, PathBuf},
};

use aya::{
    maps::{MapInfo, MapType},
    programs::links::{FdLink, PinnedLink},
};

/// `f_type` of a bpf filesystem (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where systemd (and most distributions) mount the bpf filesystem.
const BPF_FS_MOUNT_POINT: &str = "/sys/fs/bpf";
const LINKS_DIR: &str = "links";
const MAPS_DIR: &str = "maps";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{path} is not on a bpf filesystem ([proxy] pin_dir must be below one; mount it with `mount -t bpf bpf {BPF_FS_MOUNT_POINT}`)")]
    NotBpfFs { path: PathBuf },
    #[error("pin directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mounting a bpf filesystem at {BPF_FS_MOUNT_POINT}: {0}")]
    Mount(#[source] io::Error),
    #[error("pinning link {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("opening pinned link {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: aya::programs::links::LinkError,
    },
}

/// What a map must look like for this build's programs to share it.
#[derive(Clone, Copy, Debug)]
pub struct MapLayout {
    pub name: &'static str,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

impl MapLayout {
    pub const fn new<K, V>(name: &'static str, map_type: MapType, max_entries: u32) -> MapLayout {
        MapLayout {
            name,
            map_type,
            key_size: std::mem::size_of::<K>() as u32,
            value_size: std::mem::size_of::<V>() as u32,
            max_entries,
        }
    }

    fn matches(&self, info: &MapInfo) -> bool {
        info.map_type().is_ok_and(|t| t == self.map_type)
            && info.key_size() == self.key_size
            && info.value_size() == self.value_size
            && info.max_entries() == self.max_entries
    }
}

/// A program's link, held by this process.
pub enum HeldLink {
    /// Pinned: stays attached after this process exits.
    Pinned(PinnedLink),
    /// Held only by this process: detached when it exits.
    Owned(FdLink),
}

/// The pin directory of one Warden daemon.
#[derive(Clone, Debug)]
pub struct PinDir {
    dir: PathBuf,
}

impl PinDir {
    /// Makes sure `dir` is on a bpf filesystem (mounting one at /sys/fs/bpf when that is where
    /// it belongs and nothing is mounted there yet, as systemd would) and creates it, 0700.
    pub fn prepare(dir: &Path) -> Result<PinDir, PinError> {
        let parent = dir.parent().unwrap_or(dir);
        if !is_bpf_fs(parent) {
            if parent == Path::new(BPF_FS_MOUNT_POINT) {
                mount_bpf_fs()?;
            }
            if !is_bpf_fs(parent) {
                return Err(PinError::NotBpfFs {
                    path: parent.to_path_buf(),
                });
            }
        }
        for sub in [dir.to_path_buf(), dir.join(LINKS_DIR), dir.join(MAPS_DIR)] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&sub)
                .map_err(|source| PinError::Dir { path: sub, source })?;
        }
        Ok(PinDir {
            dir: dir.to_path_buf(),
        })
    }

    /// Whether a previous run left pins in `dir`.
    pub fn has_pins(dir: &Path) -> bool {
        [LINKS_DIR, MAPS_DIR].iter().any(|sub| {
            fs::read_dir(dir.join(sub)).is_ok_and(|mut entries| entries.next().is_some())
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.dir.join(MAPS_DIR).join(name)
    }

    fn link_path(&self, program: &str) -> PathBuf {
        self.dir.join(LINKS_DIR).join(program)
    }

    /// Unpins the maps whose layout differs from what this build's programs use (left by another
    /// version): the loader then creates them afresh. Programs still attached from that version
    /// keep their own maps until their links are given this build's programs.
    pub fn drop_incompatible_maps(&self, layouts: &[MapLayout]) {
        for layout in layouts {
            let path = self.map_path(layout.name);
            if !path.exists() {
                continue;
            }
            match MapInfo::from_pin(&path) {
                Ok(info) if layout.matches(&info) => {}
                found => {
                    let found = found.map(|info| {
                        format!(
                            "{:?} key {} value {} entries {}",
                            info.map_type(),
                            info.key_size(),
                            info.value_size(),
                            info.max_entries()
                        )
                    });
                    tracing::warn!(map = layout.name, path = %path.display(), found = ?found, "pinned map has another layout (another Warden version?): starting it afresh");
                    if let Err(error) = fs::remove_file(&path) {
                        tracing::warn!(%error, path = %path.display(), "removing a stale pinned map");
                    }
                }
            }
        }
    }

    /// Gives `program` the link pinned under its name, or attaches it with `attach` and pins the
    /// new link. Returns the link and whether a pinned one was re-adopted.
    pub fn adopt_or_attach(
        &self,
        program: &str,
        program_fd: BorrowedFd<'_>,
        attach: impl FnOnce() -> Result<FdLink, super::EbpfLoadError>,
    ) -> Result<(PinnedLink, bool), super::EbpfLoadError> {
        let path = self.link_path(program);
        if path.exists() {
            match update_pinned_link(&path, program_fd) {
                Ok(()) => {
                    let link = PinnedLink::from_pin(&path)
                        .map_err(|source| PinError::Open { path, source })?;
                    return Ok((link, true));
                }
                Err(error) => {
                    // A link whose cgroup is gone (ENOLINK) or that is not a cgroup link: attach
                    // afresh first, then replace the pin, so the program is never absent.
                    tracing::warn!(%error, path = %path.display(), "pinned link cannot be re-adopted; attaching a new one");
                    let link = attach()?;
                    if let Err(error) = fs::remove_file(&path) {
                        tracing::warn!(%error, path = %path.display(), "removing a stale pinned link");
                    }
                    return Ok((pin(link, path)?, false));
                }
            }
        }
        Ok((pin(attach()?, path)?, false))
    }

    /// Removes every pin under `dir` (links and maps): what is pinned there detaches once no
    /// process holds it. Absent is fine.
    pub fn remove(dir: &Path) -> io::Result<()> {
        match fs::remove_dir_all(dir) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

fn pin(link: FdLink, path: PathBuf) -> Result<PinnedLink, super::EbpfLoadError> {
    link.pin(&path)
        .map_err(|source| PinError::Pin { path, source }.into())
}

/// Unpins a pinned link, keeping it attached only as long as this process holds it.
pub fn unpin(link: PinnedLink) -> io::Result<HeldLink> {
    link.unpin().map(HeldLink::Owned)
}

fn is_bpf_fs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is a valid out-parameter; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above; statfs writes only into `stat`.
    let result = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    result == 0 && stat.f_type as i64 == BPF_FS_MAGIC
}

fn mount_bpf_fs() -> Result<(), PinError> {
    let source = c"bpf";
    let target = c"/sys/fs/bpf";
    let options = c"mode=0700";
    // SAFETY: all pointers are NUL-terminated strings that outlive the call.
    let result = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    if result != 0 {
        return Err(PinError::Mount(io::Error::last_os_error()));
    }
    tracing::info!(path = BPF_FS_MOUNT_POINT, "mounted a bpf filesystem");
    Ok(())
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_UPDATE: libc::c_long = 29;

/// `bpf_attr` for BPF_OBJ_GET.
#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
}

/// `bpf_attr` for BPF_LINK_UPDATE.
#[repr(C)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// Swaps `program` into the link pinned at `path`. aya 0.14 has no public call for this on
/// cgroup links, so it is the raw syscall.
fn update_pinned_link(path: &Path, program: BorrowedFd<'_>) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let get = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
    };
    // SAFETY: `get` is a live bpf_attr prefix of the size passed, and its path outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &get as *const ObjGetAttr,
            std::mem::size_of::<ObjGetAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let update = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: program.as_raw_fd() as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    // SAFETY: `update` is a live bpf_attr prefix of the size passed; both fds are open.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_UPDATE,
            &update as *const LinkUpdateAttr,
            std::mem::size_of::<LinkUpdateAttr>(),
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_dir_off_bpffs_is_refused_naming_the_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let error = PinDir::prepare(&dir.path().join("warden")).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(&dir.path().display().to_string()),
            "{text}"
        );
        assert!(text.contains("mount -t bpf bpf /sys/fs/bpf"), "{text}");
        assert!(
            !dir.path().join("warden").exists(),
            "nothing created off bpffs"
        );
    }

    #[test]
    fn pins_are_found_in_links_or_maps_and_removal_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let pins = dir.path().join("warden");
        assert!(!PinDir::has_pins(&pins));
        fs::create_dir_all(pins.join(LINKS_DIR)).unwrap();
        assert!(!PinDir::has_pins(&pins), "empty directories are no pins");
        fs::write(pins.join(LINKS_DIR).join("warden_connect4"), "").unwrap();
        assert!(PinDir::has_pins(&pins));
        PinDir::remove(&pins).unwrap();
        assert!(!pins.exists());
        PinDir::remove(&pins).unwrap();
    }

    #[test]
    fn map_layouts_take_their_sizes_from_the_shared_types() {
        let layout = MapLayout::new::<u64, warden_ebpf::Origin>("ORIGINS", MapType::LruHash, 7);
        assert_eq!(layout.key_size, 8);
        assert_eq!(
            layout.value_size as usize,
            std::mem::size_of::<warden_ebpf::Origin>()
        );
        assert_eq!(layout.max_entries, 7);
    }
}
