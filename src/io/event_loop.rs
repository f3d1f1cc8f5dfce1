//! The shard's event loop: a [`Shard`] owns the ring (inside [`Io`]), the receive buffer
//! ring and the handler. Each turn it beats the heartbeat, reaps every completion and routes
//! it to the accept, receive, send or dial path, takes queued commands, expires deadlines,
//! runs the handler's timer and `before_sleep`, issues the sends, publishes counters, then
//! submits once and sleeps until a completion, the nearest deadline or a wake. On stop it
//! closes everything and waits (bounded) for the kernel to let go.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use io_uring::cqueue;
use io_uring::types::{SubmitArgs, Timespec};

use super::bufring::BufRing;
use super::config::ShardConfig;
use super::conn::{CloseReason, State};
use super::error::IoError;
use super::handler::Handler;
use super::ring::{self, Op};
use super::shared::Shared;
use super::slots::Io;

/// How long a stopping shard waits for its in-flight operations before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

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
            Op::Accept => self.io.accepted(&mut self.handler, res, more),
            Op::Wake => {
                self.io.wake_armed = false;
                self.io.arm_wake();
            }
            Op::Recv => {
                self.io
                    .received(&mut self.handler, &mut self.bufring, idx, res, flags, more)
            }
            Op::Send => self.io.sent(idx, res),
            Op::Connect => self.io.connected(&mut self.handler, idx, res),
            Op::LinkTimeout => {
                self.io.slab.0[idx].timeout_armed = false;
                self.io.maybe_release(idx);
            }
            Op::Cancel | Op::Close => {}
        }
        self.deliver();
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
