//! Connection origin → identity (procfs), cached per (pid, process start time).
//!
//! `resolve` does blocking procfs reads (and, for processes that are gone, may walk the cgroup
//! tree once per cgroup id); call it off the async executor's hot path.
mod cgroup_path;
mod redact;
pub mod selector;
mod service_account;
mod service_account_trust;
mod snapshot;
mod token_file;

use std::{
    collections::HashMap,
    hash::Hash,
    os::fd::AsFd,
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use procfs::process::Process;

pub use cgroup_path::{container_of, unit_of, Container};
pub use redact::redact_command_line;
pub use service_account::service_account_from_token;
pub use service_account_trust::{
    unverified_facts, ServiceAccountFacts, ServiceAccountVerifier, KEY_REFRESH_INTERVAL,
};
pub use snapshot::IdentitySnapshot;
pub use token_file::{read_token, read_token_at};

use crate::{cgroupfs::CgroupFs, config::AccountConfig, ebpf::origin::ConnectionOrigin};

/// Entries per cache; a full cache is cleared rather than tracked for recency (refills are cheap).
const CACHE_CAPACITY: usize = 4096;
/// uid → name mappings change (systemd DynamicUser=), so names are looked up again after this.
const USER_NAME_TTL: Duration = Duration::from_secs(60);

/// Who made a connection.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Identity {
    pub pid: u32,
    /// The process name (`/proc/PID/stat`), or the connecting task's name if the process is gone.
    pub comm: String,
    pub exe: Option<String>,
    /// Arguments joined with ' ', recognised secrets replaced by `[REDACTED]`.
    pub cmdline: Option<String>,
    /// The credentials the kernel saw at connect time.
    pub uid: u32,
    pub user: Option<String>,
    pub gid: u32,
    pub cgroup_id: u64,
    /// cgroup2 path like `/system.slice/x.service`.
    pub cgroup: Option<String>,
    /// The systemd unit derived from the cgroup path.
    pub unit: Option<String>,
    pub container: Option<Container>,
    /// The configured `[[account]]` that matches, else the unit name.
    pub account: Option<String>,
    /// "namespace/name" from the pod's service account token's claims.
    pub k8s_service_account: Option<String>,
    /// Whether the token's signature, issuer, audience and lifetime verified against the
    /// cluster's keys; None without a token or without `[identity.kubernetes]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s_sa_verified: Option<bool>,
    /// Whether `sa:` selectors see `k8s_service_account` (not when it failed verification and
    /// `require_verified` is on).
    #[serde(skip)]
    pub k8s_sa_selectable: bool,
    /// True when only the kernel's capture was available.
    pub process_exited: bool,
}

/// Resolves and caches identities; shared by all connections.
pub struct IdentityResolver {
    accounts: Vec<AccountConfig>,
    cgroupfs: Option<CgroupFs>,
    processes: Mutex<BoundedMap<(u32, u64), Arc<Identity>>>,
    cgroup_paths: Mutex<BoundedMap<u64, Option<String>>>,
    user_names: Mutex<BoundedMap<u32, (Instant, Option<String>)>>,
    /// `[identity.kubernetes]`: verifies service-account tokens.
    service_accounts: Option<ServiceAccountVerifier>,
}

impl IdentityResolver {
    pub fn new(accounts: Vec<AccountConfig>, cgroupfs: Option<CgroupFs>) -> Self {
        IdentityResolver {
            accounts,
            cgroupfs,
            processes: Mutex::new(BoundedMap::default()),
            cgroup_paths: Mutex::new(BoundedMap::default()),
            user_names: Mutex::new(BoundedMap::default()),
            service_accounts: None,
        }
    }

    /// Verify service-account tokens (`[identity.kubernetes]`) instead of only reading them.
    pub fn with_service_account_verifier(
        mut self,
        verifier: Option<ServiceAccountVerifier>,
    ) -> Self {
        self.service_accounts = verifier;
        self
    }

