//! Starting shards: [`spawn`] one on its own thread (pinned if asked), with its ring built
//! there and its handler made by a factory, or [`spawn_shards`] a group that shares one
//! listening address. The `_on` variants take listeners bound beforehand ([`Listener`]), so
//! the caller knows the bound address before any shard runs.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;

use super::config::ShardConfig;
use super::counters::SharedCounters;
use super::error::IoError;
use super::event_loop::{Parts, Shard};
use super::handle::ShardHandle;
use super::handler::Handler;
use super::heartbeat::Heartbeat;
use super::listener::Listener;
use super::shared::{ExitGuard, ExitState, ShardExit, Shared, panic_message};
use super::sys;

/// What a handler factory learns about the shard it builds a handler for.
#[derive(Debug, Clone, Copy)]
pub struct ShardInfo {
    /// The `index` given to [`spawn_on`] (0.. in a group): it names the thread (`shard-{index}`)
    /// and picks the core, `cores[index % cores.len()]`.
    pub index: usize,
    /// The address its listener is bound to, if it listens.
    pub local_addr: Option<SocketAddr>,
}

/// Starts shard `index`: binds its listener (if `config.listen`, with [`Listener::bind`]),
/// spawns its thread (pinned if `config.cores` is set), creates its ring there and builds its
/// handler with `factory`. Returns once the shard runs, or with the error that kept it from
/// starting (for example `IoError::Unsupported` naming a missing io_uring feature).
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
    let listener = match config.listen {
        Some(addr) => Some(Listener::bind(addr, config.backlog)?),
        None => None,
    };
    spawn_on(config, index, listener, factory)
}

/// Starts shard `index` as [`spawn`] does, accepting on `listener`, bound beforehand (`None`:
/// the shard only dials out); `config.listen` and `config.backlog` are not used.
pub fn spawn_on<H, F>(
    config: &ShardConfig,
    index: usize,
    listener: Option<Listener>,
    factory: F,
) -> Result<ShardHandle<H::Command>, IoError>
where
    H: Handler,
    F: FnOnce(&ShardInfo) -> H + Send + 'static,
{
    config.validate()?;
    let local_addr = listener.as_ref().map(Listener::local_addr);
    let listener = listener.map(Listener::into_fd);
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

/// Starts `count` shards that share one listening address through SO_REUSEPORT: binds every
/// listener first ([`Listener::bind_group`]: with port 0 in `config.listen`, every shard
/// binds the port the first one got), then starts one shard on each. Without
/// `config.listen` the shards only dial out. On error the shards already started are stopped
/// and joined.
pub fn spawn_shards<H, F>(
    config: &ShardConfig,
    count: usize,
    factory: F,
) -> Result<Vec<ShardHandle<H::Command>>, IoError>
where
    H: Handler,
    F: Fn(&ShardInfo) -> H + Send + Sync + 'static,
{
    config.validate()?;
    let listeners: Vec<Option<Listener>> = match config.listen {
        Some(addr) => Listener::bind_group(addr, config.backlog, count)?
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..count).map(|_| None).collect(),
    };
    start_group(config, listeners, factory)
}

/// Starts one shard on each of `listeners` (bound beforehand, e.g. with
/// [`Listener::bind_group`]), shard `i` on `listeners[i]`; `config.listen` and
/// `config.backlog` are not used. On error the shards already started are stopped and joined
/// and the listeners not yet handed over are closed.
pub fn spawn_shards_on<H, F>(
    config: &ShardConfig,
    listeners: Vec<Listener>,
    factory: F,
) -> Result<Vec<ShardHandle<H::Command>>, IoError>
where
    H: Handler,
    F: Fn(&ShardInfo) -> H + Send + Sync + 'static,
{
    config.validate()?;
    start_group(config, listeners.into_iter().map(Some).collect(), factory)
}

/// Starts shard `i` on `listeners[i]`; stops and joins the started ones on error.
fn start_group<H, F>(
    config: &ShardConfig,
    listeners: Vec<Option<Listener>>,
    factory: F,
) -> Result<Vec<ShardHandle<H::Command>>, IoError>
where
    H: Handler,
    F: Fn(&ShardInfo) -> H + Send + Sync + 'static,
{
    let factory = Arc::new(factory);
    let mut handles: Vec<ShardHandle<H::Command>> = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let f = Arc::clone(&factory);
        match spawn_on(config, i, listener, move |info: &ShardInfo| f(info)) {
            Ok(h) => handles.push(h),
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
