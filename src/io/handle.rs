//! Starting shards and talking to them from other threads.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use crossbeam::queue::ArrayQueue;

use super::config::ShardConfig;
use super::counters::{Counters, SharedCounters};
use super::shard::{Handler, Parts, Shard};
use super::{Full, IoError, sys};

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
    index: usize,
    local_addr: Option<SocketAddr>,
    thread: Mutex<Option<JoinHandle<Result<(), IoError>>>>,
}

impl<C> Shared<C> {
    fn signal(&self) {
        if let Ok(w) = self.wake.read()
            && let Some(fd) = w.as_ref()
        {
            sys::eventfd_signal(fd.as_raw_fd());
        }
    }
}

/// Runs when a shard thread ends.
struct ExitGuard<C>(Arc<Shared<C>>);

impl<C> Drop for ExitGuard<C> {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
        if let Ok(mut w) = self.0.wake.write() {
            *w = None;
        }
    }
}

/// What a handler factory learns about the shard it builds a handler for.
#[derive(Debug, Clone, Copy)]
pub struct ShardInfo {
    /// The shard's index.
    pub index: usize,
    /// The address its listener is bound to, if it listens.
    pub local_addr: Option<SocketAddr>,
}

/// A cloneable, thread-safe handle to a running shard: send it commands, stop it, join it,
/// read its published counters.
pub struct ShardHandle<C> {
    shared: Arc<Shared<C>>,
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

    /// The shard's index.
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
}

/// Starts shard `index`: binds its listener (if `config.listen`), spawns its thread (pinned if
/// `config.cores` is set), creates its ring there and builds its handler with `factory`.
/// Returns once the shard runs, or with the error that kept it from starting (for example
/// `IoError::Unsupported` naming a missing io_uring feature).
pub fn spawn<H, F>(
    config: &ShardConfig,
    index: usize,
    factory: F,
) -> Result<ShardHandle<H::Command>, IoError>
where
    H: Handler,
    F: FnOnce(&ShardInfo) -> H + Send + 'static,
{
    config.validate()?;
    let (listener, local_addr) = match config.listen {
        Some(addr) => {
            let (fd, local) = sys::listen(addr, config.backlog)?;
            (Some(fd), Some(local))
        }
        None => (None, None),
    };
    let wake = sys::eventfd()?;
    let wake_fd = wake.as_raw_fd();
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(config.command_queue),
        sleeping: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        publish_requested: AtomicBool::new(false),
        wake: RwLock::new(Some(wake)),
        counters: SharedCounters::default(),
        index,
        local_addr,
        thread: Mutex::new(None),
    });
    let core = (!config.cores.is_empty()).then(|| config.cores[index % config.cores.len()]);
    let cfg = config.clone();
    let thread_shared = Arc::clone(&shared);
    let (ready_tx, ready_rx) = crossbeam::channel::bounded::<Result<(), IoError>>(1);
    let thread = std::thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || {
            // Marks the shard stopped and closes its eventfd however the thread ends (even by
            // a handler panic), after the shard itself is dropped.
            let _exit = ExitGuard(Arc::clone(&thread_shared));
            let started = core.map_or(Ok(()), sys::pin_to_core).and_then(|()| {
                let listener_fd = listener.as_ref().map_or(-1, |l| l.as_raw_fd());
                Parts::new(&cfg, index, listener_fd, wake_fd)
            });
            let parts = match started {
                Ok(p) => p,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let handler = factory(&ShardInfo { index, local_addr });
            let shard = Shard::new(parts, handler, &cfg, thread_shared, listener);
            let _ = ready_tx.send(Ok(()));
            shard.run()
        })
        .map_err(|source| IoError::Setup {
            what: "spawn shard thread",
            source,
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => {
            if let Ok(mut t) = shared.thread.lock() {
                *t = Some(thread);
            }
            Ok(ShardHandle { shared })
        }
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(IoError::Panicked)
        }
    }
}

/// Starts `count` shards that share one listening address through SO_REUSEPORT (when
/// `config.listen` asks for port 0, every shard binds the port the first one got). On error
/// the shards already started are stopped and joined.
pub fn spawn_shards<H, F>(
    config: &ShardConfig,
    count: usize,
    factory: F,
) -> Result<Vec<ShardHandle<H::Command>>, IoError>
where
    H: Handler,
    F: Fn(&ShardInfo) -> H + Send + Sync + 'static,
{
    let factory = Arc::new(factory);
    let mut cfg = config.clone();
    let mut handles: Vec<ShardHandle<H::Command>> = Vec::with_capacity(count);
    for i in 0..count {
        let f = Arc::clone(&factory);
        match spawn(&cfg, i, move |info: &ShardInfo| f(info)) {
            Ok(h) => {
                if i == 0 {
                    cfg.listen = h.local_addr();
                }
                handles.push(h);
            }
            Err(e) => {
                for h in &handles {
                    h.stop();
                }
                for h in &handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    Ok(handles)
}
