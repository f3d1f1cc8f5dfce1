//! Listening sockets bound before their shards start, so that whoever starts the shards knows
//! the bound address (the real port when 0 was asked for) before any shard thread runs: one
//! SO_REUSEPORT socket per shard, all on one address, the kernel spreading new connections
//! over them.
//!
//! On a host without IPv6 (booted with `ipv6.disable=1`, or a container without it) the
//! all-addresses `[::]` cannot be bound; [`Listener::bind_group`] then listens on `0.0.0.0`
//! at the same port, with a warning ([`ipv4_fallback`]). A specific IPv6 address never falls
//! back.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;

use super::error::IoError;
use super::sys;

/// A bound, listening TCP socket with `SO_REUSEADDR`, `SO_REUSEPORT` and `TCP_NODELAY`
/// (inherited by accepted sockets), waiting to be handed to one shard
/// ([`spawn_on`](super::spawn_on), [`spawn_shards_on`](super::spawn_shards_on)), whose
/// multishot accept then serves it. Dropping it closes the socket.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    local_addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` and listens with `backlog`; `[::]` is dual-stack. Errors name the syscall
    /// that failed, e.g. `IoError::Setup { what: "bind", .. }` for an address in use by a
    /// socket without SO_REUSEPORT, or not local.
    pub fn bind(addr: SocketAddr, backlog: i32) -> Result<Listener, IoError> {
        let (fd, local_addr) = sys::listen(addr, backlog)?;
        Ok(Listener { fd, local_addr })
    }

    /// Binds `count` listeners that share `addr` through SO_REUSEPORT, one per shard. With
    /// port 0 the first bind picks a free port and the others bind that port. `[::]` on a
    /// host without IPv6 becomes `0.0.0.0` (with a warning; see `ipv4_fallback`). On error the listeners
    /// already bound are closed.
    pub fn bind_group(
        addr: SocketAddr,
        backlog: i32,
        count: usize,
    ) -> Result<Vec<Listener>, IoError> {
        let mut listeners: Vec<Listener> = Vec::with_capacity(count);
        for _ in 0..count {
            let bound = match listeners.first() {
                Some(first) => Listener::bind(first.local_addr(), backlog),
                None => Listener::bind(addr, backlog).or_else(|e| match ipv4_fallback(addr, &e) {
                    Some(v4) => {
                        tracing::warn!(
                            asked = %addr,
                            listen = %v4,
                            error = %e,
                            "IPv6 is not available on this host; listening on {v4} (IPv4 only) instead of {addr}"
                        );
                        Listener::bind(v4, backlog)
                    }
                    None => Err(e),
                }),
            };
            listeners.push(bound?);
        }
        Ok(listeners)
    }

    /// The address bound: the real port when port 0 was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The socket, for the shard that will accept on it.
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

/// The address to listen on instead of `addr` after binding it failed with `err`:
/// `0.0.0.0` at the same port when `addr` is the unspecified IPv6 address `[::]` and the
/// error says the host has no IPv6 — `socket(AF_INET6)` refused with `EAFNOSUPPORT` (IPv6
/// disabled at boot or not built in), or `bind` with `EADDRNOTAVAIL` / `EAFNOSUPPORT`.
/// `None` for any other address or error: an explicit address is never replaced.
pub fn ipv4_fallback(addr: SocketAddr, err: &IoError) -> Option<SocketAddr> {
    let SocketAddr::V6(a) = addr else {
        return None;
    };
    if !a.ip().is_unspecified() {
        return None;
    }
    let IoError::Setup { what, source } = err else {
        return None;
    };
    let errno = source.raw_os_error()?;
    let no_ipv6 = match *what {
        "socket" => errno == libc::EAFNOSUPPORT,
        "bind" => errno == libc::EADDRNOTAVAIL || errno == libc::EAFNOSUPPORT,
        _ => false,
    };
    no_ipv6.then(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, a.port())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup_error(what: &'static str, errno: i32) -> IoError {
        IoError::Setup {
            what,
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn only_the_unspecified_ipv6_address_falls_back_and_only_for_missing_ipv6() {
        let any6: SocketAddr = "[::]:7075".parse().unwrap();
        let v4: SocketAddr = "0.0.0.0:7075".parse().unwrap();
        let no_family = setup_error("socket", libc::EAFNOSUPPORT);
        assert_eq!(ipv4_fallback(any6, &no_family), Some(v4));
        assert_eq!(
            ipv4_fallback(any6, &setup_error("bind", libc::EADDRNOTAVAIL)),
            Some(v4)
        );
        assert_eq!(
            ipv4_fallback(any6, &setup_error("bind", libc::EAFNOSUPPORT)),
            Some(v4)
        );
        // port 0 stays 0: the fallback picks its own port
        let any6_0: SocketAddr = "[::]:0".parse().unwrap();
        assert_eq!(
            ipv4_fallback(any6_0, &no_family),
            Some("0.0.0.0:0".parse().unwrap())
        );
        // other errors are reported, not worked around
        assert_eq!(
            ipv4_fallback(any6, &setup_error("bind", libc::EADDRINUSE)),
            None
        );
        assert_eq!(
            ipv4_fallback(any6, &setup_error("socket", libc::EMFILE)),
            None
        );
        assert_eq!(
            ipv4_fallback(any6, &setup_error("listen", libc::EAFNOSUPPORT)),
            None
        );
        assert_eq!(ipv4_fallback(any6, &IoError::Config("x")), None);
        // an explicit address never falls back
        for explicit in [
            "[::1]:7075",
            "[2001:db8::1]:7075",
            "127.0.0.1:7075",
            "0.0.0.0:7075",
        ] {
            let a: SocketAddr = explicit.parse().unwrap();
            assert_eq!(ipv4_fallback(a, &no_family), None, "{explicit}");
        }
    }

    #[test]
    fn a_group_shares_the_port_the_first_bind_picked() {
        let group = Listener::bind_group("127.0.0.1:0".parse().unwrap(), 16, 3).unwrap();
        assert_eq!(group.len(), 3);
        let addr = group[0].local_addr();
        assert_ne!(addr.port(), 0);
        assert!(group.iter().all(|l| l.local_addr() == addr));
    }

    #[test]
    fn a_port_taken_without_reuseport_fails_the_bind() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = Listener::bind_group(taken.local_addr().unwrap(), 16, 2).unwrap_err();
        assert!(matches!(err, IoError::Setup { what: "bind", .. }), "{err}");
    }
}
