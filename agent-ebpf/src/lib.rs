//! The `#[repr(C)]` records that Warden's eBPF programs and its userspace share through maps.
#![no_std]

/// Map names, spelled once so userspace and the programs cannot drift apart.
pub mod maps {
    pub const REDIRECT_CONFIG: &str = "REDIRECT_CONFIG";
    pub const SELECTED_CGROUPS: &str = "SELECTED_CGROUPS";
    pub const INTERCEPT_PORTS: &str = "INTERCEPT_PORTS";
    pub const PENDING_ORIGINS: &str = "PENDING_ORIGINS";
    pub const ORIGINS: &str = "ORIGINS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const SOCKET_TAGS: &str = "SOCKET_TAGS";
}

/// Program names (the Rust function names in `main.rs`).
pub mod programs {
    pub const CONNECT4: &str = "warden_connect4";
    pub const CONNECT6: &str = "warden_connect6";
    pub const SENDMSG4: &str = "warden_sendmsg4";
    pub const SENDMSG6: &str = "warden_sendmsg6";
    pub const SOCK_OPS: &str = "warden_sock_ops";
    pub const SOCK_CREATE: &str = "warden_sock_create";
    pub const SOCK_RELEASE: &str = "warden_sock_release";
    /// In attach order: the socket tags exist before the connect programs read them.
    pub const ALL: [&str; 7] = [
        SOCK_CREATE,
        SOCK_RELEASE,
        CONNECT4,
        CONNECT6,
        SENDMSG4,
        SENDMSG6,
        SOCK_OPS,
    ];
}

/// Names of the programs' read-only globals, set by userspace at load time.
pub mod globals {
    /// Non-zero when Warden runs outside the initial pid namespace: the programs then identify
    /// processes by their tgid in Warden's namespace (`bpf_get_ns_current_pid_tgid`, allowed for
    /// these program types since Linux 6.10). Zero keeps older kernels loading the programs: the
    /// verifier prunes the helper call on a constant it can see.
    pub const USE_NS_PID: &str = "USE_NS_PID";
}

/// Bounds of the maps. Origins live in LRU maps: an origin that is never claimed (the client gave
/// up before Warden accepted) is evicted instead of leaking.
pub const MAX_SELECTED_CGROUPS: u32 = 4096;
pub const MAX_INTERCEPT_PORTS: u32 = 64;
pub const MAX_PENDING_ORIGINS: u32 = 16384;
pub const MAX_ORIGINS: u32 = 16384;
/// Sockets created in selected cgroups and still open. When it is full, a selected cgroup cannot
/// create more inet sockets (refused rather than left untagged).
pub const MAX_SOCKET_TAGS: u32 = 65536;
/// How many cgroup levels above the current one are checked for selection.
pub const MAX_CGROUP_DEPTH: i32 = 32;

/// Bits of `RedirectConfig::flags`.
pub mod redirect_flags {
    /// Every TCP port is redirected (`intercept_ports = "all"`), not only those in `INTERCEPT_PORTS`.
    pub const ALL_TCP_PORTS: u16 = 1;
}

/// Bits of an `INTERCEPT_PORTS` value: what happens to a selected cgroup's sockets on that port.
pub mod port_flags {
    /// TCP connects are redirected to Warden.
    pub const REDIRECT_TCP: u8 = 1;
    /// UDP (connect and sendmsg) is refused, so that QUIC clients fall back to TCP.
    pub const REFUSE_UDP: u8 = 2;
}

/// Indexes into the `COUNTERS` per-CPU array.
pub mod counter {
    pub const REDIRECTED: u32 = 0;
    pub const UDP_REFUSED: u32 = 1;
    pub const ORIGIN_INDEXED: u32 = 2;
    pub const NETNS_REFUSED: u32 = 3;
    /// Raw inet sockets a selected cgroup tried to create.
    pub const RAW_REFUSED: u32 = 4;
    /// Sockets a selected cgroup could not create because `SOCKET_TAGS` was full.
    pub const TAGS_FULL: u32 = 5;
    /// Connects redirected only because the socket was created in a selected cgroup: the caller
    /// itself is outside the selection (the socket was handed over, or the caller moved).
    pub const BY_SOCKET_TAG: u32 = 6;
    pub const COUNT: u32 = 7;
}

/// Where selected connections are sent. Written once by userspace at index 0 of `REDIRECT_CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RedirectConfig {
    /// Warden's listener port, host byte order. It listens on 127.0.0.1 and ::1.
    pub listen_port: u16,
    /// [`redirect_flags`] bits.
    pub flags: u16,
    /// Warden's own process: its connections are never redirected.
    pub warden_tgid: u32,
    /// Warden's network namespace. A selected process in another namespace cannot reach Warden's
    /// loopback listener, so its connects to intercepted ports are refused instead (fail closed).
    /// 0 disables the check (kernels without SO_NETNS_COOKIE).
    pub netns_cookie: u64,
    /// Warden's pid namespace (`st_dev` and `st_ino` of /proc/self/ns/pid). Used when the
    /// `USE_NS_PID` global is set: tgids are then those of this namespace, and `warden_tgid` too.
    pub pidns_dev: u64,
    pub pidns_ino: u64,
}

/// What the kernel knew when a selected process called `connect()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// Original destination address. IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`), network order.
    pub dst_addr: [u8; 16],
    /// Original destination port, host byte order.
    pub dst_port: u16,
    pub _pad: u16,
    /// The caller's tgid as Warden sees it: in the initial pid namespace, or in Warden's own when
    /// it runs in another one (0 when the caller is not in that namespace).
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// `task->comm`, NUL-padded.
    pub comm: [u8; 16],
}

/// A socket created in a selected cgroup (value of `SOCKET_TAGS`, keyed by socket cookie): it stays
/// selected whoever connects it, so handing it to a process outside the selection does not get it
/// past Warden.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SocketTag {
    /// The cgroup of the process that created the socket.
    pub cgroup_id: u64,
    /// The creator's tgid as Warden sees it (see `Origin::tgid`).
    pub tgid: u32,
    pub _pad: u32,
}

/// The client end of a redirected connection, as Warden sees it on accept: the peer address
/// (IPv4 stored IPv4-mapped, network order) and port (host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: u16,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all four are #[repr(C)] plain-old-data with explicit padding fields, so every byte
    // pattern is valid and no byte is uninitialised.
    unsafe impl aya::Pod for super::RedirectConfig {}
    unsafe impl aya::Pod for super::Origin {}
    unsafe impl aya::Pod for super::ClientKey {}
    unsafe impl aya::Pod for super::SocketTag {}
}
