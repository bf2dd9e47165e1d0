//! Connection caps: how many redirected connections one agent process, one cgroup and the daemon
//! as a whole hold open at once, so that one agent cannot take every descriptor (or every
//! loopback 4-tuple) the others need.
use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

use prometheus_client::metrics::gauge::Gauge;

use crate::{config::LimitsConfig, ebpf::origin::ConnectionOrigin};

/// Descriptors kept for everything that is not a proxied connection (audit store, listeners,
/// admin and metrics sockets, inotify, eBPF maps and links, upstream pool spares).
const RESERVED_DESCRIPTORS: u64 = 512;

/// After a flood of at least this many connections has drained away, the memory freed with them
/// is handed back to the system (see [`return_freed_memory`]).
const FLOOD_CONNECTIONS: u64 = 1_000;

/// Which cap a refused connection met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverLimit {
    Process {
        cap: u32,
    },
    Cgroup {
        cap: u32,
    },
    /// The daemon's own cap, from its open-file limit.
    Daemon {
        cap: u64,
    },
}

impl OverLimit {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            OverLimit::Process { .. } => "process",
            OverLimit::Cgroup { .. } => "cgroup",
            OverLimit::Daemon { .. } => "daemon",
        }
    }
}

impl fmt::Display for OverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverLimit::Process { cap } => write!(
                f,
                "connection limit: this process already holds {cap} connections ([limits] max_connections_per_process)"
            ),
            OverLimit::Cgroup { cap } => write!(
                f,
                "connection limit: this cgroup already holds {cap} connections ([limits] max_connections_per_cgroup)"
            ),
            OverLimit::Daemon { cap } => write!(
                f,
                "connection limit: Warden holds {cap} connections, all its open-file limit allows"
            ),
        }
    }
}

#[derive(Default)]
struct Open {
    total: u64,
    /// The most open at once since the last time none were.
    high_water: u64,
    per_process: HashMap<u32, u32>,
    per_cgroup: HashMap<u64, u32>,
}

/// The open connections, counted per process and per cgroup.
pub struct ConnectionLimits {
    per_process: u32,
    per_cgroup: u32,
    total: u64,
    open: Mutex<Open>,
    /// `warden_open_connections`.
    gauge: Gauge,
}

impl ConnectionLimits {
    /// The caps of `[limits]`, and a daemon-wide one within `open_files`: a client connection
    /// holds one descriptor, and a quarter of what is left after the reserve stays free for the
    /// upstream side (tunnels hold one each; intercepted requests share pooled connections).
    pub fn new(config: &LimitsConfig, open_files: u64, gauge: Gauge) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            per_process: config.max_connections_per_process,
            per_cgroup: config.max_connections_per_cgroup,
            total: (open_files.saturating_sub(RESERVED_DESCRIPTORS) * 3 / 4).max(1),
            open: Mutex::new(Open::default()),
            gauge,
        })
    }

    /// The daemon-wide cap.
    pub fn daemon_cap(&self) -> u64 {
        self.total
    }

    /// Counts `origin`'s connection as open until the returned guard drops, or says which cap it
    /// would pass. Connections without an origin are not counted (they are closed at once).
    pub fn admit(self: &Arc<Self>, origin: &ConnectionOrigin) -> Result<Admitted, OverLimit> {
        let mut open = self.lock();
        if open.total >= self.total {
            return Err(OverLimit::Daemon { cap: self.total });
        }
        let process = open.per_process.get(&origin.tgid).copied().unwrap_or(0);
        if process >= self.per_process {
            return Err(OverLimit::Process {
                cap: self.per_process,
            });
        }
        let cgroup = open.per_cgroup.get(&origin.cgroup_id).copied().unwrap_or(0);
        if cgroup >= self.per_cgroup {
            return Err(OverLimit::Cgroup {
                cap: self.per_cgroup,
            });
        }
        open.total += 1;
        open.high_water = open.high_water.max(open.total);
        open.per_process.insert(origin.tgid, process + 1);
        open.per_cgroup.insert(origin.cgroup_id, cgroup + 1);
        self.gauge.inc();
        Ok(Admitted {
            limits: self.clone(),
            tgid: origin.tgid,
            cgroup_id: origin.cgroup_id,
        })
    }

    /// Open connections now (all clients).
    #[cfg(test)]
    pub fn open(&self) -> u64 {
        self.lock().total
    }

    fn release(&self, tgid: u32, cgroup_id: u64) {
        let flood_drained = {
            let mut open = self.lock();
            open.total = open.total.saturating_sub(1);
            decrement(&mut open.per_process, tgid);
            decrement(&mut open.per_cgroup, cgroup_id);
            let drained = open.total == 0 && open.high_water >= FLOOD_CONNECTIONS;
            if open.total == 0 {
                open.high_water = 0;
            }
            drained
        };
        self.gauge.dec();
        if flood_drained {
            return_freed_memory();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        // The counts stay consistent even if a holder panicked: every change is one statement.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Forgets a key whose count reaches zero, so that short-lived processes leave nothing behind.
fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u32>, key: K) {
    if let Some(count) = counts.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&key);
        }
    }
}

