//! [`Io`], the handler's view of its shard, and the connection slots behind it: the slab that
//! never reallocates, the inbound and outbound counts against their caps, and each
//! connection's life from taking a slot to closing (queued `on_closed`, cancelled operations)
//! and release once the kernel holds nothing of it.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::types::Fd;
use io_uring::{IoUring, opcode};

use super::config::{SendOverflow, ShardConfig};
use super::conn::{CloseReason, Conn, ConnId, State};
use super::counters::Counters;
use super::deadline::{self, Deadlines, SlotLookup};
use super::pool::Pool;
use super::ring::{self, Op};
use super::sys;

/// The connection slab; it never reallocates (capacity reserved up front), so pointers into a
/// slot handed to the kernel stay valid.
pub(crate) struct Slab(pub(crate) Vec<Conn>);

impl SlotLookup for Slab {
    fn deadline_slot(&mut self, idx: u32, generation: u32) -> Option<&mut deadline::Slot> {
        self.0
            .get_mut(idx as usize)
            .filter(|c| c.generation == generation && c.state == State::Open)
            .map(|c| &mut c.deadline)
    }
}

/// The handler's access to its shard: send, close, dial, deadlines, counters.
pub struct Io {
    pub(crate) ring: IoUring,
    pub(crate) slab: Slab,
    pub(crate) free: Vec<u32>,
    pub(crate) slots_used: usize,
    /// Slots in the slab: both caps plus room for connections still closing.
    pub(crate) slab_capacity: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_outbound: usize,
    /// Open inbound connections (against `max_connections`).
    pub(crate) inbound_open: usize,
    /// Connecting or open outbound connections (against `max_outbound`).
    pub(crate) outbound_used: usize,
    pub(crate) pool: Pool,
    pub(crate) flush: Vec<u32>,
    pub(crate) events: VecDeque<(ConnId, CloseReason)>,
    pub(crate) deadlines: Deadlines,
    pub(crate) counters: Counters,
    pub(crate) now: Instant,
    pub(crate) shard: usize,
    pub(crate) bgid: u16,
    pub(crate) send_queue_messages: usize,
    pub(crate) send_queue_bytes: usize,
    pub(crate) send_overflow: SendOverflow,
    pub(crate) connect_timeout: Duration,
    pub(crate) delayed_connect_ack: bool,
    pub(crate) abortive_close_after_eof: bool,
    /// Submitted operations whose last completion has not arrived yet.
    pub(crate) ops_in_flight: usize,
    pub(crate) stop_requested: bool,
    pub(crate) stopping: bool,
    pub(crate) fatal: Option<std::io::Error>,
    pub(crate) listener: RawFd,
    pub(crate) accept_armed: bool,
    pub(crate) accept_retry_at: Option<Instant>,
    pub(crate) wake_fd: RawFd,
    pub(crate) wake_armed: bool,
    /// Target of the eventfd read; written by the kernel, never read.
    pub(crate) wake_buf: Box<UnsafeCell<u64>>,
}

impl Io {
    pub(crate) fn new(
        ring: IoUring,
        cfg: &ShardConfig,
        shard: usize,
        bgid: u16,
        listener: RawFd,
        wake_fd: RawFd,
    ) -> Self {
        let caps = cfg.max_connections + cfg.max_outbound;
        let slab_capacity = caps + caps / 8 + 16;
        Io {
            ring,
            slab: Slab(Vec::with_capacity(slab_capacity)),
            free: Vec::with_capacity(slab_capacity),
            slots_used: 0,
            slab_capacity,
            max_connections: cfg.max_connections,
            max_outbound: cfg.max_outbound,
            inbound_open: 0,
            outbound_used: 0,
            pool: Pool {
                bufs: Vec::with_capacity(cfg.send_pool_buffers),
                max: cfg.send_pool_buffers,
                capacity: cfg.send_coalesce_bytes,
            },
            flush: Vec::with_capacity(slab_capacity),
            events: VecDeque::with_capacity(64),
            deadlines: Deadlines::default(),
            counters: Counters::default(),
            now: Instant::now(),
            shard,
            bgid,
            send_queue_messages: cfg.send_queue_messages,
            send_queue_bytes: cfg.send_queue_bytes,
            send_overflow: cfg.send_overflow,
            connect_timeout: cfg.connect_timeout,
            delayed_connect_ack: cfg.delayed_connect_ack,
            abortive_close_after_eof: cfg.abortive_close_after_eof,
            ops_in_flight: 0,
            stop_requested: false,
            stopping: false,
            fatal: None,
            listener,
            accept_armed: false,
            accept_retry_at: None,
            wake_fd,
            wake_armed: false,
            wake_buf: Box::new(UnsafeCell::new(0)),
        }
    }

