//! Connection identity, close reasons and the per-connection state kept in the shard's slab.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;

use io_uring::types::Timespec;

use super::deadline;
use super::sys::RawAddr;

/// A connection of one shard: a slot index plus a generation, so a stale id never names the
/// connection that reuses the slot. `index()` is dense (below the slab size, see
/// [`ConnId::index`]): handlers can keep their per-connection state in a `Vec` indexed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    idx: u32,
    generation: u32,
}

impl ConnId {
    pub(crate) fn new(idx: u32, generation: u32) -> Self {
        ConnId { idx, generation }
    }

    /// The slot index, below the shard's slab size: `max_connections + max_outbound`, plus an
    /// eighth of that and 16 for connections still closing.
    pub fn index(self) -> usize {
        self.idx as usize
    }

    /// The slot's generation when this connection was opened.
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// Packs the id into one integer (generation in the high half).
    pub fn to_u64(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.idx)
    }

    /// Unpacks an id made by [`ConnId::to_u64`].
    pub fn from_u64(v: u64) -> Self {
        ConnId {
            idx: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

/// Why a connection was closed (given to `Handler::on_closed` and counted per shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (a receive returned 0 bytes).
    PeerClosed,
    /// A receive failed with this errno.
    RecvError(i32),
    /// A send failed with this errno.
    SendError(i32),
    /// The send queue overflowed and the overflow policy is `Close`.
    SendQueueFull,
    /// The deadline set with `Io::set_deadline` passed.
    Deadline,
    /// The handler called `Io::close`.
    Local,
    /// The handler evicted it to make room for a new inbound connection
    /// ([`Screen::Evict`](super::Screen)).
    Evicted,
    /// The shard is stopping.
    Shutdown,
}

/// Lifecycle of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Unused, on the free list.
    Free,
    /// Outbound connect in flight.
    Connecting,
    /// Established; the handler may send.
    Open,
    /// Closed for the handler; waiting for in-flight operations before the fd is closed.
    Closing,
}

/// One queued send buffer: possibly several small messages copied back to back.
#[derive(Debug)]
pub(crate) struct OutBuf {
    pub(crate) data: Vec<u8>,
    pub(crate) msgs: u32,
}

/// State of one connection slot. The slab never reallocates, so the address and timespec
/// handed to the kernel for a connect stay put.
pub(crate) struct Conn {
    pub(crate) generation: u32,
    pub(crate) state: State,
    pub(crate) fd: RawFd,
    pub(crate) peer: SocketAddr,
    pub(crate) token: u64,
    /// We dialed it (counted against `max_outbound`, not `max_connections`).
    pub(crate) outbound: bool,
    /// `on_closed` is owed to the handler when this connection closes.
    pub(crate) reported: bool,
    pub(crate) recv_armed: bool,
    pub(crate) send_armed: bool,
    pub(crate) connect_armed: bool,
    pub(crate) timeout_armed: bool,
    /// The connect was cancelled by us (handler close or shutdown), not by its timeout.
    pub(crate) connect_abort: bool,
    /// Queued in the shard's flush list (a send will be issued at the end of the turn).
    pub(crate) dirty: bool,
    pub(crate) sendq: VecDeque<OutBuf>,
    /// Bytes of the front buffer already sent.
    pub(crate) sent: usize,
    pub(crate) queued_msgs: usize,
    pub(crate) queued_bytes: usize,
    pub(crate) deadline: deadline::Slot,
    pub(crate) addr: RawAddr,
    pub(crate) connect_ts: Timespec,
}

impl Conn {
    pub(crate) fn new() -> Self {
        Conn {
            generation: 0,
            state: State::Free,
            fd: -1,
            peer: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            token: 0,
            outbound: false,
            reported: false,
            recv_armed: false,
            send_armed: false,
            connect_armed: false,
            timeout_armed: false,
            connect_abort: false,
            dirty: false,
            sendq: VecDeque::new(),
            sent: 0,
            queued_msgs: 0,
            queued_bytes: 0,
            deadline: deadline::Slot::default(),
            addr: RawAddr::zeroed(),
            connect_ts: Timespec::new(),
        }
    }

    /// True while the kernel may still complete an operation of this connection.
    pub(crate) fn ops_pending(&self) -> bool {
        self.recv_armed || self.send_armed || self.connect_armed || self.timeout_armed
    }

    pub(crate) fn id(&self, idx: u32) -> ConnId {
        ConnId::new(idx, self.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_id_packs() {
        let id = ConnId::new(7, 0xdead_beef);
        assert_eq!(ConnId::from_u64(id.to_u64()), id);
        assert_eq!(id.index(), 7);
        assert_eq!(id.generation(), 0xdead_beef);
    }
}

#[cfg(test)]
mod size_tests {
    /// The slot of one connection is small and fixed (the slab is allocated once, at the
    /// caps): docs/security.md quotes this figure.
    #[test]
    fn a_slot_is_bounded() {
        let slot = std::mem::size_of::<super::Conn>();
        eprintln!("io slot {slot} B");
        assert!(slot <= 384, "an io slot grew to {slot} bytes");
    }
}
