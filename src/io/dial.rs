//! Outbound connections: a socket per dial (bound first when a local address is given), a
//! connect linked to its timeout, the caps on outbound slots, and the completion that opens
//! the connection or reports why it failed (refused, timed out, cancelled).

use std::net::SocketAddr;
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
        let fd = sys::stream_socket(&addr, local.as_ref(), self.delayed_connect_ack)
            .map_err(IoError::Dial)?;
        let idx = self.alloc(fd, State::Connecting, addr);
        self.outbound_used += 1;
        let c = &mut self.slab.0[idx];
        c.outbound = true;
        c.token = token;
        c.addr = sys::RawAddr::from_std(addr);
        c.connect_ts = Timespec::from(timeout);
        c.connect_armed = true;
        c.timeout_armed = true;
        let (idx32, generation) = (idx as u32, c.generation);
        let connect = opcode::Connect::new(Fd(fd), c.addr.as_ptr(), c.addr.len)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(ring::encode(Op::Connect, idx32, generation));
        let timeout = opcode::LinkTimeout::new(&raw const c.connect_ts)
            .build()
            .user_data(ring::encode(Op::LinkTimeout, idx32, generation));
        // SAFETY: the address and timespec live in the slot, which does not move (the slab
        // never reallocates) and is not reused before both completions arrive.
        unsafe { self.push_linked(connect, timeout) };
        Ok(c_id(&self.slab.0[idx], idx))
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
            libc::ECANCELED => libc::ETIMEDOUT, // our linked timeout fired
            e => e,
        };
        c.state = State::Closing;
        self.outbound_used -= 1;
        self.counters.connects_failed += 1;
        self.maybe_release(idx);
        handler.on_connect_failed(self, conn, token, std::io::Error::from_raw_os_error(errno));
    }
}

fn c_id(c: &Conn, idx: usize) -> ConnId {
    c.id(idx as u32)
}
