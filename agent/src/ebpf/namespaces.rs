//! Warden's own network and pid namespaces, as the programs must know them.
use std::os::unix::fs::MetadataExt;

/// PROC_PID_INIT_INO in the kernel: the inode of the initial pid namespace.
const INITIAL_PID_NAMESPACE_INO: u64 = 0xEFFF_FFFC;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("reading /proc/self/ns/pid: {0}")]
    Pid(#[source] std::io::Error),
}

/// The pid namespace Warden runs in.
#[derive(Clone, Copy, Debug)]
pub struct PidNamespace {
    pub dev: u64,
    pub ino: u64,
    /// The host's own: the programs' plain tgids are then Warden's pids too.
    pub is_initial: bool,
}

pub fn own_pid_namespace() -> Result<PidNamespace, NamespaceError> {
    let meta = std::fs::metadata("/proc/self/ns/pid").map_err(NamespaceError::Pid)?;
    let namespace = PidNamespace {
        dev: meta.dev(),
        ino: meta.ino(),
        is_initial: meta.ino() == INITIAL_PID_NAMESPACE_INO,
    };
    if !namespace.is_initial {
        tracing::info!(
            pidns_ino = namespace.ino,
            "running in a pid namespace of its own: processes are identified by their pids in it (Linux 6.10 or later); processes outside it are attributed by uid, cgroup and command name only"
        );
    }
    Ok(namespace)
}

/// The cookie of Warden's network namespace, or 0 when the kernel cannot tell (before 5.14),
/// which turns the programs' namespace check off.
pub fn own_netns_cookie() -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_pid_namespace_inode_is_the_kernels_constant() {
        // PROC_PID_INIT_INO = 0xEFFFFFFCU in include/linux/proc_ns.h; /proc shows it in decimal.
        assert_eq!(INITIAL_PID_NAMESPACE_INO, 4_026_531_836);
        let namespace = own_pid_namespace().expect("/proc/self/ns/pid is readable");
        let link = std::fs::read_link("/proc/self/ns/pid").expect("readlink");
        assert_eq!(
            link.to_string_lossy(),
            format!("pid:[{}]", namespace.ino),
            "the inode read is the namespace's"
        );
    }
}
