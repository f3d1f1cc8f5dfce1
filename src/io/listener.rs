//! Listening sockets bound before their shards start, so that whoever starts the shards knows
//! the bound address (the real port when 0 was asked for) before any shard thread runs: one
//! SO_REUSEPORT socket per shard, all on one address, the kernel spreading new connections
//! over them.

use std::net::SocketAddr;
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
    /// port 0 the first bind picks a free port and the others bind that port. On error the
    /// listeners already bound are closed.
    pub fn bind_group(
        addr: SocketAddr,
        backlog: i32,
        count: usize,
    ) -> Result<Vec<Listener>, IoError> {
        let mut listeners: Vec<Listener> = Vec::with_capacity(count);
        for _ in 0..count {
            let at = listeners.first().map_or(addr, Listener::local_addr);
            listeners.push(Listener::bind(at, backlog)?);
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

#[cfg(test)]
mod tests {
    use super::*;

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
