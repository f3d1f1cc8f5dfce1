//! Shard configuration.

use std::net::SocketAddr;
use std::time::Duration;

use super::IoError;

/// What a full send queue does to a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOverflow {
    /// Drop the new message and count it; the connection stays open.
    Drop,
    /// Close the connection with [`CloseReason::SendQueueFull`](super::CloseReason).
    Close,
}

/// Settings of one shard (one thread, one ring). Every shard of a group uses the same values.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Address to listen on (SO_REUSEPORT: every shard binds it). `[::]` is dual-stack.
    /// `None`: the shard only dials out. Read by [`spawn`](super::spawn) and
    /// [`spawn_shards`](super::spawn_shards); the `_on` variants take listeners bound before.
    pub listen: Option<SocketAddr>,
    /// `listen(2)` backlog; must be positive. Unused by the `_on` spawn variants.
    pub backlog: i32,
    /// Cores to pin shards to: shard `i` runs on `cores[i % len]`. Empty: no pinning.
    pub cores: Vec<usize>,
    /// Submission queue entries (the completion queue gets four times as many).
    pub ring_entries: u32,
    /// Number of receive buffers in the provided buffer ring (a power of two, ≤ 32768).
    pub recv_buffers: u16,
    /// Size of each receive buffer in bytes.
    pub recv_buffer_size: u32,
    /// Most inbound connections open at once. At the cap a new connection is refused, unless
    /// the handler names one to evict ([`Handler::screen_inbound`](super::Handler)).
    pub max_connections: usize,
    /// Most outbound connections (connecting or open) at once: a separate count, so inbound
    /// connections can never take the slots of our own dials.
    pub max_outbound: usize,
    /// Send queue cap per connection, in messages.
    pub send_queue_messages: usize,
    /// Send queue cap per connection, in unsent bytes.
    pub send_queue_bytes: usize,
    /// What happens to a message beyond the send queue cap.
    pub send_overflow: SendOverflow,
    /// Small messages queued behind each other are copied into one buffer up to this size,
    /// so one send carries many of them. Also the capacity of a pooled send buffer.
    pub send_coalesce_bytes: usize,
    /// Send buffers kept in the shard's pool for reuse.
    pub send_pool_buffers: usize,
    /// Default timeout of an outbound connect.
    pub connect_timeout: Duration,
    /// Outbound sockets start with `TCP_QUICKACK` off, so the ACK that completes the TCP
    /// handshake rides on the first data segment (in this protocol the dialer always speaks
    /// first) instead of going out alone: one segment less per dial.
    pub delayed_connect_ack: bool,
    /// After the peer's FIN (a receive returned 0 bytes), close with `SO_LINGER` {on, 0}: the
    /// close sends a reset instead of a FIN, so neither side keeps the connection in
    /// `LAST_ACK` / `TIME_WAIT`. Only when no send of ours is in flight (nothing of ours to
    /// lose); every other close is graceful. Off by default: it saved 2–3 µs of shard CPU per
    /// loopback handshake in a loaded same-run A/B (4–5 µs on a quiet machine earlier), under
    /// the 3 µs bar for changing how every peer sees us close (tuning.md, "Handshake path:
    /// kernel items").
    pub abortive_close_after_eof: bool,
    /// Capacity of the cross-thread command queue, in commands; when it is full
    /// [`ShardHandle::send_command`](super::ShardHandle::send_command) hands the command back.
    pub command_queue: usize,
    /// Commands handled per loop turn at most (the rest wait for the next turn).
    pub commands_per_turn: usize,
    /// Interval at which counters are published to the shared atomics.
    pub counters_interval: Duration,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            listen: None,
            backlog: 1024,
            cores: Vec::new(),
            ring_entries: 4096,
            recv_buffers: 1024,
            recv_buffer_size: 4096,
            max_connections: 2048,
            max_outbound: 2048,
            send_queue_messages: 128,
            send_queue_bytes: 1 << 20,
            send_overflow: SendOverflow::Drop,
            send_coalesce_bytes: 16 * 1024,
            send_pool_buffers: 256,
            connect_timeout: Duration::from_secs(10),
            delayed_connect_ack: true,
            abortive_close_after_eof: false,
            command_queue: 4096,
            commands_per_turn: 1024,
            counters_interval: Duration::from_millis(100),
        }
    }
}

impl ShardConfig {
    /// Checks value ranges (buffer counts and sizes, ring entries, connection caps, positive
    /// queue caps and backlog); the first value out of range gives [`IoError::Config`] naming it.
    pub fn validate(&self) -> Result<(), IoError> {
        if !self.recv_buffers.is_power_of_two() || self.recv_buffers > 32768 {
            return Err(IoError::Config(
                "recv_buffers must be a power of two ≤ 32768",
            ));
        }
        if self.recv_buffer_size == 0 || self.recv_buffer_size > (1 << 24) {
            return Err(IoError::Config("recv_buffer_size must be in 1..=16 MiB"));
        }
        if self.ring_entries < 8 || self.ring_entries > 32768 {
            return Err(IoError::Config("ring_entries must be in 8..=32768"));
        }
        if self.max_connections == 0 || self.max_connections > (1 << 20) {
            return Err(IoError::Config("max_connections must be in 1..=1048576"));
        }
        if self.max_outbound > (1 << 20) {
            return Err(IoError::Config("max_outbound must be in 0..=1048576"));
        }
        if self.send_queue_messages == 0 || self.send_queue_bytes == 0 {
            return Err(IoError::Config("send queue caps must be positive"));
        }
        if self.command_queue == 0 || self.commands_per_turn == 0 {
            return Err(IoError::Config(
                "command_queue and commands_per_turn must be positive",
            ));
        }
        if self.backlog <= 0 {
            return Err(IoError::Config("backlog must be positive"));
        }
        Ok(())
    }
}
