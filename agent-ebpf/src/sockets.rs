//! Socket creation in selected cgroups: tag inet sockets so that selection follows them, and refuse
//! raw inet sockets, which would write their own packets past the connect hooks.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, generated::bpf_get_socket_cookie},
    macros::cgroup_sock,
    programs::SockContext,
};
use aya_log_ebpf::warn;
use warden_ebpf::{counter, SocketTag};

use crate::programs::{
    count, current_cgroup_selected, current_tgid, ALLOW, REDIRECT_CONFIG, REFUSE, SOCKET_TAGS,
};

const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const SOCK_RAW: u32 = 3;

/// Tags inet sockets created in a selected cgroup (selection then follows the socket, not the
/// task that calls connect) and refuses raw inet sockets there, which would write their own
/// TCP segments past the connect hooks.
#[cgroup_sock(sock_create)]
pub fn warden_sock_create(ctx: SockContext) -> i32 {
    // The verifier needs the return value provably in [0, 1].
    match try_sock_create(&ctx) {
        Ok(REFUSE) | Err(REFUSE) => REFUSE,
        Ok(_) | Err(_) => ALLOW,
    }
}

/// Forgets a released socket's tag (its cookie is never reused).
#[cgroup_sock(sock_release)]
pub fn warden_sock_release(ctx: SockContext) -> i32 {
    // SAFETY: the context is the socket context the helper expects.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    // Absent for every socket that was never tagged.
    let _ = SOCKET_TAGS.remove(&cookie);
    ALLOW
}

#[inline(always)]
fn try_sock_create(ctx: &SockContext) -> Result<i32, i32> {
    let Some(config) = REDIRECT_CONFIG.get(0) else {
        return Ok(ALLOW);
    };
    if !current_cgroup_selected() {
        return Ok(ALLOW);
    }
    let tgid = current_tgid(config);
    if tgid == config.warden_tgid {
        return Ok(ALLOW);
    }
    // SAFETY: the kernel hands every cgroup/sock_create program a valid bpf_sock.
    let (family, sock_type) = unsafe { ((*ctx.sock).family, (*ctx.sock).type_) };
    match sock_type {
        SOCK_STREAM | SOCK_DGRAM => {}
        SOCK_RAW => {
            count(counter::RAW_REFUSED);
            warn!(
                ctx,
                "refused a raw socket (family {}) to tgid {}: selected cgroups cannot write their own packets",
                family,
                tgid
            );
            return Ok(REFUSE);
        }
        _ => return Ok(ALLOW),
    }
    let tag = SocketTag {
        // SAFETY: a helper call without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        tgid,
        _pad: 0,
    };
    // SAFETY: the context is the socket context the helper expects.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    if SOCKET_TAGS.insert(&cookie, &tag, 0).is_err() {
        // Untagged, the socket could be handed to a process outside the selection: fail closed.
        count(counter::TAGS_FULL);
        warn!(
            ctx,
            "refused a socket to tgid {}: the socket tag map is full", tgid
        );
        return Ok(REFUSE);
    }
    Ok(ALLOW)
}
