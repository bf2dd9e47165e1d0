//! What the kernel captured when a selected process connected: the userspace view of `warden_ebpf::Origin`.
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The original destination and the caller, as recorded by the connect program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionOrigin {
    /// Where the process meant to connect (IPv4-mapped addresses are unmapped).
    pub original_dst: SocketAddr,
    /// Thread-group id (the process id) in the initial pid namespace.
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id (the inode number of the cgroup directory) the process connected from.
    pub cgroup_id: u64,
    /// `task->comm` at connect time.
    pub comm: String,
}

impl From<&warden_ebpf::Origin> for ConnectionOrigin {
    fn from(raw: &warden_ebpf::Origin) -> Self {
        let ip = Ipv6Addr::from(raw.dst_addr);
        let ip = match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ip),
        };
        let comm_len = raw
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw.comm.len());
        ConnectionOrigin {
            original_dst: SocketAddr::new(ip, raw.dst_port),
            tgid: raw.tgid,
            uid: raw.uid,
            gid: raw.gid,
            cgroup_id: raw.cgroup_id,
            comm: String::from_utf8_lossy(&raw.comm[..comm_len]).into_owned(),
        }
    }
}

/// The `ORIGINS` map key for a peer address seen on accept (IPv4 peers are stored IPv4-mapped).
pub fn client_key(peer: SocketAddr) -> warden_ebpf::ClientKey {
    let addr = match peer.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    warden_ebpf::ClientKey {
        addr: addr.octets(),
        port: peer.port(),
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_origin_is_unmapped_and_comm_trimmed() {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let raw = warden_ebpf::Origin {
            dst_addr: std::net::Ipv4Addr::new(127, 0, 0, 9)
                .to_ipv6_mapped()
                .octets(),
            dst_port: 443,
            _pad: 0,
            tgid: 42,
            uid: 1000,
            gid: 1000,
            cgroup_id: 7,
            comm,
        };
        let origin = ConnectionOrigin::from(&raw);
        assert_eq!(origin.original_dst, "127.0.0.9:443".parse().unwrap());
        assert_eq!(origin.comm, "curl");
    }

    #[test]
    fn client_key_maps_ipv4_peers() {
        let key = client_key("127.0.0.1:40000".parse().unwrap());
        assert_eq!(
            Ipv6Addr::from(key.addr).to_ipv4_mapped(),
            Some([127, 0, 0, 1].into())
        );
        assert_eq!(key.port, 40000);
        let key6 = client_key("[::1]:40001".parse().unwrap());
        assert_eq!(Ipv6Addr::from(key6.addr), Ipv6Addr::LOCALHOST);
    }
}
