//! One realtime channel: an authenticated peer connection owned by one shard.

use crate::endpoint::Endpoint;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};

use crate::types::PublicKey;

/// A channel's unique id within one [`ChannelMap`](super::ChannelMap) (never reused).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ChannelId(pub u64);

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Who opened the connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// The peer dialed us.
    Inbound,
    /// We dialed the peer.
    Outbound,
}

/// A channel: identity fixed at creation, timestamps and flags updated in place without locks.
///
/// The timestamps are milliseconds on the caller's clock (the map never reads one).
#[derive(Debug)]
pub struct Channel {
    id: ChannelId,
    node_id: PublicKey,
    protocol_version: u8,
    remote: Endpoint,
    shard: u16,
    direction: Direction,
    created_ms: u64,
    /// Peering port learned from keepalive slot 0; 0 while unknown.
    peering_port: AtomicU16,
    last_sent_ms: AtomicU64,
    last_received_ms: AtomicU64,
    alive: AtomicBool,
    /// Position in its stripe's dense list; only touched under that stripe's lock.
    pub(super) slot: AtomicU32,
}

impl Channel {
    /// A new alive channel; both timestamps start at `now_ms`.
    pub fn new(
        id: ChannelId,
        node_id: PublicKey,
        protocol_version: u8,
        remote: Endpoint,
        shard: u16,
        direction: Direction,
        now_ms: u64,
    ) -> Self {
        Channel {
            id,
            node_id,
            protocol_version,
            remote,
            shard,
            direction,
            created_ms: now_ms,
            peering_port: AtomicU16::new(0),
            last_sent_ms: AtomicU64::new(now_ms),
            last_received_ms: AtomicU64::new(now_ms),
            alive: AtomicBool::new(true),
            slot: AtomicU32::new(0),
        }
    }

    /// The channel id.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The peer's node id, authenticated by the handshake.
    pub fn node_id(&self) -> &PublicKey {
        &self.node_id
    }

    /// The protocol version recorded for the channel.
    pub fn protocol_version(&self) -> u8 {
        self.protocol_version
    }

    /// The remote endpoint of the TCP connection; the map key.
    pub fn remote(&self) -> Endpoint {
        self.remote
    }

    /// The endpoint to tell other peers about: the remote IP with the peering port learned from
    /// keepalive slot 0, or the remote endpoint while none is known (§7.1, §7.4).
    pub fn peering_endpoint(&self) -> Endpoint {
        match self.peering_port.load(Ordering::Relaxed) {
            0 => self.remote,
            port => self.remote.with_port(port),
        }
    }

    /// Sets the peering port (keepalive slot 0 carries `[::]:port`; the IP is always the
    /// remote's). Port 0 resets it to the remote endpoint.
    pub fn set_peering_port(&self, port: u16) {
        self.peering_port.store(port, Ordering::Relaxed);
    }

    /// The shard that owns the connection.
    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// Inbound or outbound.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// When the channel was created (ms).
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// When a message was last sent (ms).
    pub fn last_sent_ms(&self) -> u64 {
        self.last_sent_ms.load(Ordering::Relaxed)
    }

    /// When a message was last received (ms).
    pub fn last_received_ms(&self) -> u64 {
        self.last_received_ms.load(Ordering::Relaxed)
    }

    /// Records a send at `now_ms`. A plain load and store, no read-modify-write: the store is
    /// skipped when the timestamp is not newer, so repeated touches within one millisecond do
    /// not dirty the cache line. (Meant for the owning shard; with several writers a racing
    /// older time may win, which only ages the channel by that race.)
    #[inline]
    pub fn touch_sent(&self, now_ms: u64) {
        if now_ms > self.last_sent_ms.load(Ordering::Relaxed) {
            self.last_sent_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Records a receive at `now_ms`; same rules as [`Channel::touch_sent`].
    #[inline]
    pub fn touch_received(&self, now_ms: u64) {
        if now_ms > self.last_received_ms.load(Ordering::Relaxed) {
            self.last_received_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// False once the channel was closed or removed from the map.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Marks the channel closed; returns true if it was alive. The map erases closed channels
    /// at the next purge (or at once with [`ChannelMap::remove_channel`](super::ChannelMap)).
    pub fn close(&self) -> bool {
        self.alive.swap(false, Ordering::Relaxed)
    }
}
