//! The receive path: one multishot receive per connection into the provided buffer ring, the
//! bytes handed to the handler and the buffer returned at once, the receive re-armed when the
//! kernel ends it, and the connection closed on end of stream or an error.

use io_uring::types::Fd;
use io_uring::{cqueue, opcode};

use super::bufring::BufRing;
use super::conn::{CloseReason, State};
use super::handler::Handler;
use super::ring::{self, Op};
use super::slots::Io;

impl Io {
    pub(crate) fn arm_recv(&mut self, idx: usize) {
        let c = &mut self.slab.0[idx];
        debug_assert!(!c.recv_armed);
        c.recv_armed = true;
        let e = opcode::RecvMulti::new(Fd(c.fd), self.bgid)
            .build()
            .user_data(ring::encode(Op::Recv, idx as u32, c.generation));
        // SAFETY: the buffers come from the registered buffer ring, which outlives the ring.
        unsafe { self.push(e) };
    }

    /// A receive of slot `idx` completed with `res` bytes (or an error) in the buffer named by
    /// `flags`; `more`: it stays armed.
    pub(crate) fn received<H: Handler>(
        &mut self,
        handler: &mut H,
        bufring: &mut BufRing,
        idx: usize,
        res: i32,
        flags: u32,
        more: bool,
    ) {
        let c = &mut self.slab.0[idx];
        if !more {
            c.recv_armed = false;
        }
        let generation = c.generation;
        let open = c.state == State::Open;
        let bid = cqueue::buffer_select(flags);
        if res > 0 {
            self.counters.recv_completions += 1;
            self.counters.recv_bytes += res as u64;
            if let Some(bid) = bid {
                if open {
                    let conn = self.slab.0[idx].id(idx as u32);
                    let data = bufring.data(bid, res as usize);
                    handler.on_data(self, conn, data);
                }
                bufring.recycle(bid);
            }
        } else {
            if let Some(bid) = bid {
                bufring.recycle(bid);
            }
            match -res {
                0 => self.begin_close(idx, CloseReason::PeerClosed),
                libc::ENOBUFS => self.counters.buf_ring_exhausted += 1,
                libc::ECANCELED if !open => {}
                e => self.begin_close(idx, CloseReason::RecvError(e)),
            }
        }
        // The handler may have closed the connection (and a dial may even have reused the
        // slot): re-arm only the same, still open connection.
        let c = &self.slab.0[idx];
        if !more && c.generation == generation {
            if c.state == State::Open {
                self.counters.recv_rearms += 1;
                self.arm_recv(idx);
            } else {
                self.maybe_release(idx);
            }
        }
    }
}
