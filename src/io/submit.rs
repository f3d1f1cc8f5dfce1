//! Putting operations on the submission queue: one entry or a linked pair (submitting first
//! when the queue is full, a failed submit recorded as fatal), cancels, and the eventfd read
//! through which other threads wake the ring.

use io_uring::opcode;
use io_uring::squeue;
use io_uring::types::Fd;

use super::ring::{self, Op};
use super::slots::Io;

impl Io {
    /// Pushes one SQE, submitting first if the queue is full.
    ///
    /// # Safety
    /// Every pointer in `e` must stay valid until its completion arrives.
    pub(crate) unsafe fn push(&mut self, e: squeue::Entry) {
        self.ops_in_flight += 1;
        loop {
            // SAFETY: forwarded from the caller.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            if !self.make_room() {
                return;
            }
        }
    }

    /// Pushes two linked SQEs contiguously.
    ///
    /// # Safety
    /// As for [`Io::push`].
    pub(crate) unsafe fn push_linked(&mut self, a: squeue::Entry, b: squeue::Entry) {
        self.ops_in_flight += 2;
        loop {
            // SAFETY: forwarded from the caller.
            if unsafe {
                self.ring
                    .submission()
                    .push_multiple(&[a.clone(), b.clone()])
            }
            .is_ok()
            {
                return;
            }
            if !self.make_room() {
                return;
            }
        }
    }

    /// Submits to free SQ space; `false` (and a fatal error recorded) if that fails.
    fn make_room(&mut self) -> bool {
        self.counters.sq_full_submits += 1;
        match self.ring.submit() {
            Ok(_) => true,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                ) =>
            {
                true
            }
            Err(e) => {
                self.fatal = Some(e);
                false
            }
        }
    }

    pub(crate) fn cancel(&mut self, target: u64) {
        let e = opcode::AsyncCancel::new(target)
            .build()
            .user_data(ring::encode(Op::Cancel, 0, 0));
        // SAFETY: a cancel carries no pointers.
        unsafe { self.push(e) };
    }

    pub(crate) fn arm_wake(&mut self) {
        if self.wake_armed || self.stopping {
            return;
        }
        self.wake_armed = true;
        let e = opcode::Read::new(Fd(self.wake_fd), self.wake_buf.get().cast(), 8)
            .build()
            .user_data(ring::encode(Op::Wake, 0, 0));
        // SAFETY: the 8-byte target is a boxed cell owned by `self`, which outlives the ring's
        // operations (shutdown drains them; on unwind the ring is dropped before the box).
        unsafe { self.push(e) };
    }
}
