//! Inbound connections: the multishot accept on the shard's listener (re-armed after it ends,
//! after a pause when descriptors or memory ran out), the handler's screening against the
//! caps (refuse, accept, evict), and the slot and first receive of an accepted connection.

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
        if self.listener < 0 || self.accept_armed || self.stopping {
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

    /// The multishot accept completed with `res` (a new socket, or an error); `more`: it
    /// stays armed.
    pub(crate) fn accepted<H: Handler>(&mut self, handler: &mut H, res: i32, more: bool) {
        if !more {
            self.accept_armed = false;
        }
        if res >= 0 {
            self.new_inbound(handler, res);
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

    fn new_inbound<H: Handler>(&mut self, handler: &mut H, fd: RawFd) {
        if self.stopping || self.slots_used >= self.slab_capacity {
            if !self.stopping {
                self.counters.rejected_cap += 1;
            }
            self.close_fd(fd);
            return;
        }
        let peer = match sys::peer_addr(fd) {
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
