//! Idempotent file-system actions that report what they did, or in a dry run what they would do.
use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use super::InstallError;

/// What one step did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Removed,
    /// Nothing to remove.
    Absent,
    /// A command ran.
    Ran,
    /// Not done, and not needed here (e.g. systemctl without systemd); the subject says why.
    Skipped,
    /// Not done here (`--root`): the subject says what the image must do.
    Deferred,
}

impl Outcome {
    /// Whether the step changed (or would change) the system.
    pub fn changed(self) -> bool {
        matches!(
            self,
            Outcome::Created | Outcome::Updated | Outcome::Removed | Outcome::Ran
        )
    }

    fn verb(self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (Outcome::Created, false) => "created",
            (Outcome::Created, true) => "would create",
            (Outcome::Updated, false) => "updated",
            (Outcome::Updated, true) => "would update",
            (Outcome::Removed, false) => "removed",
            (Outcome::Removed, true) => "would remove",
            (Outcome::Ran, false) => "ran",
            (Outcome::Ran, true) => "would run",
            (Outcome::Unchanged, _) => "unchanged",
            (Outcome::Absent, _) => "absent",
            (Outcome::Skipped, _) => "skipped",
            (Outcome::Deferred, _) => "not run",
        }
    }
}

/// One reported step: e.g. `created      /etc/warden/warden.toml (commented defaults)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub outcome: Outcome,
    pub subject: String,
    pub dry_run: bool,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<13} {}",
            self.outcome.verb(self.dry_run),
            self.subject
        )
    }
}

/// Runs steps (or only plans them, in a dry run), reporting each one to `sink` as it happens.
pub struct Steps<'a> {
    dry_run: bool,
    changes: usize,
    sink: &'a mut dyn FnMut(&Step),
}