/// One admitted connection: counted until dropped, however its task ends.
pub struct Admitted {
    limits: Arc<ConnectionLimits>,
    tgid: u32,
    cgroup_id: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.limits.release(self.tgid, self.cgroup_id);
    }
}

/// glibc keeps the memory of freed connections in its arenas, so the daemon's RSS would stay at
/// its flood peak; trimming them (rarely: once per drained flood) returns it. Off the caller's
/// thread, as a trim walks every arena, and after a pause: the closed connections' records are
/// still queued for the audit writer when the last one closes.
fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(5));
        // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
        unsafe { libc::malloc_trim(0) };
    });
}

/// How many ephemeral ports the host hands out (`net.ipv4.ip_local_port_range`): every redirected
/// connect goes to 127.0.0.1:listen_port, so this bounds the connections open at once from one
/// source address, for all agents together.
pub fn ephemeral_ports() -> Option<u64> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = range.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(low)), Some(Ok(high))) = (bounds.next(), bounds.next()) else {
        return None;
    };
    Some(high.saturating_sub(low) + 1)
}

/// The open-file soft limit the daemon runs with.
pub fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(tgid: u32, cgroup_id: u64) -> ConnectionOrigin {
        ConnectionOrigin {
            original_dst: "127.0.0.1:443".parse().unwrap(),
            tgid,
            uid: 0,
            gid: 0,
            cgroup_id,
            comm: "agent".into(),
        }
    }

    fn limits(per_process: u32, per_cgroup: u32, open_files: u64) -> Arc<ConnectionLimits> {
        let config = LimitsConfig {
            max_connections_per_process: per_process,
            max_connections_per_cgroup: per_cgroup,
            ..Default::default()
        };
        ConnectionLimits::new(&config, open_files, Gauge::default())
    }

    #[test]
    fn a_process_over_its_cap_is_refused_and_admitted_again_once_one_closes() {
        let limits = limits(2, 10, 100_000);
        let first = limits.admit(&origin(1, 7)).unwrap();
        let _second = limits.admit(&origin(1, 7)).unwrap();
        assert_eq!(
            limits.admit(&origin(1, 7)).err(),
            Some(OverLimit::Process { cap: 2 })
        );
        // Another process of the same cgroup is not held back by the first one's cap.
        let _other = limits.admit(&origin(2, 7)).unwrap();
        drop(first);
        assert!(limits.admit(&origin(1, 7)).is_ok());
    }

    #[test]
    fn a_cgroup_over_its_cap_is_refused_whichever_process_connects() {
        let limits = limits(2, 3, 100_000);
        let held: Vec<_> = (1..=3)
            .map(|tgid| limits.admit(&origin(tgid, 7)).unwrap())
            .collect();
        assert_eq!(
            limits.admit(&origin(4, 7)).err(),
            Some(OverLimit::Cgroup { cap: 3 })
        );
        assert!(limits.admit(&origin(4, 8)).is_ok(), "another cgroup");
        drop(held);
        assert_eq!(limits.open(), 0);
        assert!(limits.lock().per_process.is_empty());
        assert!(limits.lock().per_cgroup.is_empty());
    }

    #[test]
    fn the_daemon_keeps_a_quarter_of_its_open_file_limit_for_upstream_connections() {
        let limits = limits(100, 100, RESERVED_DESCRIPTORS + 4);
        assert_eq!(limits.daemon_cap(), 3);
        let _held: Vec<_> = (1..=3)
            .map(|tgid| limits.admit(&origin(tgid, tgid.into())).unwrap())
            .collect();
        assert_eq!(
            limits.admit(&origin(9, 9)).err(),
            Some(OverLimit::Daemon { cap: 3 })
        );
    }
}
