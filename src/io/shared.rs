//! The state a shard thread shares with its handles: the command queue and its eventfd wake,
//! the stop flags, the published counters, the heartbeat, and how the thread ended
//! ([`ShardExit`]) with the hook that wants to know.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;

use super::counters::SharedCounters;
use super::error::IoError;
use super::heartbeat::Heartbeat;
use super::sys;

/// State shared between a shard thread and its handles.
pub(crate) struct Shared<C> {
    pub(crate) queue: ArrayQueue<C>,
    /// Set by the shard right before it may block; a producer that swaps it back signals the
    /// eventfd.
    pub(crate) sleeping: AtomicBool,
    pub(crate) stop: AtomicBool,
    /// The shard is shutting down or gone: commands are refused.
    pub(crate) stopped: AtomicBool,
    pub(crate) publish_requested: AtomicBool,
    /// The wake eventfd; the shard closes it (sets `None`) when it exits.
    pub(crate) wake: RwLock<Option<OwnedFd>>,
    pub(crate) counters: SharedCounters,
    /// Written by the shard once per loop turn; read by watchdogs.
    pub(crate) heartbeat: CachePadded<Heartbeat>,
    pub(crate) exit: Mutex<ExitState>,
    pub(crate) index: usize,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) thread: Mutex<Option<JoinHandle<Result<(), IoError>>>>,
}

/// Called once, with how the shard thread ended.
pub(crate) type ExitHook = Box<dyn FnOnce(&ShardExit) + Send>;

/// How the thread ended (once it has) and who wants to know.
#[derive(Default)]
pub(crate) struct ExitState {
    pub(crate) outcome: Option<ShardExit>,
    pub(crate) hook: Option<ExitHook>,
}

impl<C> Shared<C> {
    /// Records how the thread ended and runs the exit hook (on the ending thread, after the
    /// shard and its sockets are dropped).
    pub(crate) fn finish(&self, outcome: ShardExit) {
        self.stopped.store(true, Ordering::Release);
        let hook = match self.exit.lock() {
            Ok(mut e) => {
                e.outcome = Some(outcome.clone());
                e.hook.take()
            }
            Err(_) => None,
        };
        if let Some(h) = hook {
            h(&outcome);
        }
    }

    pub(crate) fn signal(&self) {
        if let Ok(w) = self.wake.read()
            && let Some(fd) = w.as_ref()
        {
            sys::eventfd_signal(fd.as_raw_fd());
        }
    }
}

/// Runs when a shard thread ends.
pub(crate) struct ExitGuard<C>(pub(crate) Arc<Shared<C>>);

impl<C> Drop for ExitGuard<C> {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
        if let Ok(mut w) = self.0.wake.write() {
            *w = None;
        }
    }
}

/// How a shard thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardExit {
    /// It stopped because it was asked to (`ShardHandle::stop` or `Io::stop`).
    Stopped,
    /// The loop failed (the ring could not submit); the message is the error.
    Failed(String),
    /// The handler (or the loop) panicked; the message is the panic's.
    Panicked(String),
}

impl std::fmt::Display for ShardExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardExit::Stopped => f.write_str("stopped"),
            ShardExit::Failed(e) => write!(f, "failed: {e}"),
            ShardExit::Panicked(m) => write!(f, "panicked: {m}"),
        }
    }
}

/// The text of a panic payload (`&str` or `String`; anything else is named as such).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}
