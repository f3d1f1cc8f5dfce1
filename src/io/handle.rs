//! Talking to a running shard from other threads through a [`ShardHandle`]: queue commands
//! (waking the ring only when it sleeps), stop and join it, read its published counters,
//! heartbeat and how it ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use super::counters::Counters;
use super::error::{Full, IoError};
use super::heartbeat::{Fault, Heartbeat};
use super::shared::{ShardExit, Shared};

/// A cloneable, thread-safe handle to a running shard: send it commands, stop it, join it,
/// read its published counters.
pub struct ShardHandle<C> {
    pub(crate) shared: Arc<Shared<C>>,
}

impl<C> Clone for ShardHandle<C> {
    fn clone(&self) -> Self {
        ShardHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: Send> ShardHandle<C> {
    /// Queues a command for the shard's `Handler::on_command` and wakes the shard if it is
    /// sleeping (one eventfd write, only then). Hands the command back if the queue is full
    /// or the shard has stopped.
    pub fn send_command(&self, cmd: C) -> Result<(), Full<C>> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(Full(cmd));
        }
        self.shared.queue.push(cmd).map_err(Full)?;
        // Pairs with the shard's store of `sleeping` + fence before it checks the queue:
        // either it sees the command, or we see it sleeping and wake it.
        fence(Ordering::SeqCst);
        if self.shared.sleeping.swap(false, Ordering::SeqCst) {
            self.shared.signal();
        }
        Ok(())
    }

    /// Asks the shard to stop: it closes every connection (`CloseReason::Shutdown`), waits for
    /// its operations to finish, releases everything and exits. Returns at once; see `join`.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.signal();
    }

    /// Waits for the shard thread to exit and returns how it ended. Later calls (from any
    /// clone) return `Ok(())` at once.
    pub fn join(&self) -> Result<(), IoError> {
        let handle = self.shared.thread.lock().ok().and_then(|mut t| t.take());
        match handle {
            None => Ok(()),
            Some(h) => h.join().unwrap_or(Err(IoError::Panicked)),
        }
    }

    /// The counters as last published by the shard (every `counters_interval`, before it
    /// sleeps, on request, and when it exits).
    pub fn counters(&self) -> Counters {
        self.shared.counters.load()
    }

    /// Asks the shard to publish its counters on its next loop turn, waking it.
    pub fn request_counters(&self) {
        self.shared.publish_requested.store(true, Ordering::Release);
        self.shared.signal();
    }

    /// The index the shard was spawned with (see [`ShardInfo::index`](super::ShardInfo::index)).
    pub fn index(&self) -> usize {
        self.shared.index
    }

    /// The address the shard's listener is bound to (the real port when 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.local_addr
    }

    /// Whether the shard has begun shutting down or has exited.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// How the shard thread ended, or `None` while it runs.
    pub fn exit(&self) -> Option<ShardExit> {
        self.shared.exit.lock().ok().and_then(|e| e.outcome.clone())
    }

    /// Runs `hook` once when the shard thread ends, on that thread, after the shard (its ring,
    /// listener and sockets) is dropped: at once if it has ended already. A later call
    /// replaces an earlier hook that has not run.
    pub fn on_exit(&self, hook: impl FnOnce(&ShardExit) + Send + 'static) {
        let ended = match self.shared.exit.lock() {
            Ok(mut e) => match &e.outcome {
                Some(o) => Some(o.clone()),
                None => {
                    e.hook = Some(Box::new(hook));
                    return;
                }
            },
            Err(_) => return,
        };
        if let Some(o) = ended {
            hook(&o);
        }
    }

    /// The shard's heartbeat: it beats at the start of every loop turn and goes idle before it
    /// blocks for work.
    pub fn heartbeat(&self) -> &Heartbeat {
        &self.shared.heartbeat
    }

    /// Commands queued and not yet taken by the shard.
    pub fn queued_commands(&self) -> usize {
        self.shared.queue.len()
    }

    /// How long the shard has shown no progress at `now`: zero while it waits for work with
    /// no command queued, else the time since its last loop turn began (or since it went idle,
    /// if commands are waiting for it).
    pub fn progress_age(&self, now: Instant) -> Duration {
        let (at, idle) = self.shared.heartbeat.last();
        if idle && self.shared.queue.is_empty() {
            Duration::ZERO
        } else {
            now.saturating_duration_since(at)
        }
    }

    /// Makes the shard thread suffer `fault` at its next loop turn, waking it (tests only).
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.heartbeat.inject(fault);
        self.shared.signal();
    }
}
