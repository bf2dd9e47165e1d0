//! Load and attach the eBPF programs, and give the proxy the origins and counters they record.
//!
//! The programs are attached once, at the cgroup2 root, through bpf links. A link attachment always
//! coexists with other programs (the kernel attaches links as BPF_F_ALLOW_MULTI, and refuses any
//! explicit attach flag on bpf_link_create with EINVAL), so the mode passed is `Single`, meaning "no
//! flags", and Warden runs beside other tools and other Warden instances. Which cgroups are redirected is decided by
//! the `SELECTED_CGROUPS` map that [`selection`] keeps in sync. Dropping the [`Redirector`] closes
//! the links, which detaches every program.
pub mod origin;
pub mod selection;

use std::{
    fs::File,
    net::SocketAddr,
    sync::{Mutex, MutexGuard},
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{CgroupAttachMode, CgroupSockAddr, ProgramError, SockOps},
    Ebpf, EbpfError, EbpfLoader,
};
use serde::Serialize;
use warden_ebpf::{counter, maps, programs, ClientKey, Origin, RedirectConfig};

use crate::cgroupfs::CgroupFs;
use origin::{client_key, ConnectionOrigin};

/// See the module comment: with bpf links (kernel ≥ 5.7) this still allows multiple programs.
const LINK_ATTACH_MODE: CgroupAttachMode = CgroupAttachMode::Single;

/// The eBPF object built by agent/build.rs from agent-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/warden-ebpf"));

#[derive(Debug, thiserror::Error)]
pub enum EbpfLoadError {
    #[error("loading the eBPF object (is this root, with CAP_BPF and CAP_SYS_ADMIN?): {0}")]
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
    /// Entries now in the origin maps: connected but not yet accepted by Warden, and redirected but
    /// not yet connected. Both drop back to zero when connections are claimed.
    pub origins_unclaimed: u64,
    pub origins_pending: u64,
}

/// The loaded, attached programs and the maps userspace works with.
pub struct Redirector {
    /// Owns the programs and their links; dropped on shutdown to detach.
    ebpf: Mutex<Option<Ebpf>>,
    origins: Mutex<HashMap<MapData, ClientKey, Origin>>,
    selected: Mutex<HashMap<MapData, u64, u8>>,
    pending: HashMap<MapData, u64, Origin>,
    counters: PerCpuArray<MapData, u64>,
    programs: Vec<AttachedProgram>,
}

