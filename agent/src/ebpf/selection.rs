//! Keep the kernel's selected-cgroup set equal to what the config and `warden exec` ask for.
//!
//! A selector names a cgroup by path or by systemd unit, but the kernel matches ids, and a unit
//! that restarts gets a new cgroup with a new id. So the selection is recomputed from the
//! selectors whenever cgroupfs changes (inotify) and at least once a second.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use inotify::{Inotify, WatchMask};
use serde::Serialize;
use tokio::io::unix::AsyncFd;

use super::Redirector;
use crate::cgroupfs::{validate_path, CgroupError, CgroupFs};

/// The slowest a restarted unit's new cgroup is noticed when inotify misses it.
const RESYNC_INTERVAL: Duration = Duration::from_secs(1);
/// A unit that is not found is searched for by walking the whole tree at most this often.
const UNIT_WALK_INTERVAL: Duration = Duration::from_secs(5);
/// `warden exec` creates its cgroups here, as `exec-PID`, and registers them with its daemon. The
/// daemon keeps its registrations in a file in its state_dir, so after a restart it selects again
/// the commands that are still running (other daemons on the host leave them alone).
pub const EXEC_CGROUP_PARENT: &str = "/warden";
pub const EXEC_CGROUP_PREFIX: &str = "exec-";

#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error(transparent)]
    Path(#[from] CgroupError),
    #[error(
        "{0} is not a `warden exec` cgroup (expected {EXEC_CGROUP_PARENT}/{EXEC_CGROUP_PREFIX}PID)"
    )]
    NotExec(String),
    #[error("cgroup {path} does not exist: {source}")]
    Missing {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("updating the kernel's selection: {0}")]
    Kernel(#[from] super::EbpfLoadError),
}

/// A cgroup the kernel currently redirects, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SelectedCgroup {
    pub path: String,
    pub id: u64,
    /// "config" (select.cgroups), "unit" (select.units) or "exec" (`warden exec`); "pinned" for
    /// an id re-adopted from a previous run until the first resync.
    pub source: &'static str,
}

pub struct Selection {
    cgroupfs: CgroupFs,
    /// Where the `warden exec` registrations are kept across restarts (one path per line).
    exec_registry: PathBuf,
    redirector: Arc<Redirector>,
    config_paths: Vec<String>,
    units: Vec<String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    exec_paths: BTreeSet<String>,
    current: Vec<SelectedCgroup>,
    /// Where each unit was last found, tried first on the next resync.
    unit_paths: HashMap<String, String>,
    /// When each missing unit was last searched for in the whole tree.
    unit_walks: HashMap<String, Instant>,
}

impl Selection {
    pub fn new(
        cgroupfs: CgroupFs,
        redirector: Arc<Redirector>,
        config_paths: Vec<String>,
        units: Vec<String>,
        exec_registry: PathBuf,
    ) -> Selection {
        let exec_paths = std::fs::read_to_string(&exec_registry)
            .unwrap_or_default()
            .lines()
            .filter(|path| is_exec_cgroup(path) && validate_path(path).is_ok())
            .map(str::to_string)
            .collect();
        // A re-adopted selection stays in force until the first resync has computed this run's,
        // which then drops whatever is no longer selected.
        let current = redirector
            .selected_ids()
            .into_iter()
            .map(|id| SelectedCgroup {
                path: String::new(),
                id,
                source: "pinned",
            })
            .collect();
        Selection {
            cgroupfs,
            exec_registry,
            redirector,
            config_paths,
            units,
            state: Mutex::new(State {
                exec_paths,
                current,
                ..State::default()
            }),
        }
    }

    pub fn selected(&self) -> Vec<SelectedCgroup> {
        self.lock().current.clone()
    }

    /// Selects a cgroup that `warden exec` created. Returns once the kernel redirects it.
    pub fn add_exec(&self, path: &str) -> Result<SelectedCgroup, SelectionError> {
        validate_path(path)?;
        if !is_exec_cgroup(path) {
            return Err(SelectionError::NotExec(path.to_string()));
        }
        let id = self
            .cgroupfs
            .id_of(path)
            .map_err(|source| SelectionError::Missing {
                path: path.to_string(),
                source,
            })?;
        {
            let mut state = self.lock();
            state.exec_paths.insert(path.to_string());
            self.save_exec_registry(&state.exec_paths);
        }
        self.resync()?;
        Ok(SelectedCgroup {
            path: path.to_string(),
            id,
            source: "exec",
        })
    }

