//! keepalive (§4.1): 8 endpoints of 16 IPv6 bytes and a little-endian port.

use std::net::{Ipv6Addr, SocketAddrV6};

use super::error::DecodeError;
use super::header::MessageType;
use super::reader::Reader;

pub use super::protocol::KEEPALIVE_LEN;
/// Endpoints in a keepalive.
pub const KEEPALIVE_PEERS: usize = 8;

/// The empty slot `[::]:0`.
pub const EMPTY_PEER: SocketAddrV6 = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0);

/// A keepalive: up to 8 peering endpoints; unused slots are [`EMPTY_PEER`]. IPv4 peers
/// travel as v4-mapped IPv6 addresses. Flow info and scope id are not sent (decoded as 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Keepalive {
    /// The 8 slots in wire order. Order matters: in a "keepalive self" slot 0 is
    /// `[::]:<listening port>`, read as the sender's own peering port (§4.1).
    pub peers: [SocketAddrV6; KEEPALIVE_PEERS],
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            peers: [EMPTY_PEER; KEEPALIVE_PEERS],
        }
    }
}

impl Keepalive {
    /// The non-empty slots.
    pub fn non_empty(&self) -> impl Iterator<Item = &SocketAddrV6> {
        self.peers.iter().filter(|p| **p != EMPTY_PEER)
    }

    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        for p in &self.peers {
            out.extend_from_slice(&p.ip().octets());
            out.extend_from_slice(&p.port().to_le_bytes());
        }
    }

    #[inline]
    pub(crate) fn decode_payload(payload: &[u8]) -> Result<Keepalive, DecodeError> {
        let mut r = Reader::new(MessageType::Keepalive, payload);
        let mut k = Keepalive::default();
        for slot in &mut k.peers {
            let ip = Ipv6Addr::from(r.array::<16>()?);
            let port = r.u16_le()?;
            *slot = SocketAddrV6::new(ip, port, 0, 0);
        }
        r.finish()?;
        Ok(k)
    }
}
