//! The shard: one thread, one ring, its listener and connections, driving a [`Handler`].
//! [`Io`] is the handler's view of the shard: send, close, dial, deadlines, counters.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use super::bufring::BufRing;
use super::config::{SendOverflow, ShardConfig};
use super::conn::{CloseReason, Conn, ConnId, OutBuf, State};
use super::counters::Counters;
use super::deadline::{self, Deadlines, SlotLookup};
use super::ring::{self, Op};
use super::shared::Shared;
use super::{IoError, sys};

/// How long a stopping shard waits for its in-flight operations before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Delay before re-arming an accept that failed for lack of resources (EMFILE and friends).
const ACCEPT_RETRY: Duration = Duration::from_millis(20);

/// The application logic a shard drives. Every callback runs on the shard thread and gets the
/// shard's [`Io`]. Callbacks must not block: the ring waits while they run.
///
/// Guarantees: every connection the handler learned of (`on_accept` returned `true`, or
/// `on_connected`) gets exactly one `on_closed`; every `Io::dial` that returned `Ok` gets
/// exactly one of `on_connected` / `on_connect_failed`.
pub trait Handler: 'static {
    /// Commands other threads send through [`ShardHandle::send_command`](super::ShardHandle).
    type Command: Send + 'static;

    /// An accepted connection from `peer`, before it gets a slot and before anything is read
    /// from it: the place for admission rules (limits per address, exclusion) that must cost a
    /// stranger nothing. `full` is true when the shard holds `max_connections` inbound
    /// connections: then [`Screen::Accept`] is refused (counted `rejected_cap`) unless the
    /// handler names an open inbound connection to evict ([`Screen::Evict`]; it is closed
    /// with [`CloseReason::Evicted`], `on_closed` follows). [`Screen::Refuse`] closes the
    /// socket at once (counted `refused`). The default accepts.
    fn screen_inbound(&mut self, io: &mut Io, peer: SocketAddr, full: bool) -> Screen {
        let _ = (io, peer, full);
        Screen::Accept
    }

    /// A connection was accepted from `peer` (on a dual-stack `[::]` listener IPv4 peers
    /// appear as IPv4-mapped IPv6 addresses). Return `false` to close it at once (no
    /// `on_closed` follows). Receiving starts after this returns `true`.
    fn on_accept(&mut self, io: &mut Io, conn: ConnId, peer: SocketAddr) -> bool {
        let _ = (io, conn, peer);
        true
    }

    /// An outbound connection made with `Io::dial` (`token` as given) is established.
    fn on_connected(&mut self, io: &mut Io, conn: ConnId, peer: SocketAddr, token: u64) {
        let _ = (io, conn, peer, token);
    }

    /// An outbound connection failed (refused, unreachable, timed out: `TimedOut`, or
    /// cancelled by `Io::close` / shutdown: `ECANCELED`). `conn` is already invalid.
    fn on_connect_failed(&mut self, io: &mut Io, conn: ConnId, token: u64, err: std::io::Error) {
        let _ = (io, conn, token, err);
    }

    /// Bytes arrived on `conn`. `data` is a receive buffer that goes back to the kernel when
    /// this returns: keep what you need by copying it.
    fn on_data(&mut self, io: &mut Io, conn: ConnId, data: &[u8]);

    /// `conn` is closed for the handler; its id is invalid from now on.
    fn on_closed(&mut self, io: &mut Io, conn: ConnId, reason: CloseReason) {
        let _ = (io, conn, reason);
    }

    /// A command from another thread.
    fn on_command(&mut self, io: &mut Io, cmd: Self::Command) {
        let _ = (io, cmd);
    }

    /// Called once per loop turn while [`Handler::next_wakeup`] is due (so it must move
    /// `next_wakeup` forward, or the ring never sleeps).
    fn on_timer(&mut self, io: &mut Io, now: Instant) {
        let _ = (io, now);
    }

    /// Called once per loop turn just before the ring may block: flush batched work here.
    fn before_sleep(&mut self, io: &mut Io) {
        let _ = io;
    }

    /// When the handler next wants `on_timer` (the ring wakes up for it).
    fn next_wakeup(&self) -> Option<Instant> {
        None
    }
}

