//! The policy in force: loaded and compiled once per (re)load, swapped whole on SIGHUP or when a
//! file in the policy directory changes; an invalid directory keeps the previous policy.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use inotify::{Inotify, WatchMask};
use tokio::{io::unix::AsyncFd, sync::watch};

use super::{
    load_dir,
    mask::Masker,
    model::{MaskRule, Policy},
    recognizers::{builtin, custom},
    stream_mask::{StreamMaskError, StreamPrefixes},
    PolicyError,
};

/// What the service manager is told when a reload kept the previous policy.
const REFUSED: &str = "policy reload refused (see the log); the previous policy stays in force";

/// Several file changes in a row (an editor's write + rename) cause one reload.
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ActivePolicyError {
    #[error(transparent)]
    Load(#[from] PolicyError),
    #[error("rule {rule}: recognizer {name} is unknown")]
    UnknownRecognizer { rule: String, name: String },
    #[error("rule {rule}: pattern {name}: {source}")]
    Pattern {
        rule: String,
        name: String,
        #[source]
        source: regex::Error,
    },
    #[error("rule {rule}: {source}")]
    Stream {
        rule: String,
        #[source]
        source: StreamMaskError,
    },
}

/// A mask rule, compiled: its masker and the automata streamed responses need.
pub struct CompiledMask {
    pub masker: Arc<Masker>,
    /// Only for rules that mask responses.
    pub stream: Option<Arc<StreamPrefixes>>,
}

/// A policy with everything its rules need compiled, ready for the request path.
pub struct CompiledPolicy {
    pub policy: Policy,
    masks: HashMap<String, CompiledMask>,
}

impl CompiledPolicy {
    pub fn compile(policy: Policy) -> Result<CompiledPolicy, ActivePolicyError> {
        let mut masks = HashMap::new();
        for rule in &policy.rules {
            if let super::model::Action::Mask(mask) = &rule.action {
                masks.insert(mask.rule.clone(), compile_mask(mask)?);
            }
        }
        Ok(CompiledPolicy { policy, masks })
    }

    pub fn mask(&self, rule: &str) -> Option<&CompiledMask> {
        self.masks.get(rule)
    }
}

fn compile_mask(rule: &MaskRule) -> Result<CompiledMask, ActivePolicyError> {
    let mut recognizers = Vec::new();
    for name in &rule.recognizers {
        let recognizer = builtin(name).ok_or_else(|| ActivePolicyError::UnknownRecognizer {
            rule: rule.rule.clone(),
            name: name.clone(),
        })?;
        recognizers.push(recognizer);
    }
    for pattern in &rule.patterns {
        let recognizer = custom(&pattern.name, pattern.regex.as_str()).map_err(|source| {
            ActivePolicyError::Pattern {
                rule: rule.rule.clone(),
                name: pattern.name.clone(),
                source,
            }
        })?;
        recognizers.push(recognizer);
    }
    let masker = Arc::new(Masker::new(recognizers, &rule.replacement));
    let stream = if rule.direction.covers_response() {
        let prefixes =
            StreamPrefixes::new(masker.clone()).map_err(|source| ActivePolicyError::Stream {
                rule: rule.rule.clone(),
                source,
            })?;
        Some(Arc::new(prefixes))
    } else {
        None
    };
    Ok(CompiledMask { masker, stream })
}

/// What an absent policy directory means at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsentDir {
    /// A directory a config file names: its absence stops the daemon.
    Refuse,
    /// The built-in default, which no config file names: the daemon runs with no policy, and says so.
    RunWithoutPolicy,
}

/// What `warden status` says about the policy in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyStatus {
    pub dir: PathBuf,
    /// False when no policy file is loaded: no request is checked against any rule.
    pub loaded: bool,
    pub files: usize,
    pub rules: usize,
    /// Why no policy is loaded, when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The policy in force for the daemon.
pub struct ActivePolicy {
    dir: PathBuf,
    current: RwLock<Arc<CompiledPolicy>>,
}

impl ActivePolicy {
    /// Loads the directory; at startup an invalid policy is an error (the daemon does not start),
    /// and so is an absent directory unless `absent` allows it.
    pub fn load(dir: &Path, absent: AbsentDir) -> Result<ActivePolicy, ActivePolicyError> {
        let policy = match load_dir(dir) {
            Err(PolicyError::MissingDir { .. }) if absent == AbsentDir::RunWithoutPolicy => {
                Policy::default()
            }
            loaded => loaded?,
        };
        let compiled = CompiledPolicy::compile(policy)?;
        log_loaded(dir, &compiled.policy, "startup", "policy loaded");
        Ok(ActivePolicy {
            dir: dir.to_path_buf(),
            current: RwLock::new(Arc::new(compiled)),
        })
    }

    /// The directory, whether a policy is loaded from it, and why not.
    pub fn status(&self) -> PolicyStatus {
        let policy = &self.current().policy;
        let loaded = !policy.files.is_empty();
        PolicyStatus {
            dir: self.dir.clone(),
            loaded,
            files: policy.files.len(),
            rules: policy.rules.len(),
            reason: (!loaded).then(|| not_loaded_reason(&self.dir)),
        }
    }