    /// Never fails: a process that exited before accept still gets what the kernel captured
    /// (tgid, uid, gid, cgroup id → path when resolvable, comm).
    pub fn resolve(&self, origin: &ConnectionOrigin) -> Arc<Identity> {
        let Some((process, stat)) = open_process(origin.tgid) else {
            return Arc::new(self.exited(origin));
        };
        if let Some(hit) = self.hit(origin, stat.starttime) {
            return hit;
        }
        let key = (origin.tgid, stat.starttime);
        let exe = process.exe().ok().map(|p| p.to_string_lossy().into_owned());
        let cmdline = process
            .cmdline()
            .ok()
            .filter(|args| !args.is_empty())
            .map(|args| redact_command_line(&args));
        let identity = Arc::new(self.build(
            origin,
            ProcessFacts {
                comm: stat.comm,
                exe,
                cmdline,
                cgroup: self.live_cgroup_path(origin, &process),
                service_account: self.service_account_facts(origin.tgid, &process),
                exited: false,
            },
        ));
        lock(&self.processes).insert(key, Arc::clone(&identity));
        identity
    }

    /// The cached identity of a live process: one read of /proc/PID/stat, quick enough for an
    /// async worker (a connection then needs no hop to the blocking pool). `None`: not cached,
    /// or the process is gone; [`resolve`](Self::resolve) it off the workers.
    pub fn cached(&self, origin: &ConnectionOrigin) -> Option<Arc<Identity>> {
        let (_, stat) = open_process(origin.tgid)?;
        self.hit(origin, stat.starttime)
    }

    /// The start time tells a reused pid apart; the captured credentials and cgroup can change
    /// within one process (setuid, cgroup moves), so they must match too.
    fn hit(&self, origin: &ConnectionOrigin, starttime: u64) -> Option<Arc<Identity>> {
        let processes = lock(&self.processes);
        let hit = processes.get(&(origin.tgid, starttime))?;
        let same =
            hit.uid == origin.uid && hit.gid == origin.gid && hit.cgroup_id == origin.cgroup_id;
        same.then(|| Arc::clone(hit))
    }

    fn exited(&self, origin: &ConnectionOrigin) -> Identity {
        let facts = ProcessFacts {
            comm: origin.comm.clone(),
            exe: None,
            cmdline: None,
            cgroup: self.path_of_id(origin.cgroup_id),
            service_account: unverified_facts(None),
            exited: true,
        };
        self.build(origin, facts)
    }

    fn build(&self, origin: &ConnectionOrigin, facts: ProcessFacts) -> Identity {
        let cgroup = facts.cgroup;
        let mut identity = Identity {
            pid: origin.tgid,
            comm: facts.comm,
            exe: facts.exe,
            cmdline: facts.cmdline,
            uid: origin.uid,
            user: self.user_name(origin.uid),
            gid: origin.gid,
            cgroup_id: origin.cgroup_id,
            unit: cgroup.as_deref().and_then(unit_of),
            container: cgroup.as_deref().and_then(container_of),
            cgroup,
            account: None,
            k8s_service_account: facts.service_account.name,
            k8s_sa_verified: facts.service_account.verified,
            k8s_sa_selectable: facts.service_account.selectable,
            process_exited: facts.exited,
        };
        identity.account = account_for(&self.accounts, &identity);
        identity
    }

    /// The v2 path from /proc/PID/cgroup, unless the process has since moved away from the cgroup
    /// it connected from; then the connecting cgroup's path, by id.
    fn live_cgroup_path(&self, origin: &ConnectionOrigin, process: &Process) -> Option<String> {
        let cgroups = process.cgroups().ok()?;
        let path = cgroups
            .0
            .into_iter()
            .find(|cg| cg.hierarchy == 0 && cg.controllers.is_empty())
            .map(|cg| cg.pathname);
        let (Some(path), Some(cgroupfs)) = (path.clone(), &self.cgroupfs) else {
            return path;
        };
        match cgroupfs.id_of(&path) {
            Ok(id) if origin.cgroup_id != 0 && id != origin.cgroup_id => {
                self.path_of_id(origin.cgroup_id)
            }
            _ => Some(path),
        }
    }

