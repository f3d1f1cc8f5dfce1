//! Per-shard I/O counters: plain fields updated by the shard thread, published at a fixed
//! interval (and on request) through a [`Published`] copy, read by any thread. Declared once
//! with [`counter_set!`](crate::counter_set): the RPC rows (nano-node's `tcp_listener` details)
//! and the per-shard `/metrics` samples come from here.

use crate::counters::Published;

/// The published copy of [`Counters`], readable from any thread.
pub(crate) type SharedCounters = Published<Counters>;

crate::counter_set! {
        /// A snapshot of one shard's I/O counters. Monotonic except `live_connections`.
    pub struct Counters {
        groups {}
        /// Inbound connections accepted and given a slot.
        accepted ["tcp_listener", "accept_success", "in"] @ "nanopeer_shard_accepted_total",
        /// Inbound connections closed at once because the shard was at `max_connections`.
        rejected_cap ["tcp_listener_rejected", "max_connections", "in"]
            @ "nanopeer_shard_rejected_cap_total",
        /// Inbound connections the handler refused (in `screen_inbound`, before any read, or in
        /// `on_accept`).
        refused ["tcp_listener_rejected", "refused", "in"] @ "nanopeer_shard_refused_total",
        /// Inbound connections closed to make room for a new one at `max_connections`.
        evicted,
        /// Accept completions that failed (the accept is re-armed).
        accept_errors ["tcp_listener", "accept_failure", "in"]
            @ "nanopeer_shard_accept_errors_total",
        /// Outbound connects that succeeded.
        connects_ok ["tcp_listener", "connect_success", "in"]
            @ "nanopeer_shard_connects_ok_total",
        /// Outbound connects that failed or timed out.
        connects_failed ["tcp_listener", "connect_failure", "in"]
            @ "nanopeer_shard_connects_failed_total",
        /// Receive completions that carried data.
        recv_completions @ "nanopeer_shard_recv_completions_total",
        /// Bytes in receive completions (message headers included), counted even when the
        /// connection was already closing and the data went unread.
        recv_bytes @ "nanopeer_shard_recv_bytes_total",
        /// Multishot receives re-armed after the kernel ended them.
        recv_rearms @ "nanopeer_shard_recv_rearms_total",
        /// Receives ended because the provided buffer ring was empty (ENOBUFS).
        buf_ring_exhausted @ "nanopeer_buffer_ring_exhausted_total",
        /// Messages queued for sending.
        send_messages @ "nanopeer_shard_send_messages_total",
        /// Successful send completions on open connections: one kernel send each, which may
        /// carry several coalesced messages or only part of one (`partial_sends`).
        sends,
        /// Bytes the kernel took in successful send completions.
        send_bytes @ "nanopeer_shard_send_bytes_total",
        /// Sends that wrote only part of their buffer (the rest is re-sent).
        partial_sends @ "nanopeer_shard_partial_sends_total",
        /// Messages dropped because the connection's send queue was full.
        send_queue_drops ["drop", "send_queue_full", "in"]
            @ "nanopeer_shard_send_queue_drops_total",
        /// Connections closed: the peer closed (EOF).
        closed_peer @ "nanopeer_shard_closed_total" ("reason" = "peer"),
        /// Of `closed_peer`: closed with a reset (`ShardConfig::abortive_close_after_eof`).
        closed_abortive,
        /// Connections closed: a receive failed.
        closed_recv_error @ "nanopeer_shard_closed_total" ("reason" = "recv_error"),
        /// Connections closed: a send failed.
        closed_send_error @ "nanopeer_shard_closed_total" ("reason" = "send_error"),
        /// Connections closed: the send queue overflowed (policy `Close`).
        closed_send_queue_full @ "nanopeer_shard_closed_total" ("reason" = "send_queue_full"),
        /// Connections closed: their deadline expired.
        closed_deadline @ "nanopeer_shard_closed_total" ("reason" = "deadline"),
        /// Connections closed by the handler.
        closed_local @ "nanopeer_shard_closed_total" ("reason" = "local"),
        /// Connections evicted by the handler (`Screen::Evict`).
        closed_evicted @ "nanopeer_shard_closed_total" ("reason" = "evicted"),
        /// Connections closed because the shard stopped.
        closed_shutdown @ "nanopeer_shard_closed_total" ("reason" = "shutdown"),
        /// Open connections (a gauge).
        live_connections @ "nanopeer_shard_live_connections",
        /// Commands received from other threads.
        commands @ "nanopeer_shard_commands_total",
        /// Loop turns (one submit each).
        loop_turns @ "nanopeer_shard_loop_turns_total",
        /// Extra submits forced by a full submission queue.
        sq_full_submits,
    }
}
