//! Load the eBPF programs and attach them (or re-adopt their pinned links), and give the proxy
//! the origins and counters they record.
//!
//! The programs are attached once, at the cgroup2 root, through bpf links. A link attachment always
//! coexists with other programs (the kernel attaches links as BPF_F_ALLOW_MULTI, and refuses any
//! explicit attach flag on bpf_link_create with EINVAL), so the mode passed is `Single`, meaning "no
//! flags", and Warden runs beside other tools and other Warden instances. Which cgroups are
//! redirected is decided by the `SELECTED_CGROUPS` map that [`selection`] keeps in sync. With
//! `fail_mode = "closed"` the links and maps are pinned ([`pins`]) and outlive the daemon; with
//! `"open"` they are held by the daemon alone and detach when it exits.
mod attach;
mod kernel_log;
mod namespaces;
pub mod origin;
pub mod pins;
pub mod selection;

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use aya::{
    maps::{Array, HashMap, MapData, MapType, PerCpuArray},
    programs::ProgramError,
    Ebpf, EbpfError, EbpfLoader,
};
use serde::Serialize;
use warden_ebpf::{
    counter, globals, maps, port_flags, programs, redirect_flags, ClientKey, Origin,
    RedirectConfig, SocketTag, MAX_INTERCEPT_PORTS, MAX_ORIGINS, MAX_PENDING_ORIGINS,
    MAX_SELECTED_CGROUPS, MAX_SOCKET_TAGS,
};

use crate::{
    cgroupfs::CgroupFs,
    config::{FailMode, InterceptPorts},
};
use origin::{client_key, ConnectionOrigin};
use pins::{HeldLink, MapLayout, PinDir, PinError};

/// The eBPF object built by agent/build.rs from agent-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/warden-ebpf"));

/// The maps that are pinned with the links, as this build's programs declare them: the daemon
/// that starts next reuses them when they still look like this.
const SHARED_MAPS: [MapLayout; 7] = [
    MapLayout::new::<u32, RedirectConfig>(maps::REDIRECT_CONFIG, MapType::Array, 1),
    MapLayout::new::<u64, u8>(maps::SELECTED_CGROUPS, MapType::Hash, MAX_SELECTED_CGROUPS),
    MapLayout::new::<u16, u8>(maps::INTERCEPT_PORTS, MapType::Hash, MAX_INTERCEPT_PORTS),
    MapLayout::new::<u64, Origin>(maps::PENDING_ORIGINS, MapType::LruHash, MAX_PENDING_ORIGINS),
    MapLayout::new::<ClientKey, Origin>(maps::ORIGINS, MapType::LruHash, MAX_ORIGINS),
    MapLayout::new::<u32, u64>(maps::COUNTERS, MapType::PerCpuArray, counter::COUNT),
    MapLayout::new::<u64, SocketTag>(maps::SOCKET_TAGS, MapType::Hash, MAX_SOCKET_TAGS),
];

#[derive(Debug, thiserror::Error)]
pub enum EbpfLoadError {
    #[error("loading the eBPF object (is this root, with CAP_BPF and CAP_NET_ADMIN?): {0}")]
    Load(#[source] EbpfError),
    #[error("eBPF program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("eBPF program {name}: taking its link: {source}")]
    Link {
        name: &'static str,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("opening the cgroup2 root {path}: {source}")]
    CgroupRoot {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
}

/// An attached program, as `warden status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AttachedProgram {
    pub name: &'static str,
    pub id: u32,
}

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct KernelCounters {
    pub redirected: u64,
    pub udp_refused: u64,
    pub origins_indexed: u64,
    /// Connects refused because a selected process was in another network namespace.
    pub netns_refused: u64,
    /// Raw inet sockets refused to selected cgroups.
    pub raw_refused: u64,
    /// Sockets refused to selected cgroups because the socket tag map was full.
    pub socket_tags_full: u64,
    /// Connects redirected only because their socket was created in a selected cgroup.
    pub redirected_by_socket_tag: u64,
    /// Entries now in the origin maps: connected but not yet accepted by Warden, and redirected but
    /// not yet connected. Both drop back to zero when connections are claimed.
    pub origins_unclaimed: u64,
    pub origins_pending: u64,
}

/// How the programs outlive (or not) the daemon, as `warden status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Attachment {
    pub fail_mode: FailMode,
    /// Whether the links are pinned now (they stay attached if the daemon dies).
    pub pinned: bool,
    pub pin_dir: PathBuf,
    /// Whether this daemon re-adopted links that a previous run had pinned.
    pub adopted: bool,
}

/// What the programs are told to do.
pub struct RedirectSettings<'a> {
    pub listen_port: u16,
    pub intercept_ports: &'a InterceptPorts,
    /// Ports where UDP is refused under "all" (under a list, every listed port refuses UDP).
    pub tls_ports: &'a [u16],
    pub fail_mode: FailMode,
    pub pin_dir: &'a Path,
}

