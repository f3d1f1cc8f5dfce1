//! Outbound connections: a socket per dial (bound first when a local address is given), a
//! connect linked to its timeout, the caps on outbound slots, and the completion that opens
//! the connection or reports why it failed (refused, timed out, cancelled).

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::{Fd, Timespec};
use io_uring::{opcode, squeue};

use super::conn::{Conn, ConnId, State};
use super::error::IoError;
use super::handler::Handler;
use super::ring::{self, Op};
use super::slots::Io;
use super::sys;

impl Io {
    /// Starts an outbound connection to `addr` with the configured connect timeout; `token`
    /// comes back in `on_connected` / `on_connect_failed`.
    pub fn dial(&mut self, addr: SocketAddr, token: u64) -> Result<ConnId, IoError> {
        self.dial_timeout(addr, token, self.connect_timeout)
    }

    /// Starts an outbound connection with an explicit timeout. Errors: `ConnectionCap`,
    /// `Dial` (socket creation failed), `Stopping`.
    pub fn dial_timeout(
        &mut self,
        addr: SocketAddr,
        token: u64,
        timeout: Duration,
    ) -> Result<ConnId, IoError> {
        self.dial_inner(None, addr, token, timeout)
    }

    /// Starts an outbound connection from the local address `local` (bound before connect;
    /// port 0 lets `connect` pick a port unique per 4-tuple), e.g. to spread a load
    /// generator's connections over 127.0.0.0/8. Errors as for [`Io::dial_timeout`]; a bind
    /// failure (address not local, in use) is `Dial`.
    pub fn dial_from(
        &mut self,
        local: SocketAddr,
        addr: SocketAddr,
        token: u64,
        timeout: Duration,
    ) -> Result<ConnId, IoError> {
        self.dial_inner(Some(local), addr, token, timeout)
    }

    fn dial_inner(
        &mut self,
        local: Option<SocketAddr>,
        addr: SocketAddr,
        token: u64,
        timeout: Duration,
    ) -> Result<ConnId, IoError> {
        if self.stopping {
            return Err(IoError::Stopping);
        }
        if self.outbound_used >= self.max_outbound || self.slots_used >= self.slab_capacity {
            return Err(IoError::ConnectionCap);
        }
        if self.ring_socket {
            return Ok(self.dial_in_ring(local, addr, token, timeout));
        }
        let fd = sys::stream_socket(&addr, local.as_ref(), self.delayed_connect_ack)
            .map_err(IoError::Dial)?;
        let idx = self.dial_slot(fd, addr, token, timeout);
        let mut chain = std::mem::take(&mut self.chain);
        chain.clear();
        self.push_connect(idx, &mut chain);
        self.chain = chain;
        Ok(c_id(&self.slab.0[idx], idx))
    }

    /// Takes a slot for a dial to `addr` whose socket is `fd` (-1: not made yet).
    fn dial_slot(&mut self, fd: RawFd, addr: SocketAddr, token: u64, timeout: Duration) -> usize {
        let idx = self.alloc(fd, State::Connecting, addr);
        self.outbound_used += 1;
        let c = &mut self.slab.0[idx];
        c.outbound = true;
        c.token = token;
        c.addr = sys::RawAddr::from_std(addr);
        c.connect_ts = Timespec::from(timeout);
        idx
    }

    /// Pushes `setup` (linked entries before the connect, if any), then the connect of slot
    /// `idx` linked to its timeout.
    fn push_connect(&mut self, idx: usize, setup: &mut Vec<squeue::Entry>) {
        let c = &mut self.slab.0[idx];
        c.connect_armed = true;
        c.timeout_armed = true;
        let (idx32, generation) = (idx as u32, c.generation);
        let connect = opcode::Connect::new(Fd(c.fd), c.addr.as_ptr(), c.addr.len)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(ring::encode(Op::Connect, idx32, generation));
        let timeout = opcode::LinkTimeout::new(&raw const c.connect_ts)
            .build()
            .user_data(ring::encode(Op::LinkTimeout, idx32, generation));
        setup.push(connect);
        setup.push(timeout);
        // SAFETY: the addresses, option values and timespec live in the slot or in statics;
        // the slot does not move (the slab never reallocates) and is not reused before every
        // completion of the chain arrives.
        unsafe { self.push_chain(setup) };
    }