/// The handler's verdict on an accepted connection ([`Handler::screen_inbound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Give it a slot (refused anyway when the shard is full).
    Accept,
    /// Close it at once.
    Refuse,
    /// Close this open inbound connection, then give the new one its slot.
    Evict(ConnId),
}

/// Reusable send buffers.
struct Pool {
    bufs: Vec<Vec<u8>>,
    max: usize,
    capacity: usize,
}

impl Pool {
    fn get(&mut self) -> Vec<u8> {
        self.bufs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    fn put(&mut self, mut v: Vec<u8>) {
        let cap = v.capacity();
        if self.bufs.len() < self.max && cap >= self.capacity && cap <= 4 * self.capacity {
            v.clear();
            self.bufs.push(v);
        }
    }
}

/// The connection slab; it never reallocates (capacity reserved up front), so pointers into a
/// slot handed to the kernel stay valid.
struct Slab(Vec<Conn>);

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
    ring: IoUring,
    slab: Slab,
    free: Vec<u32>,
    slots_used: usize,
    /// Slots in the slab: both caps plus room for connections still closing.
    slab_capacity: usize,
    max_connections: usize,
    max_outbound: usize,
    /// Open inbound connections (against `max_connections`).
    inbound_open: usize,
    /// Connecting or open outbound connections (against `max_outbound`).
    outbound_used: usize,
    pool: Pool,
    flush: Vec<u32>,
    events: VecDeque<(ConnId, CloseReason)>,
    deadlines: Deadlines,
    counters: Counters,
    now: Instant,
    shard: usize,
    bgid: u16,
    send_queue_messages: usize,
    send_queue_bytes: usize,
    send_overflow: SendOverflow,
    connect_timeout: Duration,
    delayed_connect_ack: bool,
    /// Submitted operations whose last completion has not arrived yet.
    ops_in_flight: usize,
    stop_requested: bool,
    stopping: bool,
    fatal: Option<std::io::Error>,
    listener: RawFd,
    accept_armed: bool,
    accept_retry_at: Option<Instant>,
    wake_fd: RawFd,
    wake_armed: bool,
    /// Target of the eventfd read; written by the kernel, never read.
    wake_buf: Box<UnsafeCell<u64>>,
}

