//! Per-shard counters: plain fields updated by the shard thread, published to shared atomics
//! at a fixed interval (and on request), read by any thread.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// A snapshot of one shard's counters. Monotonic except `live_connections`.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counters {
            $( $(#[$doc])* pub $name: u64, )*
        }

        /// The published copy of [`Counters`], readable from any thread.
        #[derive(Debug, Default)]
        pub(crate) struct SharedCounters {
            $( $name: AtomicU64, )*
        }

        impl SharedCounters {
            /// Stores a snapshot (relaxed: each field is individually consistent).
            pub(crate) fn publish(&self, c: &Counters) {
                $( self.$name.store(c.$name, Ordering::Relaxed); )*
            }

            /// Loads the last published snapshot.
            pub(crate) fn load(&self) -> Counters {
                Counters { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }
    };
}

counters! {
    /// Inbound connections accepted and given a slot.
    accepted,
    /// Inbound connections closed at once because the shard was at `max_connections`.
    rejected_cap,
    /// Inbound connections the handler refused (in `screen_inbound`, before any read, or in
    /// `on_accept`).
    refused,
    /// Inbound connections closed to make room for a new one at `max_connections`.
    evicted,
    /// Accept completions that failed (the accept is re-armed).
    accept_errors,
    /// Outbound connects that succeeded.
    connects_ok,
    /// Outbound connects that failed or timed out.
    connects_failed,
    /// Receive completions that carried data.
    recv_completions,
    /// Bytes received.
    recv_bytes,
    /// Multishot receives re-armed after the kernel ended them.
    recv_rearms,
    /// Receives ended because the provided buffer ring was empty (ENOBUFS).
    buf_ring_exhausted,
    /// Messages queued for sending.
    send_messages,
    /// Send completions.
    sends,
    /// Bytes sent.
    send_bytes,
    /// Sends that wrote only part of their buffer (the rest is re-sent).
    partial_sends,
    /// Messages dropped because the connection's send queue was full.
    send_queue_drops,
    /// Connections closed: the peer closed (EOF).
    closed_peer,
    /// Connections closed: a receive failed.
    closed_recv_error,
    /// Connections closed: a send failed.
    closed_send_error,
    /// Connections closed: the send queue overflowed (policy `Close`).
    closed_send_queue_full,
    /// Connections closed: their deadline expired.
    closed_deadline,
    /// Connections closed by the handler.
    closed_local,
    /// Connections evicted by the handler (`Screen::Evict`).
    closed_evicted,
    /// Connections closed because the shard stopped.
    closed_shutdown,
    /// Open connections (a gauge).
    live_connections,
    /// Commands received from other threads.
    commands,
    /// Loop turns (one submit each).
    loop_turns,
    /// Extra submits forced by a full submission queue.
    sq_full_submits,
}
