//! Starting shards and talking to them from other threads; how they end ([`ShardExit`]) and
//! whether they make progress ([`Heartbeat`]).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;

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
    /// Written by the shard once per loop turn; read by watchdogs.
    pub(crate) heartbeat: CachePadded<Heartbeat>,
    exit: Mutex<ExitState>,
    index: usize,
    local_addr: Option<SocketAddr>,
    thread: Mutex<Option<JoinHandle<Result<(), IoError>>>>,
}

/// Called once, with how the shard thread ended.
type ExitHook = Box<dyn FnOnce(&ShardExit) + Send>;

/// How the thread ended (once it has) and who wants to know.
#[derive(Default)]
struct ExitState {
    outcome: Option<ShardExit>,
    hook: Option<ExitHook>,
}

impl<C> Shared<C> {
    /// Records how the thread ended and runs the exit hook (on the ending thread, after the
    /// shard and its sockets are dropped).
    fn finish(&self, outcome: ShardExit) {
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

/// A fault a test injects into a thread through its [`Heartbeat`]: the thread suffers it at
/// its next beat. Not for production use.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The thread panics (`"injected fault: panic"`).
    Panic,
    /// The thread sleeps this long inside its loop (a stall).
    Stall(Duration),
}

/// Bit 0 of the heartbeat word: the thread is waiting for work rather than working.
const IDLE: u64 = 1;
/// Fault word values: none, panic; `STALL_BASE + ms` is a stall.
const FAULT_NONE: u64 = 0;
const FAULT_PANIC: u64 = 1;
const FAULT_STALL_BASE: u64 = 2;

/// A thread's last sign of progress: one atomic word the thread stores once per loop turn
/// (no lock, no shared write with other threads) and watchdogs read. It holds the
/// milliseconds since the heartbeat was made and whether the thread was then about to wait for
/// work ([`Heartbeat::idle`]) rather than starting a turn ([`Heartbeat::beat`]).
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    word: AtomicU64,
    fault: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

impl Heartbeat {
    /// A heartbeat that last beat now (busy).
    pub fn new() -> Heartbeat {
        Heartbeat {
            origin: Instant::now(),
            word: AtomicU64::new(0),
            fault: AtomicU64::new(FAULT_NONE),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX >> 1)
    }

    /// The thread starts a loop turn at `now`. (One relaxed load and one relaxed store; an
    /// injected fault strikes here.)
    #[inline]
    pub fn beat(&self, now: Instant) {
        if self.fault.load(Ordering::Relaxed) != FAULT_NONE {
            self.suffer_fault();
        }
        self.word.store(self.ms(now) << 1, Ordering::Relaxed);
    }

    /// The thread is about to wait for work at `now` (a blocking wait, not a stall).
    #[inline]
    pub fn idle(&self, now: Instant) {
        self.word
            .store((self.ms(now) << 1) | IDLE, Ordering::Relaxed);
    }

    /// When the thread last beat or went idle, and whether it went idle.
    pub fn last(&self) -> (Instant, bool) {
        let w = self.word.load(Ordering::Relaxed);
        (
            self.origin + Duration::from_millis(w >> 1),
            w & IDLE == IDLE,
        )
    }

    /// The raw word (changes at every beat that falls in a new millisecond, or between busy
    /// and idle): a watchdog compares two readings to tell "no beat since".
    pub fn word(&self) -> u64 {
        self.word.load(Ordering::Relaxed)
    }

    /// Time since the last beat (or idle mark) at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last().0)
    }

    /// Makes the thread suffer `fault` at its next beat (tests only).
    #[doc(hidden)]
    pub fn inject(&self, fault: Fault) {
        let v = match fault {
            Fault::Panic => FAULT_PANIC,
            Fault::Stall(d) => {
                FAULT_STALL_BASE.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }
        };
        self.fault.store(v, Ordering::Relaxed);
    }

    #[cold]
    #[inline(never)]
    fn suffer_fault(&self) {
        match self.fault.swap(FAULT_NONE, Ordering::Relaxed) {
            FAULT_NONE => {}
            FAULT_PANIC => panic!("injected fault: panic"),
            v => std::thread::sleep(Duration::from_millis(v - FAULT_STALL_BASE)),
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
        heartbeat: CachePadded::new(Heartbeat::new()),
        exit: Mutex::new(ExitState::default()),
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
            let shard = Shard::new(parts, handler, &cfg, Arc::clone(&thread_shared), listener);
            let _ = ready_tx.send(Ok(()));
            // A panic in the loop is caught here, after the shard has been dropped (its
            // sockets closed), so the exit hook can run and the handle can say what happened.
            let (result, outcome) = match catch_unwind(AssertUnwindSafe(|| shard.run())) {
                Ok(Ok(())) => (Ok(()), ShardExit::Stopped),
                Ok(Err(e)) => {
                    let text = e.to_string();
                    (Err(e), ShardExit::Failed(text))
                }
                Err(payload) => (
                    Err(IoError::Panicked),
                    ShardExit::Panicked(panic_message(payload.as_ref())),
                ),
            };
            thread_shared.finish(outcome);
            result
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
