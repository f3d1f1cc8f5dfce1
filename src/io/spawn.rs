//! Starting shards: [`spawn`] one on its own thread (pinned if asked), with its ring built
//! there and its handler made by a factory, or [`spawn_shards`] a group that shares one
//! listening address.

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
use super::shared::{ExitGuard, ExitState, ShardExit, Shared, panic_message};
use super::sys;

/// What a handler factory learns about the shard it builds a handler for.
#[derive(Debug, Clone, Copy)]
pub struct ShardInfo {
    /// The shard's index.
    pub index: usize,
    /// The address its listener is bound to, if it listens.
    pub local_addr: Option<SocketAddr>,
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