    // ---- public API ----------------------------------------------------------------------

    /// The time taken at the start of this loop turn.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The index this shard was spawned with (see [`ShardInfo::index`](super::ShardInfo::index)).
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// This shard's counters, as updated so far (not just the last published copy).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Open connections of this shard.
    pub fn live_connections(&self) -> usize {
        self.counters.live_connections as usize
    }

    /// Open inbound connections (the count `max_connections` caps).
    pub fn inbound_connections(&self) -> usize {
        self.inbound_open
    }

    /// Connecting and open outbound connections (the count `max_outbound` caps).
    pub fn outbound_connections(&self) -> usize {
        self.outbound_used
    }

    /// Whether `conn` is open (sends are accepted).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.open_idx(conn).is_some()
    }

    /// The remote address of an open or connecting connection.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        let c = self.slab.0.get(conn.index())?;
        (c.generation == conn.generation() && matches!(c.state, State::Open | State::Connecting))
            .then_some(c.peer)
    }

    /// Messages and unsent bytes queued on an open connection.
    pub fn send_queue(&self, conn: ConnId) -> Option<(usize, usize)> {
        self.open_idx(conn)
            .map(|i| (self.slab.0[i].queued_msgs, self.slab.0[i].queued_bytes))
    }

    /// Closes `conn` (reason `Local`); queued sends are dropped. For an open connection
    /// `on_closed` follows once the current callback returns; for a connecting one,
    /// `on_connect_failed` with `ECANCELED`. Returns `false` if `conn` was already closed.
    pub fn close(&mut self, conn: ConnId) -> bool {
        match self.slab.0.get(conn.index()) {
            Some(c)
                if c.generation == conn.generation()
                    && matches!(c.state, State::Open | State::Connecting) =>
            {
                self.begin_close(conn.index(), CloseReason::Local);
                true
            }
            _ => false,
        }
    }

    /// Sets (or moves) the deadline of an open connection: at `at` it is closed with
    /// [`CloseReason::Deadline`]. Moving it later is O(1). Returns `false` if `conn` is not open.
    pub fn set_deadline(&mut self, conn: ConnId, at: Instant) -> bool {
        let Some(idx) = self.open_idx(conn) else {
            return false;
        };
        let c = &mut self.slab.0[idx];
        self.deadlines
            .set(&mut c.deadline, idx as u32, c.generation, at);
        true
    }

    /// Removes the deadline of an open connection. Returns `false` if `conn` is not open.
    pub fn clear_deadline(&mut self, conn: ConnId) -> bool {
        let Some(idx) = self.open_idx(conn) else {
            return false;
        };
        self.slab.0[idx].deadline.at = None;
        true
    }

    /// Asks the shard to stop at the end of this loop turn (as `ShardHandle::stop` does).
    pub fn stop(&mut self) {
        self.stop_requested = true;
    }

    // ---- connection bookkeeping ----------------------------------------------------------

    pub(crate) fn open_idx(&self, conn: ConnId) -> Option<usize> {
        let c = self.slab.0.get(conn.index())?;
        (c.generation == conn.generation() && c.state == State::Open).then_some(conn.index())
    }

    /// Takes a free slot (the caller checked `slots_used < slab_capacity`).
    pub(crate) fn alloc(&mut self, fd: RawFd, state: State, peer: SocketAddr) -> usize {
        debug_assert!(self.slots_used < self.slab_capacity);
        let idx = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                debug_assert!(
                    self.slab.0.len() < self.slab.0.capacity(),
                    "slab must not reallocate"
                );
                self.slab.0.push(Conn::new());
                self.slab.0.len() - 1
            }
        };
        self.slots_used += 1;
        let c = &mut self.slab.0[idx];
        debug_assert_eq!(c.state, State::Free);
        c.state = state;
        c.fd = fd;
        c.peer = peer;
        if state == State::Open {
            self.counters.live_connections += 1;
        }
        idx
    }

    /// Closes slot `idx`: Open → Closing (queues `on_closed` if owed), Connecting → cancel.
    pub(crate) fn begin_close(&mut self, idx: usize, reason: CloseReason) {
        let c = &mut self.slab.0[idx];
        let generation = c.generation;
        match c.state {
            State::Open => {}
            State::Connecting => {
                if !c.connect_abort {
                    c.connect_abort = true;
                    self.cancel(ring::encode(Op::Connect, idx as u32, generation));
                }
                return;
            }
            State::Closing | State::Free => return,
        }
        c.state = State::Closing;
        self.counters.live_connections -= 1;
        if reason == CloseReason::PeerClosed && self.abortive_close_after_eof && !c.send_armed {
            // The peer is done: our close resets instead of sending a FIN, so neither side
            // keeps the connection (LAST_ACK here, TIME_WAIT there). Nothing of ours is in
            // flight; what is queued is dropped below either way. A failure leaves the close
            // graceful.
            if sys::set_linger_zero(c.fd).is_ok() {
                self.counters.closed_abortive += 1;
            }
        }
        if c.outbound {
            self.outbound_used -= 1;
        } else {
            self.inbound_open -= 1;
        }
        if c.reported {
            c.reported = false;
            self.events
                .push_back((ConnId::new(idx as u32, generation), reason));
            let n = match reason {
                CloseReason::PeerClosed => &mut self.counters.closed_peer,
                CloseReason::RecvError(_) => &mut self.counters.closed_recv_error,
                CloseReason::SendError(_) => &mut self.counters.closed_send_error,
                CloseReason::SendQueueFull => &mut self.counters.closed_send_queue_full,
                CloseReason::Deadline => &mut self.counters.closed_deadline,
                CloseReason::Local => &mut self.counters.closed_local,
                CloseReason::Evicted => &mut self.counters.closed_evicted,
                CloseReason::Shutdown => &mut self.counters.closed_shutdown,
            };
            *n += 1;
        }
        // Drop queued sends, except the buffer the kernel is sending from.
        let keep = usize::from(c.send_armed);
        while c.sendq.len() > keep {
            if let Some(b) = c.sendq.pop_back() {
                self.pool.put(b.data);
            }
        }
        c.queued_msgs = 0;
        c.queued_bytes = 0;
        c.deadline.at = None;
        let (recv, send) = (c.recv_armed, c.send_armed);
        if recv {
            self.cancel(ring::encode(Op::Recv, idx as u32, generation));
        }
        if send {
            self.cancel(ring::encode(Op::Send, idx as u32, generation));
        }
        self.maybe_release(idx);
    }

    /// Closes an open inbound connection to make room for a new one; false if `conn` is not
    /// an open inbound connection.
    pub(crate) fn evict(&mut self, conn: ConnId) -> bool {
        match self.open_idx(conn) {
            Some(idx) if !self.slab.0[idx].outbound => {
                self.counters.evicted += 1;
                self.begin_close(idx, CloseReason::Evicted);
                true
            }
            _ => false,
        }
    }

    /// Closes a socket that never got a slot, in the ring.
    pub(crate) fn close_fd(&mut self, fd: RawFd) {
        let close = opcode::Close::new(Fd(fd))
            .build()
            .user_data(ring::encode(Op::Close, 0, 0));
        // SAFETY: a close carries no pointers.
        unsafe { self.push(close) };
    }

    /// Frees a closing slot once no operation of it is in flight, closing its fd in the ring.
    pub(crate) fn maybe_release(&mut self, idx: usize) {
        let c = &mut self.slab.0[idx];
        if c.state != State::Closing || c.ops_pending() {
            return;
        }
        while let Some(b) = c.sendq.pop_front() {
            self.pool.put(b.data);
        }
        let fd = std::mem::replace(&mut c.fd, -1);
        c.state = State::Free;
        c.generation = c.generation.wrapping_add(1);
        c.reported = false;
        c.outbound = false;
        c.connect_abort = false;
        c.sent = 0;
        c.queued_msgs = 0;
        c.queued_bytes = 0;
        c.deadline = deadline::Slot::default();
        self.slots_used -= 1;
        self.free.push(idx as u32);
        let close = opcode::Close::new(Fd(fd))
            .build()
            .user_data(ring::encode(Op::Close, 0, 0));
        // SAFETY: a close carries no pointers.
        unsafe { self.push(close) };
    }
}

impl Drop for Io {
    /// Closes connection fds still open. After a normal stop there are none (shutdown closes
    /// them in the ring); after a handler panic this is what releases them. The ring itself
    /// is dropped right after, which cancels whatever it still had in flight.
    fn drop(&mut self) {
        for c in &mut self.slab.0 {
            if c.fd >= 0 {
                sys::close(std::mem::replace(&mut c.fd, -1));
            }
        }
    }
}