    /// Called when a `warden exec` command ended.
    pub fn remove_exec(&self, path: &str) -> Result<(), SelectionError> {
        {
            let mut state = self.lock();
            state.exec_paths.remove(path);
            self.save_exec_registry(&state.exec_paths);
        }
        self.resync()
    }

    /// Best effort: losing the file only means a restart forgets running commands.
    fn save_exec_registry(&self, exec_paths: &BTreeSet<String>) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let temporary = self.exec_registry.with_extension("tmp");
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                for path in exec_paths {
                    writeln!(file, "{path}")?;
                }
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temporary, &self.exec_registry));
        if let Err(error) = written {
            tracing::warn!(%error, path = %self.exec_registry.display(), "saving warden exec registrations");
        }
    }

    /// Recomputes the selection from the selectors and applies the difference to the kernel map.
    pub fn resync(&self) -> Result<(), SelectionError> {
        let mut state = self.lock();
        let mut desired: BTreeMap<u64, SelectedCgroup> = BTreeMap::new();
        let mut add = |path: &str, source: &'static str| -> bool {
            match self.cgroupfs.id_of(path) {
                Ok(id) => {
                    desired.entry(id).or_insert(SelectedCgroup {
                        path: path.to_string(),
                        id,
                        source,
                    });
                    true
                }
                Err(_) => false,
            }
        };
        for path in &self.config_paths {
            add(path, "config");
        }
        let exec_paths = std::mem::take(&mut state.exec_paths);
        let registered = exec_paths.len();
        for path in exec_paths {
            // An exec cgroup that is gone (its command ended and it was removed) is forgotten.
            if add(&path, "exec") {
                state.exec_paths.insert(path);
            }
        }
        if state.exec_paths.len() != registered {
            self.save_exec_registry(&state.exec_paths);
        }
        for unit in &self.units {
            if let Some(path) = self.locate_unit(&mut state, unit) {
                add(&path, "unit");
            }
        }

        let current_ids: BTreeSet<u64> = state.current.iter().map(|c| c.id).collect();
        let to_add: Vec<u64> = desired
            .keys()
            .filter(|id| !current_ids.contains(id))
            .copied()
            .collect();
        let to_remove: Vec<u64> = current_ids
            .iter()
            .filter(|id| !desired.contains_key(id))
            .copied()
            .collect();
        if to_add.is_empty() && to_remove.is_empty() {
            // Same ids; paths and sources may still differ from re-adopted entries.
            state.current = desired.into_values().collect();
            return Ok(());
        }
        self.redirector.update_selection(&to_add, &to_remove)?;
        for cgroup in state.current.iter().filter(|c| to_remove.contains(&c.id)) {
            tracing::info!(path = %cgroup.path, id = cgroup.id, source = cgroup.source, "cgroup no longer selected");
        }
        for id in &to_add {
            let cgroup = &desired[id];
            tracing::info!(path = %cgroup.path, id = cgroup.id, source = cgroup.source, "cgroup selected");
        }
        state.current = desired.into_values().collect();
        Ok(())
    }

    /// Finds a unit's cgroup: where it was last seen, the usual slices, then (rate-limited) anywhere.
    fn locate_unit(&self, state: &mut State, unit: &str) -> Option<String> {
        let mut candidates: Vec<String> = state.unit_paths.get(unit).cloned().into_iter().collect();
        candidates.push(format!("/system.slice/{unit}"));
        if let Some(found) = candidates
            .into_iter()
            .find(|p| self.cgroupfs.id_of(p).is_ok())
        {
            state.unit_paths.insert(unit.to_string(), found.clone());
            return Some(found);
        }
        let walked_recently = state
            .unit_walks
            .get(unit)
            .is_some_and(|at| at.elapsed() < UNIT_WALK_INTERVAL);
        if walked_recently {
            return None;
        }
        state.unit_walks.insert(unit.to_string(), Instant::now());
        let found = self.cgroupfs.find_unit(unit)?;
        state.unit_paths.insert(unit.to_string(), found.clone());
        Some(found)
    }

    /// Directories whose children appearing or disappearing can change the selection: the parents
    /// of the configured paths and of where each unit was last found, `/system.slice` when units
    /// are configured, and the root.
    fn watched_dirs(&self) -> BTreeSet<PathBuf> {
        let state = self.lock();
        let parent_of = |path: &str| -> Option<PathBuf> {
            let parent = std::path::Path::new(path).parent()?.to_str()?;
            self.cgroupfs.dir(parent).ok()
        };
        let mut dirs: BTreeSet<PathBuf> = [self.cgroupfs.mount().to_path_buf()].into();
        let known_paths = self.config_paths.iter().chain(state.unit_paths.values());
        dirs.extend(known_paths.filter_map(|path| parent_of(path)));
        if !self.units.is_empty() {
            dirs.extend(self.cgroupfs.dir("/system.slice").ok());
        }
        dirs.extend(self.cgroupfs.dir(EXEC_CGROUP_PARENT).ok());
        dirs.retain(|d| d.is_dir());
        dirs
    }

    /// Resyncs on cgroupfs changes and on a timer until `shutdown` fires.
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut watched = BTreeSet::new();
        let mut inotify = self.start_inotify(&mut watched);
        let mut ticker = tokio::time::interval(RESYNC_INTERVAL);
        let mut buffer = [0u8; 4096];
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {}
                ready = readable(&mut inotify) => {
                    if let Some(mut guard) = ready {
                        // Drain the events; their content does not matter, only that something changed.
                        let _ = guard.try_io(|fd| fd.get_mut().read_events(&mut buffer).map(|_| ()));
                    }
                }
            }
            // A resync stats cgroupfs and may walk it: keep it off the async workers.
            let selection = self.clone();
            match tokio::task::spawn_blocking(move || selection.resync()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "selection resync failed"),
                Err(error) => tracing::error!(%error, "selection resync panicked"),
            }
            if let Some(fd) = inotify.as_mut() {
                self.add_watches(fd.get_mut(), &mut watched);
            }
        }
    }

    fn start_inotify(&self, watched: &mut BTreeSet<PathBuf>) -> Option<AsyncFd<Inotify>> {
        let mut inotify = match Inotify::init() {
            Ok(inotify) => inotify,
            Err(error) => {
                tracing::warn!(%error, "inotify unavailable; cgroup changes are noticed by polling only");
                return None;
            }
        };
        self.add_watches(&mut inotify, watched);
        // SAFETY: `inotify` owns its fd, and the AsyncFd owns `inotify` for as long as it is registered.
        unsafe { AsyncFd::register(inotify) }.ok()
    }

    /// Watches directories not watched yet. A watched directory that is removed drops its watch
    /// in the kernel; it is forgotten here too so that it is watched again when it reappears.
    fn add_watches(&self, inotify: &mut Inotify, watched: &mut BTreeSet<PathBuf>) {
        watched.retain(|dir| dir.is_dir());
        for dir in self.watched_dirs() {
            if watched.contains(&dir) {
                continue;
            }
            let mask = WatchMask::CREATE | WatchMask::DELETE | WatchMask::ONLYDIR;
            match inotify.watches().add(&dir, mask) {
                Ok(_) => {
                    watched.insert(dir);
                }
                Err(error) => {
                    tracing::debug!(%error, dir = %dir.display(), "cannot watch cgroup directory")
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `/warden/exec-123` (a direct child of the exec parent, named by the prefix).
fn is_exec_cgroup(path: &str) -> bool {
    path.strip_prefix(EXEC_CGROUP_PARENT)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| name.starts_with(EXEC_CGROUP_PREFIX) && !name.contains('/'))
}

async fn readable(
    inotify: &mut Option<AsyncFd<Inotify>>,
) -> Option<tokio::io::unix::AsyncFdReadyMutGuard<'_, Inotify>> {
    match inotify {
        Some(fd) => fd.readable_mut().await.ok(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::is_exec_cgroup;

    #[test]
    fn only_direct_exec_children_are_exec_cgroups() {
        assert!(is_exec_cgroup("/warden/exec-42"));
        assert!(!is_exec_cgroup("/warden/exec-42/child"));
        assert!(!is_exec_cgroup("/warden/other"));
        assert!(!is_exec_cgroup("/wardenx/exec-1"));
        assert!(!is_exec_cgroup("/system.slice/exec-1"));
    }
}