impl Redirector {
    /// Loads the programs, configures them to send `intercept_ports` to `listen_port`, and attaches
    /// them at the cgroup2 root. Nothing is redirected until cgroups are selected.
    pub fn load_and_attach(
        cgroupfs: &CgroupFs,
        listen_port: u16,
        intercept_ports: &[u16],
    ) -> Result<Redirector, EbpfLoadError> {
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &kernel_log_level(), true)
            .load(EBPF_OBJECT)
            .map_err(EbpfLoadError::Load)?;
        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => spawn_kernel_log_reader(logger),
            Err(error) => tracing::warn!(%error, "eBPF programs' diagnostics are not available"),
        }

        let config = RedirectConfig {
            listen_port,
            _pad: 0,
            warden_tgid: std::process::id(),
            netns_cookie: own_netns_cookie(),
        };
        let mut redirect_config: Array<_, RedirectConfig> =
            take_map(&mut ebpf, maps::REDIRECT_CONFIG)?;
        redirect_config
            .set(0, config, 0)
            .map_err(|source| map_error(maps::REDIRECT_CONFIG, source))?;
        let mut ports: HashMap<_, u16, u8> = take_map(&mut ebpf, maps::INTERCEPT_PORTS)?;
        for &port in intercept_ports {
            ports
                .insert(port, 1, 0)
                .map_err(|source| map_error(maps::INTERCEPT_PORTS, source))?;
        }

        let root_path = cgroupfs.mount().display().to_string();
        let root = File::open(cgroupfs.mount()).map_err(|source| EbpfLoadError::CgroupRoot {
            path: root_path,
            source,
        })?;
        let mut attached = Vec::new();
        for name in programs::ALL {
            let program = ebpf
                .program_mut(name)
                .ok_or(EbpfLoadError::MissingProgram(name))?;
            let program_error = |source| EbpfLoadError::Program { name, source };
            let info = if name == programs::SOCK_OPS {
                let program: &mut SockOps = program.try_into().map_err(program_error)?;
                program.load().map_err(program_error)?;
                program
                    .attach(&root, LINK_ATTACH_MODE)
                    .map_err(program_error)?;
                program.info().map_err(program_error)?
            } else {
                let program: &mut CgroupSockAddr = program.try_into().map_err(program_error)?;
                program.load().map_err(program_error)?;
                program
                    .attach(&root, LINK_ATTACH_MODE)
                    .map_err(program_error)?;
                program.info().map_err(program_error)?
            };
            attached.push(AttachedProgram {
                name,
                id: info.id(),
            });
        }

        let origins = take_map(&mut ebpf, maps::ORIGINS)?;
        let selected = take_map(&mut ebpf, maps::SELECTED_CGROUPS)?;
        let pending = take_map(&mut ebpf, maps::PENDING_ORIGINS)?;
        let counters = take_map(&mut ebpf, maps::COUNTERS)?;
        // The config maps were taken out of `ebpf`; they must outlive the programs, which hold
        // their own references to them in the kernel, so dropping our handles here is fine.
        drop((redirect_config, ports));
        Ok(Redirector {
            ebpf: Mutex::new(Some(ebpf)),
            origins: Mutex::new(origins),
            selected: Mutex::new(selected),
            pending,
            counters,
            programs: attached,
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
        if lock(&self.ebpf).is_none() {
            return &[];
        }
        &self.programs
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
            origins_unclaimed: lock(&self.origins).keys().count() as u64,
            origins_pending: self.pending.keys().count() as u64,
        }
    }

    /// Detaches every program now (links are closed). Connections already redirected keep working.
    pub fn detach(&self) {
        if lock(&self.ebpf).take().is_some() {
            tracing::info!("eBPF programs detached");
        }
    }
}

/// The most verbose level the programs' diagnostics would be logged at, so that the programs do not
/// write records that the log filter would drop (aya-log's levels are `log`'s: 0 off … 5 trace).
fn kernel_log_level() -> u8 {
    use tracing::Level;
    let target_enabled = |level| match level {
        Level::TRACE => tracing::enabled!(target: "warden_ebpf::programs", Level::TRACE),
        Level::DEBUG => tracing::enabled!(target: "warden_ebpf::programs", Level::DEBUG),
        Level::INFO => tracing::enabled!(target: "warden_ebpf::programs", Level::INFO),
        Level::WARN => tracing::enabled!(target: "warden_ebpf::programs", Level::WARN),
        _ => tracing::enabled!(target: "warden_ebpf::programs", Level::ERROR),
    };
    [
        (Level::TRACE, 5),
        (Level::DEBUG, 4),
        (Level::INFO, 3),
        (Level::WARN, 2),
        (Level::ERROR, 1),
    ]
    .into_iter()
    .find(|&(level, _)| target_enabled(level))
    .map_or(0, |(_, value)| value)
}

/// The cookie of Warden's network namespace, or 0 when the kernel cannot tell (before 5.14),
/// which turns the programs' namespace check off.
fn own_netns_cookie() -> u64 {
    use std::os::fd::AsRawFd;
    let Ok(socket) = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)) else {
        return 0;
    };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the fd is a live socket, and cookie/len describe a writable u64.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if result != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot read the network namespace cookie; selected processes in other namespaces will fail to connect instead of being refused"
        );
        return 0;
    }
    cookie
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

/// aya-log's records arrive on a ring buffer; forward them to `log` (bridged into tracing).
fn spawn_kernel_log_reader(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns the ring buffer's fd, and the AsyncFd owns the logger while registered.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let Ok(mut fd) = registered else {
        tracing::warn!("eBPF diagnostics: cannot poll the log ring buffer");
        return;
    };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