    /// Cached, negative results included: cgroup ids are not reused while the cache lives.
    fn path_of_id(&self, id: u64) -> Option<String> {
        let cgroupfs = self.cgroupfs.as_ref().filter(|_| id != 0)?;
        if let Some(hit) = lock(&self.cgroup_paths).get(&id) {
            return hit.clone();
        }
        let path = cgroupfs.path_of_id(id);
        lock(&self.cgroup_paths).insert(id, path.clone());
        path
    }

    fn service_account_facts(&self, pid: u32, process: &Process) -> ServiceAccountFacts {
        let token = read_service_account_token(process);
        match (&self.service_accounts, token) {
            (Some(verifier), Some(token)) => verifier.facts(pid, &token),
            (_, token) => unverified_facts(token.as_deref()),
        }
    }

    fn user_name(&self, uid: u32) -> Option<String> {
        if let Some((at, name)) = lock(&self.user_names).get(&uid) {
            if at.elapsed() < USER_NAME_TTL {
                return name.clone();
            }
        }
        let name = lookup_user_name(uid);
        lock(&self.user_names).insert(uid, (Instant::now(), name.clone()));
        name
    }
}

/// What procfs (or, for a process that is gone, the kernel's capture) says about the process.
struct ProcessFacts {
    comm: String,
    exe: Option<String>,
    cmdline: Option<String>,
    cgroup: Option<String>,
    service_account: ServiceAccountFacts,
    exited: bool,
}

/// The first `[[account]]` whose selector matches, else the unit name.
pub fn account_for(accounts: &[AccountConfig], identity: &Identity) -> Option<String> {
    accounts
        .iter()
        .find(|account| account_matches(account, identity))
        .map(|account| account.name.clone())
        .or_else(|| identity.unit.clone())
}

fn account_matches(account: &AccountConfig, identity: &Identity) -> bool {
    let cgroup = identity.cgroup.as_deref();
    if let Some(unit) = &account.unit {
        // A unit's descendants belong to it, like selection by unit does.
        return identity.unit.as_ref() == Some(unit)
            || cgroup.is_some_and(|path| path.split('/').any(|part| part == unit));
    }
    if let Some(selected) = &account.cgroup {
        return cgroup.is_some_and(|path| is_at_or_below(path, selected));
    }
    if let Some(uid) = account.uid {
        return identity.uid == uid;
    }
    if let Some(exe) = &account.exe {
        // readlink says "/usr/bin/x (deleted)" once the binary was replaced by an upgrade.
        let running = identity
            .exe
            .as_deref()
            .map(|e| e.strip_suffix(" (deleted)").unwrap_or(e));
        return running.is_some_and(|running| Path::new(running) == exe);
    }
    false
}

fn is_at_or_below(path: &str, ancestor: &str) -> bool {
    let ancestor = ancestor.trim_end_matches('/');
    path == ancestor
        || ancestor.is_empty()
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn open_process(tgid: u32) -> Option<(Process, procfs::process::Stat)> {
    let process = Process::new(i32::try_from(tgid).ok()?).ok()?;
    let stat = process.stat().ok()?;
    Some((process, stat))
}

/// Read inside /proc/PID/root, so a container's token comes from the container's filesystem.
/// Opened through the process's own /proc directory, so a reused pid cannot stand in for it.
fn read_service_account_token(process: &Process) -> Option<String> {
    let root = process.open_relative("root").ok()?;
    read_token_at(root.as_fd())
}

/// The user name through NSS (so LDAP/sssd/systemd users resolve too).
pub fn lookup_user_name(uid: u32) -> Option<String> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    Some(user.name)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a cache lock leaves a valid map behind: keep using it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct BoundedMap<K, V> {
    entries: HashMap<K, V>,
}

impl<K, V> Default for BoundedMap<K, V> {
    fn default() -> Self {
        BoundedMap {
            entries: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash, V> BoundedMap<K, V> {
    fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.entries.len() >= CACHE_CAPACITY && !self.entries.contains_key(&key) {
            self.entries.clear();
        }
        self.entries.insert(key, value);
    }
}

#[cfg(test)]
mod tests;