/// The loaded, attached programs and the maps userspace works with.
pub struct Redirector {
    /// Owns the programs; their links are in `links`.
    _ebpf: Ebpf,
    /// Dropping a held link detaches its program unless it is pinned.
    links: Mutex<Vec<HeldLink>>,
    origins: Mutex<HashMap<MapData, ClientKey, Origin>>,
    selected: Mutex<HashMap<MapData, u64, u8>>,
    pending: HashMap<MapData, u64, Origin>,
    counters: PerCpuArray<MapData, u64>,
    programs: Vec<AttachedProgram>,
    attachment: Mutex<Attachment>,
}

impl Redirector {
    /// Loads the programs, configures them to send `intercept_ports` to `listen_port`, and attaches
    /// them at the cgroup2 root, re-adopting the links and maps a previous run pinned. Nothing new
    /// is redirected until cgroups are selected (a re-adopted selection stays in force).
    pub fn load_and_attach(
        cgroupfs: &CgroupFs,
        settings: &RedirectSettings<'_>,
    ) -> Result<Redirector, EbpfLoadError> {
        let pid_namespace = namespaces::own_pid_namespace()?;
        // Open mode needs no pins, but re-adopts what a closed-mode run left so that it can
        // release it: the programs then detach when this daemon exits.
        let pins = match settings.fail_mode {
            FailMode::Closed => Some(PinDir::prepare(settings.pin_dir)?),
            FailMode::Open if PinDir::has_pins(settings.pin_dir) => {
                Some(PinDir::prepare(settings.pin_dir)?)
            }
            FailMode::Open => None,
        };
        let use_ns_pid = u8::from(!pid_namespace.is_initial);
        let log_level = kernel_log::kernel_log_level();
        let mut loader = EbpfLoader::new();
        loader
            .override_global(aya_log::LEVEL, &log_level, true)
            .override_global(globals::USE_NS_PID, &use_ns_pid, true);
        if let Some(pins) = &pins {
            pins.drop_incompatible_maps(&SHARED_MAPS);
            for layout in &SHARED_MAPS {
                loader.map_pin_path(layout.name, pins.map_path(layout.name));
            }
        }
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(EbpfLoadError::Load)?;
        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => kernel_log::spawn_kernel_log_reader(logger),
            Err(error) => tracing::warn!(%error, "eBPF programs' diagnostics are not available"),
        }

        // Written before any program is swapped in: the programs still attached from a previous
        // run share this map and must already skip this process's own connections.
        let config = RedirectConfig {
            listen_port: settings.listen_port,
            flags: if settings.intercept_ports.is_all() {
                redirect_flags::ALL_TCP_PORTS
            } else {
                0
            },
            warden_tgid: std::process::id(),
            netns_cookie: namespaces::own_netns_cookie(),
            pidns_dev: pid_namespace.dev,
            pidns_ino: pid_namespace.ino,
        };
        let mut redirect_config: Array<_, RedirectConfig> =
            take_map(&mut ebpf, maps::REDIRECT_CONFIG)?;
        redirect_config
            .set(0, config, 0)
            .map_err(|source| map_error(maps::REDIRECT_CONFIG, source))?;
        let mut ports: HashMap<_, u16, u8> = take_map(&mut ebpf, maps::INTERCEPT_PORTS)?;
        let wanted = port_table(settings.intercept_ports, settings.tls_ports);
        let stale: Vec<u16> = ports
            .keys()
            .filter_map(Result::ok)
            .filter(|port| !wanted.iter().any(|(p, _)| p == port))
            .collect();
        for port in stale {
            let _ = ports.remove(&port);
        }
        for (port, flags) in wanted {
            ports
                .insert(port, flags, 0)
                .map_err(|source| map_error(maps::INTERCEPT_PORTS, source))?;
        }

        let root_path = cgroupfs.mount().display().to_string();
        let root = File::open(cgroupfs.mount()).map_err(|source| EbpfLoadError::CgroupRoot {
            path: root_path,
            source,
        })?;
        let mut attached = Vec::new();
        let mut links = Vec::new();
        let mut adopted = false;
        for name in programs::ALL {
            let (id, link, readopted) =
                attach::attach_program(&mut ebpf, name, &root, pins.as_ref())?;
            adopted |= readopted;
            attached.push(AttachedProgram { name, id });
            links.push(link);
        }