    /// A dial whose socket is made, set up and bound in the ring: the socket first; the rest,
    /// linked to the connect, once its descriptor is known ([`Io::socket_made`]).
    fn dial_in_ring(
        &mut self,
        local: Option<SocketAddr>,
        addr: SocketAddr,
        token: u64,
        timeout: Duration,
    ) -> ConnId {
        let idx = self.dial_slot(-1, addr, token, timeout);
        let c = &mut self.slab.0[idx];
        if let Some(local) = local {
            c.local = sys::SmallAddr::from_std(local);
            c.local_any_port = local.port() == 0;
        }
        c.socket_armed = true;
        let domain = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        let e = opcode::Socket::new(domain, ty, 0)
            .build()
            .user_data(ring::encode(Op::Socket, idx as u32, c.generation));
        // SAFETY: a socket request carries no pointers.
        unsafe { self.push(e) };
        c_id(&self.slab.0[idx], idx)
    }

    /// The ring made (`res` ≥ 0) or failed to make the socket of slot `idx`: its options and
    /// bind go in one chain with the connect.
    pub(crate) fn socket_made<H: Handler>(&mut self, handler: &mut H, idx: usize, res: i32) {
        let c = &mut self.slab.0[idx];
        c.socket_armed = false;
        if res >= 0 {
            c.fd = res;
        }
        if res < 0 || c.connect_abort || self.stopping {
            let errno = if c.connect_abort || self.stopping {
                libc::ECANCELED
            } else {
                -res
            };
            self.connect_failed(handler, idx, errno);
            return;
        }
        let (fd, generation) = (Fd(c.fd), c.generation);
        let user_data = ring::encode(Op::SockSetup, idx as u32, generation);
        let link = squeue::Flags::IO_LINK;
        let opt = |level: i32, name: i32, value: &'static libc::c_int| {
            opcode::SetSockOpt::new(
                fd,
                level as u32,
                name as u32,
                (value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
            .build()
            .flags(link)
            .user_data(user_data)
        };
        let mut chain = std::mem::take(&mut self.chain);
        chain.clear();
        chain.push(opt(libc::IPPROTO_TCP, libc::TCP_NODELAY, &ONE));
        if self.delayed_connect_ack {
            chain.push(opt(libc::IPPROTO_TCP, libc::TCP_QUICKACK, &ZERO));
        }
        if c.local.len > 0 {
            if c.local_any_port {
                chain.push(opt(libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, &ONE));
            }
            chain.push(
                opcode::Bind::new(fd, c.local.as_ptr(), c.local.len)
                    .build()
                    .flags(link)
                    .user_data(user_data),
            );
        }
        c.setup_pending = chain.len() as u8;
        self.push_connect(idx, &mut chain);
        self.chain = chain;
    }

    /// A socket option or bind of slot `idx` completed; its first error is kept for the
    /// connect's report (the connect is then cancelled by the kernel).
    pub(crate) fn socket_set_up(&mut self, idx: usize, res: i32) {
        let c = &mut self.slab.0[idx];
        c.setup_pending = c.setup_pending.saturating_sub(1);
        if res < 0 && res != -libc::ECANCELED && c.setup_errno == 0 {
            c.setup_errno = -res;
        }
        self.maybe_release(idx);
    }

    /// The connect of slot `idx` completed with `res` (0, or the error; `ECANCELED` when its
    /// linked timeout fired).
    pub(crate) fn connected<H: Handler>(&mut self, handler: &mut H, idx: usize, res: i32) {
        let c = &mut self.slab.0[idx];
        c.connect_armed = false;
        let (conn, token, peer) = (c.id(idx as u32), c.token, c.peer);
        if res == 0 && !c.connect_abort && !self.stopping {
            c.state = State::Open;
            c.reported = true;
            self.counters.live_connections += 1;
            self.counters.connects_ok += 1;
            handler.on_connected(self, conn, peer, token);
            if self.open_idx(conn).is_some() {
                self.arm_recv(idx);
            }
            return;
        }
        let errno = match -res {
            _ if c.connect_abort || self.stopping => libc::ECANCELED,
            // A socket option or the bind failed, and the kernel cancelled the connect.
            libc::ECANCELED if c.setup_errno != 0 => c.setup_errno,
            libc::ECANCELED => libc::ETIMEDOUT, // our linked timeout fired
            e => e,
        };
        self.connect_failed(handler, idx, errno);
    }

    /// The dial of slot `idx` failed with `errno`: the slot closes and the handler hears why.
    fn connect_failed<H: Handler>(&mut self, handler: &mut H, idx: usize, errno: i32) {
        let c = &mut self.slab.0[idx];
        let (conn, token) = (c.id(idx as u32), c.token);
        c.state = State::Closing;
        self.outbound_used -= 1;
        self.counters.connects_failed += 1;
        self.maybe_release(idx);
        handler.on_connect_failed(self, conn, token, std::io::Error::from_raw_os_error(errno));
    }
}

/// Option values of the socket-option commands (they must outlive the request).
static ONE: libc::c_int = 1;
static ZERO: libc::c_int = 0;

fn c_id(c: &Conn, idx: usize) -> ConnId {
    c.id(idx as u32)
}
