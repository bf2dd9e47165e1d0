//! The request journal: where a request's record becomes durable before the request is
//! forwarded. The request's own task appends it (one O_APPEND write: no thread hop, no
//! transaction), the syncer fsyncs and rotates the segments, the writer folds them into the store
//! and its chain, and the start-up replay (replay.rs) folds whatever a crash left.
use std::{
    fs::{self, DirBuilder, File, OpenOptions, Permissions},
    io::{self, IoSlice, Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

/// A frame: the payload's length and CRC-32 (little-endian u32 each), then the payload, which
/// is the request record's canonical body.
const HEADER: usize = 8;
const SUFFIX: &str = ".journal";

/// The journal's directory beside the store: `audit.db` keeps `audit.db-requests/`.
pub fn dir_of(db: &Path) -> PathBuf {
    super::schema::sidecar(db, "-requests")
}

/// One segment file, appended to until the syncer rotates it.
pub(super) struct Segment {
    pub(super) number: u64,
    pub(super) file: File,
    /// Bytes appended so far.
    pub(super) appended: AtomicU64,
}

/// The segment being appended to. Appenders share the read lock, so they never wait for each
/// other; rotation takes the write lock, so once it has rotated, every append to the old segment
/// has finished, its record already queued to the writer.
pub(super) struct Journal {
    dir: PathBuf,
    current: RwLock<Arc<Segment>>,
}

impl Journal {
    /// Opens a fresh segment after any the directory holds (replay has folded and removed those
    /// it could); creates the directory 0700.
    pub(super) fn open(dir: &Path) -> io::Result<Journal> {
        create_dir(dir)?;
        let next = segments(dir)?.last().map_or(1, |(number, _)| number + 1);
        let segment = Segment::create(dir, next)?;
        Ok(Journal {
            dir: dir.to_owned(),
            current: RwLock::new(Arc::new(segment)),
        })
    }

    /// Appends `body` framed to the current segment, then hands it to `then` before any
    /// rotation can pass it: `then` queues the record to the writer, so a segment's records are
    /// all queued when the syncer sends the writer the segment's barrier.
    pub(super) fn append<T>(&self, body: String, then: impl FnOnce(String) -> T) -> io::Result<T> {
        let segment = self.current.read().unwrap_or_else(|p| p.into_inner());
        write_frame(&segment.file, &header(&body), body.as_bytes())?;
        segment
            .appended
            .fetch_add((HEADER + body.len()) as u64, Ordering::Relaxed);
        Ok(then(body))
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment being appended to.
    pub(super) fn current(&self) -> Arc<Segment> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Starts a new segment and returns the old one, whose appends have all finished.
    pub(super) fn rotate(&self) -> io::Result<Arc<Segment>> {
        let number = self.current().number + 1;
        let fresh = Arc::new(Segment::create(&self.dir, number)?);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        Ok(std::mem::replace(&mut *current, fresh))
    }

    /// Deletes a segment whose records are all folded into the store and fsynced there.
    pub(super) fn forget(&self, number: u64) -> io::Result<()> {
        fs::remove_file(segment_path(&self.dir, number))
    }
}

impl Segment {
    fn create(dir: &Path, number: u64) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(segment_path(dir, number))?;
        // The new name must survive a crash, or an fsync of the file alone would not find it.
        File::open(dir)?.sync_all()?;
        Ok(Segment {
            number,
            file,
            appended: AtomicU64::new(0),
        })
    }
}

fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(0o700))
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016}{SUFFIX}"))
}