impl<'a> Steps<'a> {
    pub fn new(dry_run: bool, sink: &'a mut dyn FnMut(&Step)) -> Steps<'a> {
        Steps {
            dry_run,
            changes: 0,
            sink,
        }
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// How many steps changed (or would change) something.
    pub fn changes(&self) -> usize {
        self.changes
    }

    /// Reports a step decided elsewhere (commands, notes); returns its outcome.
    pub fn report(&mut self, outcome: Outcome, subject: impl Into<String>) -> Outcome {
        if outcome.changed() {
            self.changes += 1;
        }
        (self.sink)(&Step {
            outcome,
            subject: subject.into(),
            dry_run: self.dry_run,
        });
        outcome
    }

    /// A directory with exactly `mode`; its parents are created as needed (0755).
    pub fn dir(&mut self, path: &Path, mode: u32, what: &str) -> Result<Outcome, InstallError> {
        let outcome = match fs::metadata(path) {
            Ok(meta) if !meta.is_dir() => {
                return Err(InstallError::Io {
                    action: "creating directory",
                    path: path.to_path_buf(),
                    source: io::Error::other("a file of that name is in the way"),
                })
            }
            Ok(meta) if meta.permissions().mode() & 0o7777 == mode => Outcome::Unchanged,
            Ok(_) => Outcome::Updated,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Outcome::Created,
            Err(e) => return Err(InstallError::io("reading", path)(e)),
        };
        if !self.dry_run {
            if outcome == Outcome::Created {
                fs::create_dir_all(path).map_err(InstallError::io("creating directory", path))?;
            }
            if outcome != Outcome::Unchanged {
                set_mode(path, mode)?;
            }
        }
        Ok(self.report(outcome, describe(path, what, mode)))
    }

    /// A file holding exactly `contents` with `mode`, replaced (atomically) when it differs.
    pub fn file(
        &mut self,
        path: &Path,
        contents: &[u8],
        mode: u32,
        what: &str,
    ) -> Result<Outcome, InstallError> {
        let outcome = compare(path, mode, |file| same_contents(file, &mut &contents[..]))?;
        if !self.dry_run {
            match outcome {
                Outcome::Created | Outcome::Updated if content_differs(path, contents) => {
                    write_atomically(path, mode, |file| file.write_all(contents))?
                }
                Outcome::Updated => set_mode(path, mode)?,
                _ => {}
            }
        }
        Ok(self.report(outcome, describe(path, what, mode)))
    }

    /// A file created with `contents` when absent; an existing one is never touched.
    pub fn file_once(
        &mut self,
        path: &Path,
        contents: &[u8],
        mode: u32,
        what: &str,
    ) -> Result<Outcome, InstallError> {
        if path
            .try_exists()
            .map_err(InstallError::io("reading", path))?
        {
            let subject = format!("{} (exists: kept as it is)", path.display());
            return Ok(self.report(Outcome::Unchanged, subject));
        }
        self.file(path, contents, mode, what)
    }

    /// `dest` a byte-for-byte copy of `source` with `mode`, replaced (atomically) when it differs.
    pub fn copy(
        &mut self,
        source: &Path,
        dest: &Path,
        mode: u32,
        what: &str,
    ) -> Result<Outcome, InstallError> {
        let open_source = || File::open(source).map_err(InstallError::io("reading", source));
        let mut from = open_source()?;
        let outcome = compare(dest, mode, |file| same_contents(file, &mut from))?;
        if !self.dry_run && outcome != Outcome::Unchanged {
            let mut from = open_source()?;
            write_atomically(dest, mode, |file| io::copy(&mut from, file).map(drop))?;
        }
        Ok(self.report(outcome, describe(dest, what, mode)))
    }

    /// Removes a file (or symlink); absent is fine.
    pub fn remove_file(&mut self, path: &Path, what: &str) -> Result<Outcome, InstallError> {
        self.remove(path, what, |p| fs::remove_file(p))
    }

    /// Removes a directory and everything in it; absent is fine.
    pub fn remove_tree(&mut self, path: &Path, what: &str) -> Result<Outcome, InstallError> {
        self.remove(path, what, |p| fs::remove_dir_all(p))
    }

    fn remove(
        &mut self,
        path: &Path,
        what: &str,
        remove: fn(&Path) -> io::Result<()>,
    ) -> Result<Outcome, InstallError> {
        let outcome = match fs::symlink_metadata(path) {
            Ok(_) => Outcome::Removed,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Outcome::Absent,
            Err(e) => return Err(InstallError::io("reading", path)(e)),
        };
        if !self.dry_run && outcome == Outcome::Removed {
            remove(path).map_err(InstallError::io("removing", path))?;
        }
        Ok(self.report(outcome, format!("{} ({what})", path.display())))
    }
}

fn describe(path: &Path, what: &str, mode: u32) -> String {
    format!("{} ({what}, {mode:04o})", path.display())
}

/// Created when `path` is absent, Unchanged when `same` holds for it and its mode is `mode`,
/// Updated otherwise.
fn compare(
    path: &Path,
    mode: u32,
    same: impl FnOnce(&mut File) -> io::Result<bool>,
) -> Result<Outcome, InstallError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Created),
        Err(e) => return Err(InstallError::io("reading", path)(e)),
    };
    let meta = file.metadata().map_err(InstallError::io("reading", path))?;
    if !meta.is_file() {
        return Err(InstallError::Io {
            action: "writing",
            path: path.to_path_buf(),
            source: io::Error::other("not a regular file"),
        });
    }
    let same_mode = meta.permissions().mode() & 0o7777 == mode;
    let same = same(&mut file).map_err(InstallError::io("reading", path))?;
    Ok(if same && same_mode {
        Outcome::Unchanged
    } else {
        Outcome::Updated
    })
}

fn content_differs(path: &Path, contents: &[u8]) -> bool {
    fs::read(path).map_or(true, |existing| existing != contents)
}

/// Whether two readers yield the same bytes, compared in blocks (binaries are large).
fn same_contents(a: &mut impl Read, b: &mut impl Read) -> io::Result<bool> {
    let (mut block_a, mut block_b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(a, &mut block_a)?;
        let m = read_full(b, &mut block_b)?;
        if block_a[..n] != block_b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Fills `buf` unless the reader ends first; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), InstallError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(InstallError::io("setting the mode of", path))
}

/// Writes a sibling temporary file and renames it over `path`, so that a reader (or a running
/// binary) never sees half a file.
fn write_atomically(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), InstallError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(InstallError::io("writing", path)(io::Error::other(
            "not a file path",
        )));
    };
    fs::create_dir_all(parent).map_err(InstallError::io("creating directory", parent))?;
    let temporary = parent.join(format!(".{}.warden-new", name.to_string_lossy()));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .and_then(|mut file| {
            write(&mut file)?;
            // The umask may have narrowed the mode given at creation.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, path));
    written.map_err(|source| {
        let _ = fs::remove_file(&temporary);
        InstallError::Io {
            action: "writing",
            path: path.to_path_buf(),
            source,
        }
    })
}
