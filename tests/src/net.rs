//! Loopback addresses and ports that no other test in this run uses.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static NEXT_ADDRESS: AtomicU32 = AtomicU32::new(0);
static NEXT_RANDOM: AtomicU32 = AtomicU32::new(0);

/// A fresh address in 127.0.0.0/8, never 127.0.0.1 (Warden's listener lives there).
///
/// The second octet comes from the pid so that test binaries running at the same time don't collide;
/// the rest counts up within this process.
pub fn fresh_loopback() -> Ipv4Addr {
    let n = NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed);
    let process_octet = 10 + (std::process::id() % 240) as u8;
    let hi = ((n / 253) % 256) as u8;
    let lo = 2 + (n % 253) as u8;
    Ipv4Addr::new(127, process_octet, hi, lo)
}

/// A cheap per-process pseudo-random number (no need for a crate: ports only have to differ).
fn pseudo_random() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = NEXT_RANDOM.fetch_add(1, Ordering::Relaxed);
    let mut x = nanos ^ std::process::id().rotate_left(16) ^ n.wrapping_mul(0x9e37_79b9);
    // xorshift32
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// A port that is free on both 127.0.0.1 and ::1, below the ephemeral range so that no outgoing
/// connection grabs it between this check and the daemon's bind.
pub fn free_dual_stack_port() -> u16 {
    for _ in 0..1000 {
        let port = 20000 + (pseudo_random() % 12000) as u16;
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port));
        if v4.is_ok() && v6.is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 and ::1 between 20000 and 32000");
}

/// An address on which connections are refused: a port that was bound once and released.
pub fn refusing_address() -> SocketAddr {
    let listener = TcpListener::bind((fresh_loopback(), 0)).expect("binding a loopback port");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn fresh_addresses_are_loopback_distinct_and_never_the_listener() {
        let a = fresh_loopback();
        let b = fresh_loopback();
        assert_ne!(a, b);
        for ip in [a, b] {
            assert!(ip.is_loopback());
            assert_ne!(ip, Ipv4Addr::LOCALHOST);
        }
    }

    #[test]
    fn a_refusing_address_refuses() {
        let addr = refusing_address();
        assert!(addr.ip().is_loopback());
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_free_port_can_be_bound_on_both_families() {
        let port = free_dual_stack_port();
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("v4");
        TcpListener::bind((Ipv6Addr::LOCALHOST, port)).expect("v6");
    }
}