/// The segments in `dir`, oldest first; none when it does not exist.
pub(super) fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        entries => entries?,
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(SUFFIX))
            .and_then(|number| number.parse::<u64>().ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

/// The header that frames `body`.
fn header(body: &str) -> [u8; HEADER] {
    let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut header = [0; HEADER];
    header[..4].copy_from_slice(&length.to_le_bytes());
    header[4..].copy_from_slice(&crc32fast::hash(body.as_bytes()).to_le_bytes());
    header
}

/// Header and body in one writev(2) on an O_APPEND file, without copying the body: the kernel
/// places it whole at the end, whatever other tasks append at the same time. Only a write cut
/// short (a full disk) continues where it stopped, leaving a partial frame that reading skips.
fn write_frame(mut file: &File, header: &[u8; HEADER], body: &[u8]) -> io::Result<()> {
    let mut slices = [IoSlice::new(header), IoSlice::new(body)];
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        match file.write_vectored(remaining) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut remaining, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// What a segment holds: its whole frames, and how many bytes are not part of one. An append cut
/// short (a full disk, a power loss) leaves a partial frame; later appends follow it, so reading
/// resumes at the next offset where a whole frame with a matching checksum starts.
pub(super) struct SegmentRecords {
    pub(super) bodies: Vec<String>,
    pub(super) skipped_bytes: usize,
}

pub(super) fn read_segment(path: &Path) -> io::Result<SegmentRecords> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut bodies = Vec::new();
    let mut skipped_bytes = 0;
    let mut at = 0;
    while at < bytes.len() {
        match frame_at(&bytes[at..]) {
            Some(body) => {
                at += HEADER + body.len();
                bodies.push(body.to_owned());
            }
            None => {
                at += 1;
                skipped_bytes += 1;
            }
        }
    }
    Ok(SegmentRecords {
        bodies,
        skipped_bytes,
    })
}

/// The whole frame at the start of `bytes`, if there is one.
fn frame_at(bytes: &[u8]) -> Option<&str> {
    let length = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..HEADER)?.try_into().ok()?);
    let payload = bytes.get(HEADER..HEADER.checked_add(length)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    std::str::from_utf8(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole frame's bytes, as `append` writes them.
    fn frame(body: &str) -> Vec<u8> {
        [&header(body)[..], body.as_bytes()].concat()
    }

    #[test]
    fn frames_read_back_and_a_torn_tail_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        for body in [r#"{"a":1}"#, "", r#"{"b":"é"}"#] {
            journal.append(body.to_owned(), drop).unwrap();
        }
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        let mut torn = fs::OpenOptions::new().append(true).open(&path).unwrap();
        torn.write_all(&frame(r#"{"cut":"short"}"#)[..12]).unwrap();

        let read = read_segment(&path).unwrap();
        assert_eq!(read.bodies, [r#"{"a":1}"#, "", r#"{"b":"é"}"#]);
        assert_eq!(read.skipped_bytes, 12);
    }

    #[test]
    fn reading_resumes_after_a_partial_frame_in_the_middle() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.append("first".to_owned(), drop).unwrap();
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        // What a write cut short by a full disk leaves before the next task's append.
        let mut cut = fs::OpenOptions::new().append(true).open(&path).unwrap();
        cut.write_all(&frame(r#"{"never":"forwarded"}"#)[..15])
            .unwrap();
        journal.append("third".to_owned(), drop).unwrap();

        let read = read_segment(&path).unwrap();
        assert_eq!(read.bodies, ["first", "third"]);
        assert_eq!(read.skipped_bytes, 15);
    }

    #[test]
    fn rotation_numbers_segments_in_order_and_a_reopen_starts_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.append("one".to_owned(), drop).unwrap();
        let old = journal.rotate().unwrap();
        assert_eq!(old.number, 1);
        assert_eq!(old.appended.load(Ordering::Relaxed), 11);
        journal.append("two".to_owned(), drop).unwrap();
        drop(journal);

        let reopened = Journal::open(dir.path()).unwrap();
        assert_eq!(reopened.current().number, 3);
        let numbers: Vec<u64> = segments(dir.path()).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(numbers, [1, 2, 3]);
        reopened.forget(1).unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let (_, path) = segments(dir.path()).unwrap().remove(0);
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
