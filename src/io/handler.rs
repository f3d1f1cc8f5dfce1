//! The contract between a shard and the application it drives: the [`Handler`] callbacks
//! (admission, data, closes, commands, timers) and the [`Screen`] verdict on a new connection.

use std::net::SocketAddr;
use std::time::Instant;

use super::conn::{CloseReason, ConnId};
use super::slots::Io;

/// The application logic a shard drives. Every callback runs on the shard thread and gets the
/// shard's [`Io`]. Callbacks must not block: the ring waits while they run.
///
/// Guarantees: every connection the handler learned of (`on_accept` returned `true`, or
/// `on_connected`) gets exactly one `on_closed`; every `Io::dial` that returned `Ok` gets
/// exactly one of `on_connected` / `on_connect_failed`.
pub trait Handler: 'static {
    /// Commands other threads send through [`ShardHandle::send_command`](super::ShardHandle).
    type Command: Send + 'static;

    /// An accepted connection from `peer`, before it gets a slot and before anything is read
    /// from it: the place for admission rules (limits per address, exclusion) that must cost a
    /// stranger nothing. `full` is true when the shard holds `max_connections` inbound
    /// connections: then [`Screen::Accept`] is refused (counted `rejected_cap`) unless the
    /// handler names an open inbound connection to evict ([`Screen::Evict`]; it is closed
    /// with [`CloseReason::Evicted`], `on_closed` follows). [`Screen::Refuse`] closes the
    /// socket at once (counted `refused`). The default accepts.
    fn screen_inbound(&mut self, io: &mut Io, peer: SocketAddr, full: bool) -> Screen {
        let _ = (io, peer, full);
        Screen::Accept
    }

    /// A connection was accepted from `peer` (on a dual-stack `[::]` listener IPv4 peers
    /// appear as IPv4-mapped IPv6 addresses). Return `false` to close it at once (no
    /// `on_closed` follows). Receiving starts after this returns `true`.
    fn on_accept(&mut self, io: &mut Io, conn: ConnId, peer: SocketAddr) -> bool {
        let _ = (io, conn, peer);
        true
    }

    /// An outbound connection made with `Io::dial` (`token` as given) is established.
    fn on_connected(&mut self, io: &mut Io, conn: ConnId, peer: SocketAddr, token: u64) {
        let _ = (io, conn, peer, token);
    }

    /// An outbound connection failed (refused, unreachable, timed out: `TimedOut`, or
    /// cancelled by `Io::close` / shutdown: `ECANCELED`). `conn` is already invalid.
    fn on_connect_failed(&mut self, io: &mut Io, conn: ConnId, token: u64, err: std::io::Error) {
        let _ = (io, conn, token, err);
    }

    /// Bytes arrived on `conn`. `data` is a receive buffer that goes back to the kernel when
    /// this returns: keep what you need by copying it.
    fn on_data(&mut self, io: &mut Io, conn: ConnId, data: &[u8]);

    /// `conn` is closed for the handler; its id is invalid from now on.
    fn on_closed(&mut self, io: &mut Io, conn: ConnId, reason: CloseReason) {
        let _ = (io, conn, reason);
    }

    /// A command from another thread.
    fn on_command(&mut self, io: &mut Io, cmd: Self::Command) {
        let _ = (io, cmd);
    }

    /// Called once per loop turn while [`Handler::next_wakeup`] is due (so it must move
    /// `next_wakeup` forward, or the ring never sleeps).
    fn on_timer(&mut self, io: &mut Io, now: Instant) {
        let _ = (io, now);
    }

    /// Called once per loop turn just before the ring may block: flush batched work here.
    fn before_sleep(&mut self, io: &mut Io) {
        let _ = io;
    }

    /// When the handler next wants `on_timer` (the ring wakes up for it).
    fn next_wakeup(&self) -> Option<Instant> {
        None
    }
}

/// The handler's verdict on an accepted connection ([`Handler::screen_inbound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Give it a slot (refused anyway when the shard is full).
    Accept,
    /// Close it at once.
    Refuse,
    /// Close this open inbound connection, then give the new one its slot.
    Evict(ConnId),
}
