//! `kind = "file"`: one JSON line per event, fsynced before the batch counts as delivered, rotated
//! by size (`PATH.1` is the newest rotated file).
use std::{
    fs::{self, DirBuilder, File, OpenOptions, Permissions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::event::{DeliveryError, DeliveryFuture, SinkEvent, Transport};
use crate::config::sinks::FileSinkConfig;

pub struct FileTransport {
    /// Taken while a write runs on the blocking pool.
    state: Option<FileState>,
}

struct FileState {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl FileTransport {
    /// Opens (creating, 0600; its directory 0700 if missing) the file to append to.
    pub fn open(config: &FileSinkConfig) -> io::Result<FileTransport> {
        if let Some(dir) = config.path.parent() {
            if !dir.exists() {
                DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
        }
        let file = open_append(&config.path)?;
        let size = file.metadata()?.len();
        Ok(FileTransport {
            state: Some(FileState {
                path: config.path.clone(),
                max_bytes: config.max_bytes,
                keep: config.keep,
                file,
                size,
            }),
        })
    }
}

impl Transport for FileTransport {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn deliver<'a>(&'a mut self, batch: &'a [SinkEvent]) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let mut lines = Vec::new();
            for event in batch {
                serde_json::to_writer(&mut lines, event)
                    .map_err(|e| DeliveryError::Rejected(format!("serializing an event: {e}")))?;
                lines.push(b'\n');
            }
            let mut state = self
                .state
                .take()
                .ok_or_else(|| DeliveryError::Retryable("the file is unavailable".into()))?;
            let (state, written) = tokio::task::spawn_blocking(move || {
                let written = state.append(&lines);
                (state, written)
            })
            .await
            .map_err(|e| DeliveryError::Retryable(e.to_string()))?;
            self.state = Some(state);
            written.map_err(|e| DeliveryError::Retryable(e.to_string()))
        })
    }
}

impl FileState {
    fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        let len = lines.len() as u64;
        if self.max_bytes > 0 && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        if let Err(error) = self
            .file
            .write_all(lines)
            .and_then(|()| self.file.sync_data())
        {
            // A partial line may be in the file; the retry appends the batch again whole, after
            // a newline so the next line starts clean (duplicates are deduplicated by seq).
            let _ = self.file.write_all(b"\n");
            self.size = self.file.metadata().map_or(self.size, |m| m.len());
            return Err(error);
        }
        self.size += len;
        Ok(())
    }

    /// PATH.{n} → PATH.{n+1} (the oldest dropped), PATH → PATH.1, then a fresh PATH.
    fn rotate(&mut self) -> io::Result<()> {
        let rotated = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                match fs::rename(rotated(n), rotated(n + 1)) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                    _ => {}
                }
            }
            fs::rename(&self.path, rotated(1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::event::EventClass;

    fn event(seq: u64) -> SinkEvent {
        SinkEvent {
            seq,
            class: EventClass::Admin,
            name: "revoked".into(),
            at_us: 1,
            exchange_id: None,
            record: serde_json::json!({"pad": "x".repeat(100)}),
            exchange: None,
        }
    }

    #[tokio::test]
    async fn lines_are_appended_privately_and_rotated_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let mut file = FileTransport::open(&FileSinkConfig {
            path: path.clone(),
            max_bytes: 1000,
            keep: 2,
        })
        .unwrap();
        for seq in 1..=30 {
            file.deliver(&[event(seq)]).await.unwrap();
        }
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let seqs = |p: &Path| -> Vec<u64> {
            fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                        .as_u64()
                        .unwrap()
                })
                .collect()
        };
        let newest = seqs(&path);
        let one = seqs(&dir.path().join("logs/audit.jsonl.1"));
        let two = seqs(&dir.path().join("logs/audit.jsonl.2"));
        assert!(!dir.path().join("logs/audit.jsonl.3").exists(), "keep = 2");
        assert!(fs::metadata(&path).unwrap().len() <= 1000);
        assert_eq!(*newest.last().unwrap(), 30);
        assert_eq!(
            one.last().unwrap() + 1,
            newest[0],
            "PATH.1 is the newest rotated file"
        );
        assert_eq!(two.last().unwrap() + 1, one[0]);
    }
}
