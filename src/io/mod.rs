//! The io_uring runtime: shards that move bytes for a [`Handler`]. Knows nothing of Nano.
//!
//! A shard is one thread (optionally pinned) with one ring created with `SINGLE_ISSUER |
//! DEFER_TASKRUN`, its own SO_REUSEPORT listener, a multishot accept, and per connection a
//! multishot receive into a provided buffer ring. Sends come from owned, pooled buffers with a
//! bounded queue per connection (one send in flight; small messages packed together). Other
//! threads reach a shard through a [`ShardHandle`]: a bounded command queue plus an eventfd the
//! ring has a read armed on. Each loop turn processes every completion, the commands, expired
//! deadlines and the handler's timer, then calls `before_sleep` and submits once, waiting until
//! the nearest deadline.
//!
//! Steady state, the receive path allocates nothing and makes no syscall besides the one
//! `io_uring_enter` per turn: receive buffers come from the ring and return to it after
//! `on_data`, connection states live in a slab that never reallocates, send buffers come from a
//! pool. Per connection (not per message) there is one `getpeername` on accept and one
//! `socket` + `setsockopt` per dial.
//!
//! Layout, each file using only files below it (no cycle): `spawn` starts shards, using
//! `event_loop` (the shard's loop), `handle` (talking to a shard from other threads) and
//! `shared` (the state both sides see). The loop routes completions to the paths `accept`,
//! `recv`, `send` and `dial`, which call the [`Handler`] (`handler`) with [`Io`] (`slots`: the
//! connection slab and each connection's life) and put operations on the ring via `submit`.
//! Below them: `heartbeat`, `pool`, `conn`, `deadline`, `bufring`, `ring`, `counters`,
//! `config`, `sys` and `error`.
//!
//! This is the only module with `unsafe` code; every block says why it holds.
#![allow(unsafe_code)]

mod accept;
mod bufring;
mod config;
mod conn;
mod counters;
pub mod cpu;
mod deadline;
mod dial;
mod error;
mod event_loop;
mod handle;
mod handler;
mod heartbeat;
mod listener;
mod pool;
mod recv;
mod ring;
mod send;
mod shared;
mod slots;
mod spawn;
mod submit;
mod sys;

pub use config::{SendOverflow, ShardConfig};
pub use conn::{CloseReason, ConnId};
pub use counters::Counters;
pub use error::{Full, IoError};
pub use handle::ShardHandle;
pub use handler::{Handler, Screen};
pub use heartbeat::{Fault, Heartbeat};
pub use listener::Listener;
pub use ring::probe;
pub use shared::{ShardExit, panic_message};
pub use slots::Io;
pub use spawn::{ShardInfo, spawn, spawn_on, spawn_shards, spawn_shards_on};

/// Pins the calling thread to `core` (for threads beside the shards, e.g. the crawler).
pub fn pin_current_thread(core: usize) -> Result<(), IoError> {
    sys::pin_to_core(core)
}

/// Sets the process's file-size limit (`RLIMIT_FSIZE`; `None` lifts it). Writes past it fail
/// with `EFBIG` once [`ignore_file_size_signal`] is in force; tests use it to simulate a full
/// disk.
pub fn set_file_size_limit(bytes: Option<u64>) -> Result<(), IoError> {
    sys::set_file_size_limit(bytes)
}

/// Ignores `SIGXFSZ`, so that hitting a file-size limit is an I/O error (the peer store reports
/// it and the node keeps peering) rather than the death of the process.
pub fn ignore_file_size_signal() -> Result<(), IoError> {
    sys::ignore_file_size_signal()
}

/// The process's open-file limit (`RLIMIT_NOFILE`) as `(soft, hard)`; `u64::MAX` means
/// unlimited.
pub fn open_file_limit() -> Result<(u64, u64), IoError> {
    sys::open_file_limit()
}

/// Sets the process's open-file limit (`RLIMIT_NOFILE`; `u64::MAX` = unlimited). Raising the
/// soft limit up to the hard one needs no privilege; tests lower both to run a node under a
/// small limit.
pub fn set_open_file_limit(soft: u64, hard: u64) -> Result<(), IoError> {
    sys::set_open_file_limit(soft, hard)
}
