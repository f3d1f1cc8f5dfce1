//! The io module's error type and the command-queue rejection.

use std::fmt;

/// What failed in the io layer.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The kernel lacks (or refuses) an io_uring feature the shard needs; nothing falls back.
    #[error("io_uring feature unavailable: {feature} ({reason})")]
    Unsupported {
        /// The missing feature, e.g. `"IORING_SETUP_DEFER_TASKRUN"`.
        feature: &'static str,
        /// What the kernel said, and what usually causes it.
        reason: String,
    },
    /// A setup syscall (socket, bind, listen, eventfd, pinning, ring creation) failed.
    #[error("{what} failed: {source}")]
    Setup {
        /// The operation that failed, as a short phrase (e.g. `"spawn shard thread"`).
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// `io_uring_setup` ran out of memory: for an unprivileged user the rings count against
    /// the locked-memory limit (≈ 0.5 MiB per shard with the default ring size).
    #[error(
        "io_uring_setup failed: {source}; the locked-memory limit (RLIMIT_MEMLOCK, `ulimit -l`) \
         is {soft_limit}: raise it (systemd `LimitMEMLOCK=infinity`) or use fewer shards or a \
         smaller `io.ring_entries`"
    )]
    RingMemory {
        /// The OS error (ENOMEM).
        source: std::io::Error,
        /// The soft `RLIMIT_MEMLOCK` in force, in words (`"64 KiB"`, `"unlimited"`).
        soft_limit: String,
    },
    /// `io_uring_enter` failed with an unexpected error while the shard was running.
    #[error("io_uring_enter failed: {0}")]
    Submit(std::io::Error),
    /// A configuration value is out of range.
    #[error("invalid io configuration: {0}")]
    Config(&'static str),
    /// The connection id does not name an open connection (closed, closing, or stale).
    #[error("connection is not open")]
    NotOpen,
    /// The connection's send queue is at its message or byte cap; the message was not queued.
    #[error("send queue full")]
    SendQueueFull,
    /// The shard already holds its maximum number of connections.
    #[error("connection cap reached")]
    ConnectionCap,
    /// The shard is stopping: no new connections.
    #[error("shard is stopping")]
    Stopping,
    /// Creating the socket for an outbound connection failed.
    #[error("dial failed: {0}")]
    Dial(std::io::Error),
    /// The shard thread panicked (in the handler or the loop).
    #[error("shard thread panicked")]
    Panicked,
}

/// A command that could not be queued: the queue is full or the shard has stopped.
/// The command is handed back.
pub struct Full<C>(pub C);

impl<C> fmt::Debug for Full<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<C> fmt::Display for Full<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shard command queue full or shard stopped")
    }
}

impl<C> std::error::Error for Full<C> {}