        let pinned = settings.fail_mode == FailMode::Closed;
        if !pinned && pins.is_some() {
            links = attach::release_pins(links, settings.pin_dir);
        }
        let origins = take_map(&mut ebpf, maps::ORIGINS)?;
        let selected = take_map(&mut ebpf, maps::SELECTED_CGROUPS)?;
        let pending = take_map(&mut ebpf, maps::PENDING_ORIGINS)?;
        let counters = take_map(&mut ebpf, maps::COUNTERS)?;
        // The config maps were taken out of `ebpf`; they must outlive the programs, which hold
        // their own references to them in the kernel, so dropping our handles here is fine.
        drop((redirect_config, ports));
        Ok(Redirector {
            _ebpf: ebpf,
            links: Mutex::new(links),
            origins: Mutex::new(origins),
            selected: Mutex::new(selected),
            pending,
            counters,
            programs: attached,
            attachment: Mutex::new(Attachment {
                fail_mode: settings.fail_mode,
                pinned,
                pin_dir: settings.pin_dir.to_path_buf(),
                adopted,
            }),
        })
    }

    /// Claims the origin recorded for a connection accepted from `peer`, removing it from the map.
    pub fn take_origin(&self, peer: SocketAddr) -> Option<ConnectionOrigin> {
        let key = client_key(peer);
        let mut origins = lock(&self.origins);
        let raw = origins.get(&key, 0).ok()?;
        // A failed remove only means the LRU already evicted it; the origin we read is still right.
        let _ = origins.remove(&key);
        Some(ConnectionOrigin::from(&raw))
    }

    /// The cgroup ids in the kernel's selection now (re-adopted ones included).
    pub fn selected_ids(&self) -> Vec<u64> {
        lock(&self.selected).keys().filter_map(Result::ok).collect()
    }

    /// Adds and removes cgroup ids in the kernel's selection.
    pub fn update_selection(&self, add: &[u64], remove: &[u64]) -> Result<(), EbpfLoadError> {
        let mut selected = lock(&self.selected);
        for id in remove {
            // Absent already is fine: the goal is that it is not selected.
            let _ = selected.remove(id);
        }
        for &id in add {
            selected
                .insert(id, 1, 0)
                .map_err(|source| map_error(maps::SELECTED_CGROUPS, source))?;
        }
        Ok(())
    }

    pub fn programs(&self) -> &[AttachedProgram] {
        if lock(&self.links).is_empty() {
            return &[];
        }
        &self.programs
    }

    pub fn attachment(&self) -> Attachment {
        lock(&self.attachment).clone()
    }

    pub fn counters(&self) -> KernelCounters {
        let sum = |index: u32| -> u64 {
            self.counters
                .get(&index, 0)
                .map(|values| values.iter().sum())
                .unwrap_or(0)
        };
        KernelCounters {
            redirected: sum(counter::REDIRECTED),
            udp_refused: sum(counter::UDP_REFUSED),
            origins_indexed: sum(counter::ORIGIN_INDEXED),
            netns_refused: sum(counter::NETNS_REFUSED),
            raw_refused: sum(counter::RAW_REFUSED),
            socket_tags_full: sum(counter::TAGS_FULL),
            redirected_by_socket_tag: sum(counter::BY_SOCKET_TAG),
            origins_unclaimed: lock(&self.origins).keys().count() as u64,
            origins_pending: self.pending.keys().count() as u64,
        }
    }

    /// Fail open: detaches every program now (its links are closed). Connections already
    /// redirected keep working. Pinned links stay attached: only unpinning removes them.
    pub fn detach(&self) {
        let mut links = lock(&self.links);
        if links.iter().any(|link| matches!(link, HeldLink::Pinned(_))) {
            tracing::info!("eBPF programs stay attached (fail_mode = \"closed\")");
            return;
        }
        if !links.is_empty() {
            links.clear();
            tracing::info!("eBPF programs detached");
        }
    }
}

/// The `INTERCEPT_PORTS` entries: under a list, each listed port is redirected (TCP) and refuses
/// UDP; under "all" (TCP redirected by the config flag), the TLS ports refuse UDP: refusing UDP
/// everywhere would break DNS.
fn port_table(intercept: &InterceptPorts, tls_ports: &[u16]) -> Vec<(u16, u8)> {
    match intercept {
        InterceptPorts::List(ports) => ports
            .iter()
            .map(|&port| (port, port_flags::REDIRECT_TCP | port_flags::REFUSE_UDP))
            .collect(),
        InterceptPorts::All => tls_ports
            .iter()
            .map(|&port| (port, port_flags::REFUSE_UDP))
            .collect(),
    }
}

fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, EbpfLoadError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(EbpfLoadError::MissingMap(name))?;
    M::try_from(map).map_err(|source| map_error(name, source))
}

fn map_error(name: &'static str, source: aya::maps::MapError) -> EbpfLoadError {
    EbpfLoadError::Map { name, source }
}

/// Map handles are used from many connection tasks; a poisoned lock only means another task
/// panicked mid-syscall, which leaves the kernel map itself consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