    /// The policy for one request: a cheap clone of the current one, unaffected by reloads.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reloads; on any error the previous policy stays in force and every problem is logged.
    /// Returns a one-line summary of what happened, for the service manager.
    pub fn reload(&self, why: &str) -> String {
        let loaded = load_dir(&self.dir)
            .map_err(ActivePolicyError::from)
            .and_then(CompiledPolicy::compile);
        match loaded {
            Ok(compiled)
                if compiled.policy.files.is_empty() && !self.current().policy.files.is_empty() =>
            {
                // An emptied directory (a checkout in progress, a mistaken rm) must not silently
                // turn every rule off.
                tracing::error!(dir = %self.dir.display(), trigger = why, "policy reload refused: the directory has no policy files now; the previous policy stays in force (restart to run without policies)");
                REFUSED.to_string()
            }
            Ok(compiled) => {
                log_loaded(&self.dir, &compiled.policy, why, "policy reloaded");
                let summary = format!("policy reloaded: {} rules", compiled.policy.rules.len());
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(compiled);
                summary
            }
            Err(ActivePolicyError::Load(error)) => {
                for problem in error.problems() {
                    tracing::error!(error = %problem, trigger = why, "policy reload refused; the previous policy stays in force");
                }
                REFUSED.to_string()
            }
            Err(error) => {
                tracing::error!(%error, trigger = why, "policy reload refused; the previous policy stays in force");
                REFUSED.to_string()
            }
        }
    }

    /// Reloads on SIGHUP and when a file in the directory changes, until `shutdown`.
    pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                tracing::warn!(%error, "no SIGHUP handler: policies reload on file changes only");
                None
            }
        };
        let mut changes = self.watch_dir();
        let mut buffer = [0u8; 4096];
        loop {
            let why = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = recv(&mut hangup) => "SIGHUP",
                Some(mut guard) = readable(&mut changes) => {
                    let _ = guard.try_io(|fd| fd.get_mut().read_events(&mut buffer).map(|_| ()));
                    drop(guard);
                    tokio::time::sleep(SETTLE).await;
                    if let Some(fd) = changes.as_mut() {
                        // Drain what the settle period added.
                        let _ = fd.get_mut().read_events(&mut buffer);
                    }
                    "policy directory changed"
                }
            };
            let active = self.clone();
            crate::supervisor::reloading();
            let summary = tokio::task::spawn_blocking(move || active.reload(why))
                .await
                .unwrap_or_else(|_| REFUSED.to_string());
            crate::supervisor::reloaded(&summary);
        }
    }

    fn watch_dir(&self) -> Option<AsyncFd<Inotify>> {
        let inotify = Inotify::init().ok()?;
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE
            | WatchMask::CREATE;
        if let Err(error) = inotify.watches().add(&self.dir, mask) {
            tracing::warn!(%error, dir = %self.dir.display(), "cannot watch the policy directory: policies reload on SIGHUP only");
            return None;
        }
        // SAFETY: `inotify` owns its fd, and the AsyncFd owns `inotify` while registered.
        unsafe { AsyncFd::register(inotify) }.ok()
    }
}

/// `trigger` says what caused the (re)load, as the refusals do: an operator tells a `systemctl
/// reload` (SIGHUP) from an edit the directory watch saw.
fn log_loaded(dir: &Path, policy: &Policy, trigger: &str, message: &'static str) {
    if policy.files.is_empty() {
        let reason = not_loaded_reason(dir);
        tracing::warn!(dir = %dir.display(), files = 0, %reason, trigger, "no policy loaded: {reason}; no request is checked against any rule");
        return;
    }
    let names: Vec<&str> = policy.rules.iter().map(|rule| rule.name.as_str()).collect();
    tracing::info!(dir = %dir.display(), files = policy.files.len(), rules = ?names, trigger, "{message}");
}

/// Why a directory gave no policy file.
fn not_loaded_reason(dir: &Path) -> String {
    match dir.is_dir() {
        true => format!("no *.toml file in {}", dir.display()),
        false => format!("{} does not exist", dir.display()),
    }
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
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
    use super::*;

    #[test]
    fn an_absent_directory_stops_the_start_unless_it_is_the_unnamed_default() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("polices");
        let error = ActivePolicy::load(&absent, AbsentDir::Refuse)
            .err()
            .expect("an absent configured directory is refused");
        assert_eq!(
            error.to_string(),
            format!("{}: the policy directory does not exist", absent.display())
        );
        let active = ActivePolicy::load(&absent, AbsentDir::RunWithoutPolicy).unwrap();
        let status = active.status();
        assert!(!status.loaded && status.files == 0 && status.rules == 0);
        assert_eq!(
            status.reason,
            Some(format!("{} does not exist", absent.display()))
        );
    }

    #[test]
    fn status_says_whether_a_policy_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let active = ActivePolicy::load(dir.path(), AbsentDir::Refuse).unwrap();
        assert_eq!(
            active.status().reason,
            Some(format!("no *.toml file in {}", dir.path().display()))
        );
        std::fs::write(
            dir.path().join("a.toml"),
            "[[rule]]\nname = \"d\"\naction = \"deny\"\nmessage = \"no\"\n",
        )
        .unwrap();
        active.reload("test");
        let status = active.status();
        assert!(
            status.loaded && status.files == 1 && status.rules == 1,
            "{status:?}"
        );
        assert_eq!(status.reason, None);
    }
}