impl Io {
    fn new(
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

    /// This shard's index.
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

    /// An empty pooled buffer to encode a message into and pass to [`Io::send_owned`]
    /// (no allocation in steady state).
    pub fn buffer(&mut self) -> Vec<u8> {
        self.pool.get()
    }

    /// Queues a copy of `data` on `conn`. Small messages are packed together so one send
    /// carries many. Errors: `NotOpen`; `SendQueueFull` when the queue is at its cap (the
    /// message is dropped and counted, and with `SendOverflow::Close` the connection closes).
    pub fn send(&mut self, conn: ConnId, data: &[u8]) -> Result<(), IoError> {
        let idx = self.open_idx(conn).ok_or(IoError::NotOpen)?;
        if data.is_empty() {
            return Ok(());
        }
        self.admit(idx, data.len())?;
        let coalesce = self.pool.capacity;
        let c = &mut self.slab.0[idx];
        if let Some(back) = appendable_tail(c, data.len(), coalesce) {
            back.data.extend_from_slice(data);
            back.msgs += 1;
        } else {
            let mut buf = self.pool.get();
            buf.extend_from_slice(data);
            c.sendq.push_back(OutBuf { data: buf, msgs: 1 });
        }
        self.queued(idx, data.len());
        Ok(())
    }

    /// Queues `data` on `conn`, taking ownership (a small message may be copied into the tail
    /// buffer and `data` recycled). Errors as for [`Io::send`].
    pub fn send_owned(&mut self, conn: ConnId, data: Vec<u8>) -> Result<(), IoError> {
        let Some(idx) = self.open_idx(conn) else {
            self.pool.put(data);
            return Err(IoError::NotOpen);
        };
        if data.is_empty() {
            self.pool.put(data);
            return Ok(());
        }
        if let Err(e) = self.admit(idx, data.len()) {
            self.pool.put(data);
            return Err(e);
        }
        let len = data.len();
        let coalesce = self.pool.capacity;
        let c = &mut self.slab.0[idx];
        if let Some(back) = appendable_tail(c, len, coalesce) {
            back.data.extend_from_slice(&data);
            back.msgs += 1;
            self.pool.put(data);
        } else {
            c.sendq.push_back(OutBuf { data, msgs: 1 });
        }
        self.queued(idx, len);
        Ok(())
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

    fn open_idx(&self, conn: ConnId) -> Option<usize> {
        let c = self.slab.0.get(conn.index())?;
        (c.generation == conn.generation() && c.state == State::Open).then_some(conn.index())
    }

    /// Takes a free slot (the caller checked `slots_used < slab_capacity`).
    fn alloc(&mut self, fd: RawFd, state: State, peer: SocketAddr) -> usize {
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

    /// Cap check before queueing `len` bytes on slot `idx`.
    fn admit(&mut self, idx: usize, len: usize) -> Result<(), IoError> {
        let c = &self.slab.0[idx];
        if c.queued_msgs < self.send_queue_messages && c.queued_bytes + len <= self.send_queue_bytes
        {
            return Ok(());
        }
        self.counters.send_queue_drops += 1;
        if self.send_overflow == SendOverflow::Close {
            self.begin_close(idx, CloseReason::SendQueueFull);
        }
        Err(IoError::SendQueueFull)
    }

    /// Accounts a queued message and schedules a send at the end of the turn.
    fn queued(&mut self, idx: usize, len: usize) {
        let c = &mut self.slab.0[idx];
        c.queued_msgs += 1;
        c.queued_bytes += len;
        self.counters.send_messages += 1;
        if !c.send_armed && !c.dirty {
            c.dirty = true;
            self.flush.push(idx as u32);
        }
    }

    /// Closes slot `idx`: Open → Closing (queues `on_closed` if owed), Connecting → cancel.
    fn begin_close(&mut self, idx: usize, reason: CloseReason) {
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
    fn evict(&mut self, conn: ConnId) -> bool {
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
    fn close_fd(&mut self, fd: RawFd) {
        let close = opcode::Close::new(Fd(fd))
            .build()
            .user_data(ring::encode(Op::Close, 0, 0));
        // SAFETY: a close carries no pointers.
        unsafe { self.push(close) };
    }

    /// Frees a closing slot once no operation of it is in flight, closing its fd in the ring.
    fn maybe_release(&mut self, idx: usize) {
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

    /// Issues the sends scheduled during this turn (one per connection, from its queue head).
    fn flush_sends(&mut self) {
        let mut flush = std::mem::take(&mut self.flush);
        for &idx in &flush {
            let idx = idx as usize;
            let c = &mut self.slab.0[idx];
            c.dirty = false;
            if c.state != State::Open || c.send_armed {
                continue;
            }
            let Some(front) = c.sendq.front() else {
                continue;
            };
            let rest = &front.data[c.sent..];
            let len = rest.len().min(1 << 30) as u32;
            let send = opcode::Send::new(Fd(c.fd), rest.as_ptr(), len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(ring::encode(Op::Send, idx as u32, c.generation));
            c.send_armed = true;
            // SAFETY: the buffer is the queue head's heap data, which is neither mutated nor
            // freed while `send_armed` is set (appends go to a later buffer; close keeps it).
            unsafe { self.push(send) };
        }
        flush.clear();
        self.flush = flush;
    }

    // ---- submission --------------------------------------------------------------------

    /// Pushes one SQE, submitting first if the queue is full.
    ///
    /// # Safety
    /// Every pointer in `e` must stay valid until its completion arrives.
    unsafe fn push(&mut self, e: squeue::Entry) {
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
    unsafe fn push_linked(&mut self, a: squeue::Entry, b: squeue::Entry) {
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

    fn cancel(&mut self, target: u64) {
        let e = opcode::AsyncCancel::new(target)
            .build()
            .user_data(ring::encode(Op::Cancel, 0, 0));
        // SAFETY: a cancel carries no pointers.
        unsafe { self.push(e) };
    }

    fn arm_accept(&mut self) {
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

    fn arm_wake(&mut self) {
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

    fn arm_recv(&mut self, idx: usize) {
        let c = &mut self.slab.0[idx];
        debug_assert!(!c.recv_armed);
        c.recv_armed = true;
        let e = opcode::RecvMulti::new(Fd(c.fd), self.bgid)
            .build()
            .user_data(ring::encode(Op::Recv, idx as u32, c.generation));
        // SAFETY: the buffers come from the registered buffer ring, which outlives the ring.
        unsafe { self.push(e) };
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

fn c_id(c: &Conn, idx: usize) -> ConnId {
    c.id(idx as u32)
}

/// The queue's tail buffer if `len` more bytes can be appended without reallocating and
/// without touching a buffer the kernel is sending from.
fn appendable_tail(c: &mut Conn, len: usize, coalesce: usize) -> Option<&mut OutBuf> {
    let in_flight_only = c.send_armed && c.sendq.len() == 1;
    let back = c.sendq.back_mut()?;
    (!in_flight_only && back.data.len() + len <= coalesce && back.data.capacity() >= coalesce)
        .then_some(back)
}

/// One shard: the loop state around [`Io`] and the handler. Field order matters for unwinding:
/// the ring (in `io`) is dropped before the receive buffers it points into.
pub(crate) struct Shard<H: Handler> {
    handler: H,
    io: Io,
    bufring: BufRing,
    cqes: Vec<cqueue::Entry>,
    shared: Arc<Shared<H::Command>>,
    commands_per_turn: usize,
    counters_interval: Duration,
    next_publish: Instant,
    published_turn: u64,
    _listener: Option<OwnedFd>,
}

/// The parts of a shard built on its thread before the handler exists.
pub(crate) struct Parts {
    io: Io,
    bufring: BufRing,
    cq_capacity: usize,
}

impl Parts {
    /// Creates the ring and buffer ring on the calling (shard) thread.
    pub(crate) fn new(
        cfg: &ShardConfig,
        shard: usize,
        listener: RawFd,
        wake_fd: RawFd,
    ) -> Result<Self, IoError> {
        let ring = ring::new_ring(cfg.ring_entries)?;
        let bufring = BufRing::new(&ring, 0, cfg.recv_buffers, cfg.recv_buffer_size)?;
        let cq_capacity = ring.params().cq_entries() as usize;
        let io = Io::new(ring, cfg, shard, bufring.bgid(), listener, wake_fd);
        Ok(Parts {
            io,
            bufring,
            cq_capacity,
        })
    }
}

impl<H: Handler> Shard<H> {
    pub(crate) fn new(
        parts: Parts,
        handler: H,
        cfg: &ShardConfig,
        shared: Arc<Shared<H::Command>>,
        listener: Option<OwnedFd>,
    ) -> Self {
        debug_assert_eq!(
            parts.io.listener,
            listener.as_ref().map_or(-1, |l| l.as_raw_fd())
        );
        Shard {
            handler,
            io: parts.io,
            bufring: parts.bufring,
            cqes: Vec::with_capacity(parts.cq_capacity),
            shared,
            commands_per_turn: cfg.commands_per_turn,
            counters_interval: cfg.counters_interval,
            next_publish: Instant::now(),
            published_turn: u64::MAX,
            _listener: listener,
        }
    }

    /// Runs the loop until a stop request, then closes everything and returns.
    pub(crate) fn run(mut self) -> Result<(), IoError> {
        self.io.arm_accept();
        self.io.arm_wake();
        let mut result = Ok(());
        loop {
            self.io.now = Instant::now();
            // Progress for watchdogs (and where an injected test fault strikes).
            self.shared.heartbeat.beat(self.io.now);
            self.reap();
            self.commands();
            self.expire_deadlines();
            if self.handler.next_wakeup().is_some_and(|t| t <= self.io.now) {
                let now = self.io.now;
                self.handler.on_timer(&mut self.io, now);
                self.deliver();
            }
            if self.io.accept_retry_at.is_some_and(|t| t <= self.io.now) {
                self.io.accept_retry_at = None;
                self.io.arm_accept();
            }
            if let Some(e) = self.io.fatal.take() {
                result = Err(IoError::Submit(e));
                break;
            }
            if self.io.stop_requested || self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            self.handler.before_sleep(&mut self.io);
            self.deliver();
            self.io.flush_sends();
            self.io.counters.loop_turns += 1;
            self.maybe_publish();
            if let Err(e) = self.wait() {
                result = Err(e);
                break;
            }
        }
        self.shutdown();
        result
    }

    /// One submit, blocking until a completion, the nearest deadline, or a wake.
    fn wait(&mut self) -> Result<(), IoError> {
        let now = Instant::now();
        let mut until: Option<Instant> = self.io.deadlines.next();
        for t in [self.handler.next_wakeup(), self.io.accept_retry_at] {
            until = match (until, t) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        // Publish before a long sleep so readers see this turn's counts.
        let long = until.is_none_or(|t| t.saturating_duration_since(now) > self.counters_interval);
        if long && self.published_turn != self.io.counters.loop_turns {
            self.publish();
        }
        self.shared.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let busy = !self.shared.queue.is_empty() || self.shared.stop.load(Ordering::Acquire);
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            // Waiting for work is not a stall.
            self.shared.heartbeat.idle(now);
            until.map(|t| t.saturating_duration_since(now))
        };
        let submitter = self.io.ring.submitter();
        let r = match timeout {
            None => submitter.submit_and_wait(1),
            Some(d) => {
                let ts = Timespec::from(d);
                submitter.submit_with_args(1, &SubmitArgs::new().timespec(&ts))
            }
        };
        self.shared.sleeping.store(false, Ordering::Relaxed);
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(IoError::Submit(e)),
        }
    }

    fn maybe_publish(&mut self) {
        let requested = self.shared.publish_requested.load(Ordering::Relaxed)
            && self.shared.publish_requested.swap(false, Ordering::AcqRel);
        if requested || self.io.now >= self.next_publish {
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.shared.counters.publish(&self.io.counters);
        self.published_turn = self.io.counters.loop_turns;
        self.next_publish = self.io.now + self.counters_interval;
    }

    /// Processes every completion available.
    fn reap(&mut self) {
        self.cqes.clear();
        self.cqes.extend(self.io.ring.completion());
        for i in 0..self.cqes.len() {
            let cqe = self.cqes[i].clone();
            self.complete(&cqe);
        }
    }

    fn commands(&mut self) {
        for _ in 0..self.commands_per_turn {
            let Some(cmd) = self.shared.queue.pop() else {
                break;
            };
            self.io.counters.commands += 1;
            self.handler.on_command(&mut self.io, cmd);
            self.deliver();
        }
    }

    fn expire_deadlines(&mut self) {
        while let Some(idx) = self
            .io
            .deadlines
            .pop_expired(self.io.now, &mut self.io.slab)
        {
            self.io.begin_close(idx as usize, CloseReason::Deadline);
        }
        self.deliver();
    }

    /// Delivers queued `on_closed` events (which may queue more).
    fn deliver(&mut self) {
        while let Some((conn, reason)) = self.io.events.pop_front() {
            self.handler.on_closed(&mut self.io, conn, reason);
        }
    }

    fn complete(&mut self, cqe: &cqueue::Entry) {
        let (res, flags) = (cqe.result(), cqe.flags());
        let more = cqueue::more(flags);
        if !more {
            self.io.ops_in_flight -= 1;
        }
        let Some((op, idx, _generation)) = ring::decode(cqe.user_data()) else {
            debug_assert!(false, "unknown user_data {:#x}", cqe.user_data());
            return;
        };
        let idx = idx as usize;
        match op {
            Op::Accept => self.accepted(res, more),
            Op::Wake => {
                self.io.wake_armed = false;
                self.io.arm_wake();
            }
            Op::Recv => self.received(idx, res, flags, more),
            Op::Send => self.sent(idx, res),
            Op::Connect => self.connected(idx, res),
            Op::LinkTimeout => {
                self.io.slab.0[idx].timeout_armed = false;
                self.io.maybe_release(idx);
            }
            Op::Cancel | Op::Close => {}
        }
        self.deliver();
    }

    fn accepted(&mut self, res: i32, more: bool) {
        if !more {
            self.io.accept_armed = false;
        }
        if res >= 0 {
            self.new_inbound(res);
        } else {
            self.io.counters.accept_errors += 1;
        }
        if !more && !self.io.stopping {
            let scarce = matches!(
                -res,
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
            );
            if res < 0 && scarce {
                self.io.accept_retry_at = Some(self.io.now + ACCEPT_RETRY);
            } else {
                self.io.arm_accept();
            }
        }
    }

    fn new_inbound(&mut self, fd: RawFd) {
        let io = &mut self.io;
        if io.stopping || io.slots_used >= io.slab_capacity {
            if !io.stopping {
                io.counters.rejected_cap += 1;
            }
            io.close_fd(fd);
            return;
        }
        let peer = match sys::peer_addr(fd) {
            Ok(p) => p,
            Err(_) => {
                // Reset before we looked at it: nothing to report.
                io.counters.accept_errors += 1;
                sys::close(fd);
                return;
            }
        };
        let full = io.inbound_open >= io.max_connections;
        match self.handler.screen_inbound(&mut self.io, peer, full) {
            Screen::Refuse => {
                self.io.counters.refused += 1;
                self.io.close_fd(fd);
                return;
            }
            Screen::Accept if full => {
                self.io.counters.rejected_cap += 1;
                self.io.close_fd(fd);
                return;
            }
            Screen::Accept => {}
            Screen::Evict(victim) => {
                if !self.io.evict(victim) && full {
                    self.io.counters.rejected_cap += 1;
                    self.io.close_fd(fd);
                    return;
                }
            }
        }
        let io = &mut self.io;
        if io.slots_used >= io.slab_capacity || io.inbound_open >= io.max_connections {
            // The eviction did not make room (the handler closed something else meanwhile).
            io.counters.rejected_cap += 1;
            io.close_fd(fd);
            return;
        }
        let idx = io.alloc(fd, State::Open, peer);
        io.inbound_open += 1;
        io.counters.accepted += 1;
        let c = &mut io.slab.0[idx];
        c.reported = true;
        let conn = c.id(idx as u32);
        let keep = self.handler.on_accept(&mut self.io, conn, peer);
        if self.io.open_idx(conn).is_none() {
            return; // the handler closed it during the callback
        }
        if keep {
            self.io.arm_recv(idx);
        } else {
            self.io.counters.refused += 1;
            self.io.slab.0[idx].reported = false;
            self.io.begin_close(idx, CloseReason::Local);
        }
    }

    fn received(&mut self, idx: usize, res: i32, flags: u32, more: bool) {
        let c = &mut self.io.slab.0[idx];
        if !more {
            c.recv_armed = false;
        }
        let generation = c.generation;
        let open = c.state == State::Open;
        let bid = cqueue::buffer_select(flags);
        if res > 0 {
            self.io.counters.recv_completions += 1;
            self.io.counters.recv_bytes += res as u64;
            if let Some(bid) = bid {
                if open {
                    let conn = self.io.slab.0[idx].id(idx as u32);
                    let data = self.bufring.data(bid, res as usize);
                    self.handler.on_data(&mut self.io, conn, data);
                }
                self.bufring.recycle(bid);
            }
        } else {
            if let Some(bid) = bid {
                self.bufring.recycle(bid);
            }
            match -res {
                0 => self.io.begin_close(idx, CloseReason::PeerClosed),
                libc::ENOBUFS => self.io.counters.buf_ring_exhausted += 1,
                libc::ECANCELED if !open => {}
                e => self.io.begin_close(idx, CloseReason::RecvError(e)),
            }
        }
        // The handler may have closed the connection (and a dial may even have reused the
        // slot): re-arm only the same, still open connection.
        let c = &self.io.slab.0[idx];
        if !more && c.generation == generation {
            if c.state == State::Open {
                self.io.counters.recv_rearms += 1;
                self.io.arm_recv(idx);
            } else {
                self.io.maybe_release(idx);
            }
        }
    }

    fn sent(&mut self, idx: usize, res: i32) {
        let io = &mut self.io;
        let c = &mut io.slab.0[idx];
        c.send_armed = false;
        if c.state != State::Open {
            if let Some(b) = c.sendq.pop_front() {
                io.pool.put(b.data);
            }
            io.maybe_release(idx);
            return;
        }
        if res < 0 {
            io.begin_close(idx, CloseReason::SendError(-res));
            return;
        }
        let n = res as usize;
        io.counters.sends += 1;
        io.counters.send_bytes += n as u64;
        c.queued_bytes -= n;
        c.sent += n;
        let front_len = c.sendq.front().map_or(0, |b| b.data.len());
        if c.sent >= front_len {
            c.sent = 0;
            if let Some(b) = c.sendq.pop_front() {
                c.queued_msgs -= b.msgs as usize;
                io.pool.put(b.data);
            }
        } else {
            io.counters.partial_sends += 1;
        }
        let c = &mut io.slab.0[idx];
        if !c.sendq.is_empty() && !c.dirty {
            c.dirty = true;
            io.flush.push(idx as u32);
        }
    }

    fn connected(&mut self, idx: usize, res: i32) {
        let io = &mut self.io;
        let c = &mut io.slab.0[idx];
        c.connect_armed = false;
        let (conn, token, peer) = (c.id(idx as u32), c.token, c.peer);
        if res == 0 && !c.connect_abort && !io.stopping {
            c.state = State::Open;
            c.reported = true;
            io.counters.live_connections += 1;
            io.counters.connects_ok += 1;
            self.handler.on_connected(&mut self.io, conn, peer, token);
            if self.io.open_idx(conn).is_some() {
                self.io.arm_recv(idx);
            }
            return;
        }
        let errno = match -res {
            _ if c.connect_abort || io.stopping => libc::ECANCELED,
            libc::ECANCELED => libc::ETIMEDOUT, // our linked timeout fired
            e => e,
        };
        c.state = State::Closing;
        io.outbound_used -= 1;
        io.counters.connects_failed += 1;
        io.maybe_release(idx);
        self.handler.on_connect_failed(
            &mut self.io,
            conn,
            token,
            std::io::Error::from_raw_os_error(errno),
        );
    }

    /// Closes every connection, cancels the accept and the wake read, and waits (bounded) for
    /// all operations to complete so no buffer is freed under the kernel and no fd leaks.
    fn shutdown(&mut self) {
        self.io.stopping = true;
        self.shared.stopped.store(true, Ordering::Release);
        self.io.now = Instant::now();
        for idx in 0..self.io.slab.0.len() {
            if matches!(self.io.slab.0[idx].state, State::Open | State::Connecting) {
                self.io.begin_close(idx, CloseReason::Shutdown);
            }
        }
        self.deliver();
        self.io.accept_retry_at = None;
        if self.io.accept_armed {
            self.io.cancel(ring::encode(Op::Accept, 0, 0));
        }
        if self.io.wake_armed {
            self.io.cancel(ring::encode(Op::Wake, 0, 0));
        }
        let give_up = Instant::now() + SHUTDOWN_GRACE;
        while self.io.ops_in_flight > 0 && self.io.fatal.is_none() {
            let now = Instant::now();
            if now >= give_up {
                break;
            }
            let ts = Timespec::from((give_up - now).min(Duration::from_millis(50)));
            let r = self
                .io
                .ring
                .submitter()
                .submit_with_args(1, &SubmitArgs::new().timespec(&ts));
            if let Err(e) = r
                && !matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                )
            {
                break;
            }
            self.io.now = Instant::now();
            self.reap();
        }
        // Anything still open (only if the grace period ran out) is closed by `Io::drop`.
        self.publish();
    }
}
