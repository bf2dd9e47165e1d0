//! Rotation without a restart: the credentials reload when a secret file changes (the directories
//! holding them are watched, so an editor's rename or a `mv` of a new file is seen too) and on
//! SIGHUP (for a change no watch sees, e.g. through another link to the file).
use std::{
    collections::{BTreeSet, HashSet},
    ffi::OsString,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use inotify::{Inotify, WatchMask};
use tokio::{io::unix::AsyncFd, sync::watch};

use super::{store::CredentialStore, SecretSource};

/// Several changes in a row (truncate + write, write + rename) cause one reload.
const SETTLE: Duration = Duration::from_millis(200);

/// What is watched: the secret files' directories, and their names in them.
struct Watched {
    inotify: AsyncFd<Inotify>,
    names: HashSet<OsString>,
}

impl CredentialStore {
    /// Reloads on SIGHUP and when a secret file changes, until `shutdown`.
    pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        use tokio::signal::unix::{signal, SignalKind};
        if self.is_empty() {
            return;
        }
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                tracing::warn!(%error, "no SIGHUP handler: credentials reload on file changes only");
                None
            }
        };
        let mut watched = watch_files(&self.sources());
        let mut buffer = [0u8; 4096];
        loop {
            let trigger = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = recv(&mut hangup) => "SIGHUP",
                Some(relevant) = changed(&mut watched, &mut buffer) => {
                    if !relevant {
                        continue;
                    }
                    tokio::time::sleep(SETTLE).await;
                    if let Some(watched) = watched.as_mut() {
                        // Drain what the settle period added.
                        let _ = watched.inotify.get_mut().read_events(&mut buffer);
                    }
                    "secret file changed"
                }
            };
            let store = self.clone();
            match tokio::task::spawn_blocking(move || store.reload(trigger)).await {
                Ok(summary) => tracing::info!(trigger, "{summary}"),
                Err(error) => tracing::error!(%error, trigger, "credential reload failed"),
            }
        }
    }
}

fn watch_files(sources: &[SecretSource]) -> Option<Watched> {
    let files: Vec<PathBuf> = sources
        .iter()
        .filter_map(|source| match source {
            SecretSource::File(path) => Some(path.clone()),
            // systemd's credentials directory is a read-only snapshot taken at start.
            SecretSource::Systemd(_) => None,
        })
        .collect();
    if files.is_empty() {
        return None;
    }
    let inotify = Inotify::init()
        .map_err(|error| tracing::warn!(%error, "cannot watch the secret files: credentials reload on SIGHUP only"))
        .ok()?;
    let mask = WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::ATTRIB;
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(PathBuf::from))
        .collect();
    for dir in &dirs {
        if let Err(error) = inotify.watches().add(dir, mask) {
            tracing::warn!(%error, dir = %dir.display(), "cannot watch a secret file's directory: its credentials reload on SIGHUP only");
        }
    }
    let names = files
        .iter()
        .filter_map(|f| f.file_name().map(OsString::from))
        .collect();
    // SAFETY: `inotify` owns its fd, and the AsyncFd owns `inotify` while registered.
    let inotify = unsafe { AsyncFd::register(inotify) }.ok()?;
    Some(Watched { inotify, names })
}

/// Waits for events; `Some(true)` when one of them names a secret file.
async fn changed(watched: &mut Option<Watched>, buffer: &mut [u8]) -> Option<bool> {
    let Some(watched) = watched else {
        return std::future::pending().await;
    };
    let mut guard = watched.inotify.readable_mut().await.ok()?;
    let names = &watched.names;
    let relevant = match guard.try_io(|fd| {
        let events = fd.get_mut().read_events(buffer)?;
        Ok(events
            .into_iter()
            .any(|event| event.name.is_some_and(|name| names.contains(name))))
    }) {
        Ok(Ok(relevant)) => relevant,
        Ok(Err(_)) | Err(_) => false,
    };
    Some(relevant)
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}
