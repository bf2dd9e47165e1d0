//! An image root for `warden install --root`: a temporary directory with a trust store layout,
//! the commands run against it, and snapshots of every file in it (mode, owner, bytes, mtime).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::client::{Client, ClientOutput};
use crate::env::E2e;

/// Where install writes Warden's unit (a live path).
const UNIT: &str = "/etc/systemd/system/warden.service";

/// The Debian/Ubuntu anchor directory; its presence makes install pick that layout.
pub const DEBIAN_ANCHORS: &str = "/usr/local/share/ca-certificates";
/// The RHEL/Fedora anchor directory.
pub const RHEL_ANCHORS: &str = "/etc/pki/ca-trust/source/anchors";

/// Copying a debug binary of ~200 MB and creating a CA takes a few seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A directory standing for an image's `/`, removed on drop.
pub struct ImageRoot {
    dir: TempDir,
    warden_bin: PathBuf,
}

/// One file system entry as a snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub inode: u64,
    pub mtime_ns: i128,
    /// A hash of the contents (files only).
    pub contents: Option<u64>,
}

impl ImageRoot {
    /// An empty root: no trust store.
    pub fn empty(e2e: &E2e) -> ImageRoot {
        let dir = tempfile::Builder::new()
            .prefix("warden-image-")
            .tempdir()
            .expect("temporary image root");
        ImageRoot {
            dir,
            warden_bin: e2e.warden_bin.clone(),
        }
    }

    /// A root with the Debian trust store layout.
    pub fn debian(e2e: &E2e) -> ImageRoot {
        let root = ImageRoot::empty(e2e);
        fs::create_dir_all(root.join(DEBIAN_ANCHORS)).expect("anchor directory");
        root
    }

    /// A root with the RHEL trust store layout.
    pub fn rhel(e2e: &E2e) -> ImageRoot {
        let root = ImageRoot::empty(e2e);
        fs::create_dir_all(root.join(RHEL_ANCHORS)).expect("anchor directory");
        root
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the live path `live` is in this root.
    pub fn join(&self, live: &str) -> PathBuf {
        self.dir.path().join(live.trim_start_matches('/'))
    }

    pub fn read(&self, live: &str) -> String {
        let path = self.join(live);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Writes `/etc/warden/warden.toml` before install runs (install never overwrites it).
    pub fn write_config(&self, text: &str) {
        let path = self.join("/etc/warden/warden.toml");
        fs::create_dir_all(path.parent().expect("has a parent")).expect("config directory");
        fs::write(&path, text).expect("config");
    }

    /// Runs `warden ARGS` with this root's `--root` appended to install and uninstall.
    /// The environment is the client's clean one: no `WARDEN_CONFIG` leaks in, so install reads
    /// the root's own config.
    pub fn warden(&self, args: &[&str]) -> ClientOutput {
        let mut argv: Vec<OsString> = vec![self.warden_bin.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        if matches!(args.first(), Some(&"install") | Some(&"uninstall")) {
            argv.extend(["--root".into(), self.path().into()]);
        }
        Client::new(argv).timeout(COMMAND_TIMEOUT).run()
    }

    /// `warden install --root DIR ARGS`, which must succeed.
    pub fn install(&self, args: &[&str]) -> ClientOutput {
        let out = self.warden(&[&["install"], args].concat());
        out.assert_success();
        out
    }

    /// `warden uninstall --root DIR ARGS`, which must succeed.
    pub fn uninstall(&self, args: &[&str]) -> ClientOutput {
        let out = self.warden(&[&["uninstall"], args].concat());
        out.assert_success();
        out
    }

    /// The installed warden.service's `systemd-analyze security --offline` exposure score, with
    /// the command's output for messages.
    pub fn unit_exposure(&self) -> (f64, ClientOutput) {
        let unit = self.join(UNIT);
        let security = Client::new([
            "systemd-analyze".as_ref(),
            "security".as_ref(),
            "--offline=yes".as_ref(),
            unit.as_os_str(),
        ])
        .run();
        let score = security
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("→ Overall exposure level for warden.service: "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|score| score.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level\n{security}"));
        (score, security)
    }

    /// Asserts that `systemd-analyze verify` finds nothing to say about warden.service and the
    /// `others` units (live paths). verify checks that ExecStart= exists: the image's
    /// /usr/local/bin is mounted over the host's in a private mount namespace that dies with the
    /// command.
    pub fn assert_unit_verifies_clean(&self, others: &[&str]) {
        let mut argv: Vec<OsString> = [
            "unshare",
            "-m",
            "sh",
            "-c",
            r#"mount --bind "$0" /usr/local/bin && shift && exec systemd-analyze verify "$@""#,
        ]
        .iter()
        .map(OsString::from)
        .collect();
        argv.push(self.join("/usr/local/bin").into_os_string());
        argv.push("ignored".into());
        argv.push(self.join(UNIT).into_os_string());
        argv.extend(others.iter().map(|unit| self.join(unit).into_os_string()));
        let verify = Client::new(argv).run();
        verify.assert_success();
        assert_eq!(
            (verify.stdout.trim(), verify.stderr.trim()),
            ("", ""),
            "systemd-analyze verify is not clean\n{verify}"
        );
    }

    /// Every entry under the root, by path relative to it.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Entry> {
        let mut found = BTreeMap::new();
        let mut pending = vec![self.path().to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).expect("readable directory") {
                let path = entry.expect("directory entry").path();
                let meta = fs::symlink_metadata(&path).expect("metadata");
                let contents = if meta.is_dir() {
                    pending.push(path.clone());
                    None
                } else {
                    Some(hash_file(&path))
                };
                let relative = path
                    .strip_prefix(self.path())
                    .expect("under the root")
                    .to_path_buf();
                found.insert(
                    relative,
                    Entry {
                        mode: meta.mode(),
                        uid: meta.uid(),
                        gid: meta.gid(),
                        inode: meta.ino(),
                        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000
                            + i128::from(meta.mtime_nsec()),
                        contents,
                    },
                );
            }
        }
        found
    }
}

/// A hash of the file's bytes (read in blocks: binaries are large).
pub fn hash_file(path: &Path) -> u64 {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block).expect("readable file");
        if n == 0 {
            return hasher.finish();
        }
        hasher.write(&block[..n]);
    }
}
