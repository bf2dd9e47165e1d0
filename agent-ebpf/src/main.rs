//! Warden's kernel side: redirect selected cgroups' TCP connects to the proxy and remember where they were going.
//!
//! Selection follows the socket as well as the caller: a socket created in a selected cgroup is
//! tagged (see `sockets`) and stays selected whoever connects it.
//!
//! Byte order is spelled out at every field: `bpf_sock_addr.user_ip4/user_ip6/user_port` are network
//! order (the port in the low 16 bits of a u32); `bpf_sock_ops.local_ip4/local_ip6` are network order
//! and `bpf_sock_ops.local_port` is host order.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod sockets;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::{bpf_pidns_info, bpf_sock_addr, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB},
        helpers::{
            bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
            bpf_get_current_uid_gid,
            generated::{
                bpf_get_current_ancestor_cgroup_id, bpf_get_netns_cookie,
                bpf_get_ns_current_pid_tgid, bpf_get_socket_cookie,
            },
        },
        macros::{cgroup_sock_addr, map, sock_ops},
        maps::{Array, HashMap, LruHashMap, PerCpuArray},
        programs::{SockAddrContext, SockOpsContext},
    };
    use aya_log_ebpf::{debug, warn};
    use warden_ebpf::{
        counter, port_flags, redirect_flags, ClientKey, Origin, RedirectConfig, SocketTag,
        MAX_CGROUP_DEPTH, MAX_INTERCEPT_PORTS, MAX_ORIGINS, MAX_PENDING_ORIGINS,
        MAX_SELECTED_CGROUPS, MAX_SOCKET_TAGS,
    };

    const AF_INET: u32 = 2;
    const AF_INET6: u32 = 10;
    const SOCK_STREAM: u32 = 1;
    const SOCK_DGRAM: u32 = 2;
    /// Return values of cgroup/connect and cgroup/sendmsg programs.
    pub(crate) const ALLOW: i32 = 1;
    pub(crate) const REFUSE: i32 = 0;
    /// 127.0.0.1 and ::1 / ::ffff:127.0.0.1 as the u32 words the kernel stores (network order).
    const LOOPBACK4: u32 = u32::from_ne_bytes([127, 0, 0, 1]);
    const LOOPBACK6: [u32; 4] = [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];
    const V4_MAPPED_PREFIX: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

    /// See `warden_ebpf::globals::USE_NS_PID`; set by userspace through `override_global`.
    #[unsafe(no_mangle)]
    static USE_NS_PID: u8 = 0;

    #[map]
    pub(crate) static REDIRECT_CONFIG: Array<RedirectConfig> = Array::with_max_entries(1, 0);
    #[map]
    static SELECTED_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(MAX_SELECTED_CGROUPS, 0);
    /// Keys are ports in host byte order; values are `port_flags` bits.
    #[map]
    static INTERCEPT_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_INTERCEPT_PORTS, 0);
    /// Origins of redirected sockets that have not connected yet, by socket cookie.
    #[map]
    static PENDING_ORIGINS: LruHashMap<u64, Origin> =
        LruHashMap::with_max_entries(MAX_PENDING_ORIGINS, 0);
    /// Origins of connected redirected sockets, by the client's address as Warden sees it on accept.
    /// Userspace deletes each entry when it accepts the connection.
    #[map]
    static ORIGINS: LruHashMap<ClientKey, Origin> = LruHashMap::with_max_entries(MAX_ORIGINS, 0);
    /// Sockets created in a selected cgroup, by socket cookie; removed when the socket is released.
    /// A plain hash, not an LRU: an evicted tag would let its socket out of the selection.
    #[map]
    pub(crate) static SOCKET_TAGS: HashMap<u64, SocketTag> =
        HashMap::with_max_entries(MAX_SOCKET_TAGS, 0);
    #[map]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

    #[cgroup_sock_addr(connect4)]
    pub fn warden_connect4(ctx: SockAddrContext) -> i32 {
        // The verifier needs the return value provably in [0, 1].
        match try_connect(&ctx, Family::V4) {
            Ok(REFUSE) | Err(REFUSE) => REFUSE,
            Ok(_) | Err(_) => ALLOW,
        }
    }

    #[cgroup_sock_addr(connect6)]
    pub fn warden_connect6(ctx: SockAddrContext) -> i32 {
        // The verifier needs the return value provably in [0, 1].
        match try_connect(&ctx, Family::V6) {
            Ok(REFUSE) | Err(REFUSE) => REFUSE,
            Ok(_) | Err(_) => ALLOW,
        }
    }

    /// Unconnected UDP (`sendto`) to an intercepted port: refused like a UDP connect, so QUIC
    /// clients fall back to TCP, which is redirected.
    #[cgroup_sock_addr(sendmsg4)]
    pub fn warden_sendmsg4(ctx: SockAddrContext) -> i32 {
        // The verifier needs the return value provably in [0, 1].
        match try_sendmsg(&ctx) {
            Ok(REFUSE) | Err(REFUSE) => REFUSE,
            Ok(_) | Err(_) => ALLOW,
        }
    }

    #[cgroup_sock_addr(sendmsg6)]
    pub fn warden_sendmsg6(ctx: SockAddrContext) -> i32 {
        // The verifier needs the return value provably in [0, 1].
        match try_sendmsg(&ctx) {
            Ok(REFUSE) | Err(REFUSE) => REFUSE,
            Ok(_) | Err(_) => ALLOW,
        }
    }

    #[sock_ops]
    pub fn warden_sock_ops(ctx: SockOpsContext) -> u32 {
        match try_sock_ops(&ctx) {
            Ok(v) | Err(v) => v,
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Family {
        V4,
        V6,
    }

    /// A call that is to be redirected (or refused), and the cgroup it is attributed to.
    struct SelectedCall {
        config: &'static RedirectConfig,
        /// The caller's cgroup, or the socket creator's when only the socket is selected.
        cgroup_id: u64,
        by_socket_tag: bool,
    }

    /// The checks shared by every hook: does this port get the treatment `wanted` (a `port_flags`
    /// bit), is the caller someone other than Warden, and does it run in a selected cgroup (or
    /// below one), or was the socket created in one?
    // Inlined: as a function of its own, its Option<SelectedCall> return type gets BTF (a Rust
    // enum layout) that the kernel's BTF loader rejects.
    #[inline(always)]
    fn is_selected_call(
        ctx: &SockAddrContext,
        sa: &bpf_sock_addr,
        wanted: u8,
    ) -> Option<SelectedCall> {
        // user_port: the port in network order in the low 16 bits.
        let dst_port = u16::from_be(sa.user_port as u16);
        let config = REDIRECT_CONFIG.get(0)?;
        // SAFETY: the key is a plain u16 and the value a plain u8.
        let mut flags = unsafe { INTERCEPT_PORTS.get(&dst_port) }
            .copied()
            .unwrap_or(0);
        if config.flags & redirect_flags::ALL_TCP_PORTS != 0 {
            flags |= port_flags::REDIRECT_TCP;
        }
        if flags & wanted == 0 {
            return None;
        }
        if current_tgid(config) == config.warden_tgid {
            return None;
        }
        if current_cgroup_selected() {
            return Some(SelectedCall {
                config,
                // SAFETY: a helper call without arguments.
                cgroup_id: unsafe { bpf_get_current_cgroup_id() },
                by_socket_tag: false,
            });
        }
        // SAFETY: the context is the socket-address context the helper expects.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
        // SAFETY: the key is a plain u64; the tag is copied out.
        let tag = unsafe { SOCKET_TAGS.get(&cookie) }.copied()?;
        Some(SelectedCall {
            config,
            cgroup_id: tag.cgroup_id,
            by_socket_tag: true,
        })
    }

    /// The caller's tgid as Warden sees it (see `Origin::tgid`); 0 when it is not visible there.
    #[inline(always)]
    pub(crate) fn current_tgid(config: &RedirectConfig) -> u32 {
        // SAFETY: a read of a global the loader made read-only; volatile so that the compiler
        // keeps the load for the verifier to see the value set at load time.
        if unsafe { core::ptr::read_volatile(&USE_NS_PID) } == 0 {
            return (bpf_get_current_pid_tgid() >> 32) as u32;
        }
        let mut info = bpf_pidns_info { pid: 0, tgid: 0 };
        // SAFETY: `info` is a writable bpf_pidns_info and its exact size is passed.
        let found = unsafe {
            bpf_get_ns_current_pid_tgid(
                config.pidns_dev,
                config.pidns_ino,
                &mut info,
                core::mem::size_of::<bpf_pidns_info>() as u32,
            )
        };
        if found == 0 {
            info.tgid
        } else {
            0
        }
    }

    pub(crate) fn current_cgroup_selected() -> bool {
        // Level 0 is the root; walking down to the current cgroup covers every ancestor, so a
        // selected cgroup selects its descendants too. Past the current depth the helper returns 0.
        for level in 0..MAX_CGROUP_DEPTH {
            // SAFETY: a helper call with a scalar argument.
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
            if id == 0 {
                break;
            }
            // SAFETY: the key is a plain u64 and the value is only tested for presence.
            if unsafe { SELECTED_CGROUPS.get(&id) }.is_some() {
                return true;
            }
        }
        false
    }

    pub(crate) fn count(index: u32) {
        if let Some(counter) = COUNTERS.get_ptr_mut(index) {
            // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
            unsafe { *counter += 1 };
        }
    }

    #[inline(always)]
    fn try_connect(ctx: &SockAddrContext, family: Family) -> Result<i32, i32> {
        // SAFETY: the kernel hands every cgroup/connect program a valid bpf_sock_addr.
        let sa = unsafe { &mut *ctx.sock_addr };
        let wanted = match sa.type_ {
            SOCK_STREAM => port_flags::REDIRECT_TCP,
            SOCK_DGRAM => port_flags::REFUSE_UDP,
            _ => return Ok(ALLOW),
        };
        let Some(call) = is_selected_call(ctx, sa, wanted) else {
            return Ok(ALLOW);
        };
        let config = call.config;
        let dst_port = u16::from_be(sa.user_port as u16);
        // SAFETY: the context is the socket-address context the helper expects.
        let netns = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
        if config.netns_cookie != 0 && netns != config.netns_cookie {
            count(counter::NETNS_REFUSED);
            warn!(
                ctx,
                "refused connect of tgid {} to port {}: selected, but in another network namespace",
                current_tgid(config),
                dst_port
            );
            return Ok(REFUSE);
        }
        match sa.type_ {
            SOCK_STREAM => {}
            SOCK_DGRAM => {
                count(counter::UDP_REFUSED);
                debug!(ctx, "refused UDP to intercepted port {}", dst_port);
                return Ok(REFUSE);
            }
            _ => return Ok(ALLOW),
        }

        let mut dst_addr = [0u32; 4];
        let v4_mapped;
        match family {
            Family::V4 => {
                dst_addr = [0, 0, V4_MAPPED_PREFIX, sa.user_ip4];
                v4_mapped = true;
            }
            Family::V6 => {
                for (i, word) in dst_addr.iter_mut().enumerate() {
                    *word = sa.user_ip6[i];
                }
                v4_mapped = dst_addr[0] == 0 && dst_addr[1] == 0 && dst_addr[2] == V4_MAPPED_PREFIX;
            }
        }

        let uid_gid = bpf_get_current_uid_gid();
        let origin = Origin {
            // SAFETY: [u32; 4] and [u8; 16] have the same size; both are plain bytes.
            dst_addr: unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(dst_addr) },
            dst_port,
            _pad: 0,
            tgid: current_tgid(config),
            uid: uid_gid as u32,
            gid: (uid_gid >> 32) as u32,
            cgroup_id: call.cgroup_id,
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
        };
        // SAFETY: the context is the socket-address context the helper expects.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
        if PENDING_ORIGINS.insert(&cookie, &origin, 0).is_err() {
            // Without an origin Warden could not attribute or forward the connection: leave it alone.
            warn!(
                ctx,
                "origin map insert failed; not redirecting tgid {}", origin.tgid
            );
            return Ok(ALLOW);
        }

        let listen_port = (config.listen_port.to_be()) as u32;
        match family {
            Family::V4 => sa.user_ip4 = LOOPBACK4,
            Family::V6 if v4_mapped => {
                sa.user_ip6[0] = 0;
                sa.user_ip6[1] = 0;
                sa.user_ip6[2] = V4_MAPPED_PREFIX;
                sa.user_ip6[3] = LOOPBACK4;
            }
            Family::V6 => {
                sa.user_ip6[0] = LOOPBACK6[0];
                sa.user_ip6[1] = LOOPBACK6[1];
                sa.user_ip6[2] = LOOPBACK6[2];
                sa.user_ip6[3] = LOOPBACK6[3];
            }
        }
        sa.user_port = listen_port;
        count(counter::REDIRECTED);
        if call.by_socket_tag {
            count(counter::BY_SOCKET_TAG);
            debug!(
                ctx,
                "redirected a socket created in selected cgroup {} and connected by tgid {}",
                call.cgroup_id,
                origin.tgid
            );
        }
        debug!(ctx, "redirected tgid {} port {}", origin.tgid, dst_port);
        Ok(ALLOW)
    }

    #[inline(always)]
    fn try_sendmsg(ctx: &SockAddrContext) -> Result<i32, i32> {
        // SAFETY: the kernel hands every cgroup/sendmsg program a valid bpf_sock_addr.
        let sa = unsafe { &*ctx.sock_addr };
        if is_selected_call(ctx, sa, port_flags::REFUSE_UDP).is_none() {
            return Ok(ALLOW);
        }
        count(counter::UDP_REFUSED);
        debug!(
            ctx,
            "refused UDP sendmsg to intercepted port {}",
            u16::from_be(sa.user_port as u16)
        );
        Ok(REFUSE)
    }

    /// The verifier only allows context loads at constant offsets from the unmodified context
    /// pointer, so each word is read on its own (a whole-array copy goes through a moved pointer).
    #[inline(always)]
    fn local_ip6(ctx: &SockOpsContext) -> [u32; 4] {
        // SAFETY: the kernel hands every sock_ops program a valid bpf_sock_ops.
        unsafe {
            let ops = ctx.ops;
            [
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).local_ip6[0])),
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).local_ip6[1])),
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).local_ip6[2])),
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).local_ip6[3])),
            ]
        }
    }

    /// Once a redirected socket is connected its source port is known: re-key its origin by the
    /// client address Warden will see on accept.
    #[inline(always)]
    fn try_sock_ops(ctx: &SockOpsContext) -> Result<u32, u32> {
        if ctx.op() != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
            return Ok(0);
        }
        // SAFETY: the context is the sock_ops context the helper expects.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
        // SAFETY: the origin is copied out before the entry is removed.
        let Some(origin) = (unsafe { PENDING_ORIGINS.get(&cookie) }).copied() else {
            return Ok(0);
        };
        let addr = match ctx.family() {
            AF_INET => [0, 0, V4_MAPPED_PREFIX, ctx.local_ip4()],
            AF_INET6 => local_ip6(ctx),
            _ => return Ok(0),
        };
        let key = ClientKey {
            // SAFETY: [u32; 4] and [u8; 16] have the same size; both are plain bytes.
            addr: unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(addr) },
            // local_port: host byte order.
            port: ctx.local_port() as u16,
            _pad: 0,
        };
        let _ = PENDING_ORIGINS.remove(&cookie);
        if ORIGINS.insert(&key, &origin, 0).is_ok() {
            count(counter::ORIGIN_INDEXED);
        }
        Ok(0)
    }
}

#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
