//! Inbound connections: the multishot accept on the shard's listener (re-armed after it ends,
//! after a pause when descriptors or memory ran out), the handler's screening against the
//! caps (refuse, accept, evict), and the slot and first receive of an accepted connection.
//!
//! With [`ShardConfig::accept_with_address`](super::ShardConfig) the listener has instead
//! [`ACCEPT_SLOTS`](super::conn::ACCEPT_SLOTS) single-shot accepts in flight, each writing the peer's address into a slot
//! of its own (a multishot accept has one address buffer for all its completions, so it cannot
//! tell them apart), which spares the `getpeername` call per connection.

use std::mem;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::opcode;
use io_uring::types::Fd;

use super::conn::{CloseReason, State};
use super::handler::{Handler, Screen};
use super::ring::{self, Op};
use super::slots::Io;
use super::sys;

/// Delay before re-arming an accept that failed for lack of resources (EMFILE and friends).
const ACCEPT_RETRY: Duration = Duration::from_millis(20);

impl Io {
    pub(crate) fn arm_accept(&mut self) {
        if self.listener < 0 || self.stopping {
            return;
        }
        if self.accept_slots.in_use() {
            self.arm_accept_slots();
            return;
        }
        if self.accept_armed {
            return;
        }
        self.accept_armed = true;
        let e = opcode::AcceptMulti::new(Fd(self.listener))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(ring::encode(Op::Accept, 0, 0));
        // SAFETY: a multishot accept carries no pointers.
        unsafe { self.push(e) };
    }

    /// Arms a single-shot accept in every free address slot.
    fn arm_accept_slots(&mut self) {
        for k in 0..self.accept_slots.armed.len() {
            if self.accept_slots.armed[k] {
                continue;
            }
            self.accept_slots.armed[k] = true;
            let slot = self.accept_slots.addrs[k].get();
            // SAFETY: no accept of this slot is in flight, so nothing else writes it.
            unsafe { (*slot).len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t };
            // SAFETY: as above; the pointers are into the slot, which does not move.
            let (addr, len) = unsafe { ((&raw mut (*slot).storage).cast(), &raw mut (*slot).len) };
            let e = opcode::Accept::new(Fd(self.listener), addr, len)
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build()
                .user_data(ring::encode(Op::Accept, k as u32, 0));
            // SAFETY: the address slot is boxed in `self` and outlives the ring's operations
            // (shutdown cancels and drains them; on unwind the ring is dropped first).
            unsafe { self.push(e) };
        }
        self.accept_armed = true;
    }

    /// Cancels the accepts in flight (shutdown).
    pub(crate) fn cancel_accepts(&mut self) {
        if !self.accept_slots.in_use() {
            if self.accept_armed {
                self.cancel(ring::encode(Op::Accept, 0, 0));
            }
            return;
        }
        for k in 0..self.accept_slots.armed.len() {
            if self.accept_slots.armed[k] {
                self.cancel(ring::encode(Op::Accept, k as u32, 0));
            }
        }
    }

    /// An accept completed with `res` (a new socket, or an error); `slot`: its address slot
    /// (single-shot accepts); `more`: the multishot accept stays armed.
    pub(crate) fn accepted<H: Handler>(
        &mut self,
        handler: &mut H,
        slot: usize,
        res: i32,
        more: bool,
    ) {
        let mut peer = None;
        if self.accept_slots.in_use() {
            self.accept_slots.armed[slot] = false;
            self.accept_armed = self.accept_slots.armed.iter().any(|&a| a);
            if res >= 0 {
                // SAFETY: the accept of this slot has completed: the kernel no longer writes it.
                peer = unsafe { *self.accept_slots.addrs[slot].get() }.to_std();
            }
        } else if !more {
            self.accept_armed = false;
        }
        if res >= 0 {
            self.new_inbound(handler, res, peer);
        } else {
            self.counters.accept_errors += 1;
        }
        if !more && !self.stopping {
            let scarce = matches!(
                -res,
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
            );
            if res < 0 && scarce {
                self.accept_retry_at = Some(self.now + ACCEPT_RETRY);
            } else {
                self.arm_accept();
            }
        }
    }

    /// A new inbound socket `fd`, from `peer` when the accept gave the address.
    fn new_inbound<H: Handler>(&mut self, handler: &mut H, fd: RawFd, peer: Option<SocketAddr>) {
        if self.stopping || self.slots_used >= self.slab_capacity {
            if !self.stopping {
                self.counters.rejected_cap += 1;
            }
            self.close_fd(fd);
            return;
        }
        let peer = match peer.map_or_else(|| sys::peer_addr(fd), Ok) {
            Ok(p) => p,
            Err(_) => {
                // Reset before we looked at it: nothing to report.
                self.counters.accept_errors += 1;
                sys::close(fd);
                return;
            }
        };
        let full = self.inbound_open >= self.max_connections;
        match handler.screen_inbound(self, peer, full) {
            Screen::Refuse => {
                self.counters.refused += 1;
                self.close_fd(fd);
                return;
            }
            Screen::Accept if full => {
                self.counters.rejected_cap += 1;
                self.close_fd(fd);
                return;
            }
            Screen::Accept => {}
            Screen::Evict(victim) => {
                if !self.evict(victim) && full {
                    self.counters.rejected_cap += 1;
                    self.close_fd(fd);
                    return;
                }
            }
        }
        if self.slots_used >= self.slab_capacity || self.inbound_open >= self.max_connections {
            // The eviction did not make room (the handler closed something else meanwhile).
            self.counters.rejected_cap += 1;
            self.close_fd(fd);
            return;
        }
        let idx = self.alloc(fd, State::Open, peer);
        self.inbound_open += 1;
        self.counters.accepted += 1;
        let c = &mut self.slab.0[idx];
        c.reported = true;
        let conn = c.id(idx as u32);
        let keep = handler.on_accept(self, conn, peer);
        if self.open_idx(conn).is_none() {
            return; // the handler closed it during the callback
        }
        if keep {
            self.arm_recv(idx);
        } else {
            self.counters.refused += 1;
            self.slab.0[idx].reported = false;
            self.begin_close(idx, CloseReason::Local);
        }
    }
}
