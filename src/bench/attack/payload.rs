//! What the `garbage` and `poison` attacks send: the malformed inputs ([`garbage`]: random
//! bytes, a truncated header, an invalid type, another network, an old version, an empty or
//! doubled handshake, a message before the handshake, a short confirm_ack) and the poisoned
//! keepalives ([`Poison`]: reserved, unspecified, the node's own and bogus addresses).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use crate::types::{Cookie, Network};
use crate::wire::{Keepalive, Message, MessageType, NodeIdHandshake};

/// Number of distinct malformed inputs the `garbage` attack cycles through.
pub const GARBAGE_VARIANTS: u64 = 9;

/// Malformed input number `i` on network `n` (variant `i` modulo [`GARBAGE_VARIANTS`]);
/// `rng` fills the random one.
pub(super) fn garbage(n: Network, i: u64, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let keepalive = Message::Keepalive(Keepalive::default()).encode(n);
    let mut query = Message::NodeIdHandshake(NodeIdHandshake::query(Cookie([1; 32]))).encode(n);
    let v = i % GARBAGE_VARIANTS;
    match v {
        0 => {
            let mut b = vec![0u8; 64 + (rng.next_u32() % 512) as usize];
            rng.fill_bytes(&mut b);
            b
        }
        1 => query[..5].to_vec(), // truncated header, then silence
        2 => {
            let mut m = keepalive;
            m[5] = 0xee; // invalid message type
            m
        }
        3 => {
            let mut m = keepalive;
            m[0..2].copy_from_slice(&0x5241u16.to_be_bytes()); // another network ("RA")
            m
        }
        4 => {
            let mut m = keepalive;
            m[3] = 0x10; // version_using below the minimum
            m
        }
        5 => {
            query[6] = 0; // node_id_handshake with neither query nor response
            query[7] = 0;
            query.truncate(8);
            query
        }
        6 => {
            let mut m = query.clone();
            m.extend_from_slice(&query); // two queries
            m
        }
        7 => keepalive, // a message before the handshake
        _ => {
            // a confirm_ack header claiming a count of 15 hashes, with a short payload
            let mut m = keepalive[..8].to_vec();
            m[5] = MessageType::ConfirmAck as u8;
            m[6] = 0;
            m[7] = 0xf0;
            m.extend_from_slice(&[0u8; 40]);
            m
        }
    }
}

/// The addresses a `poison` attack advertises: it knows the node's endpoint and how many bogus
/// (unused loopback) endpoints it has left to hand out.
pub(super) struct Poison {
    target: SocketAddr,
    bogus_left: usize,
    bogus_next: u32,
}

impl Poison {
    /// Poison against `target`, with `bogus` bogus endpoints to advertise over the run.
    pub(super) fn new(target: SocketAddr, bogus: usize) -> Poison {
        Poison {
            target,
            bogus_left: bogus,
            bogus_next: 0,
        }
    }

    /// The next poisoned keepalive: slot 0 left as padding, each other slot (chosen by `rng`)
    /// a reserved or documentation address, an unspecified one or port 0, the node's own
    /// endpoint, or the next bogus loopback endpoint while any are left.
    pub(super) fn keepalive(&mut self, rng: &mut ChaCha8Rng) -> Keepalive {
        let port = self.target.port();
        let v4 =
            |a: [u8; 4], p: u16| SocketAddrV6::new(Ipv4Addr::from(a).to_ipv6_mapped(), p, 0, 0);
        let v6 = |ip: Ipv6Addr, p: u16| SocketAddrV6::new(ip, p, 0, 0);
        let own = match self.target.ip() {
            IpAddr::V4(ip) => v4(ip.octets(), port),
            IpAddr::V6(ip) => v6(ip, port),
        };
        let mut k = Keepalive::default();
        for (i, slot) in k.peers.iter_mut().enumerate() {
            let r = rng.next_u32();
            *slot = match (i, r % 4) {
                // slot 0 is the sender's peering port (§7.4): leave it as the default padding
                (0, _) => continue,
                (_, 0) => match r % 7 {
                    0 => v4([192, 0, 2, (r >> 8) as u8], 7075),
                    1 => v4([198, 51, 100, (r >> 8) as u8], 7075),
                    2 => v4([203, 0, 113, (r >> 8) as u8], 7075),
                    3 => v4([240, (r >> 8) as u8, 0, 1], 7075),
                    4 => v4([224, 0, 0, (r >> 8) as u8], 7075),
                    5 => v6("2001:db8::1".parse().expect("literal"), 7075),
                    _ => v4([0, 1, 2, 3], 7075),
                },
                (_, 1) => match r % 3 {
                    0 => v6(Ipv6Addr::UNSPECIFIED, 7075),
                    1 => v4([0, 0, 0, 0], 7075),
                    _ => v4([127, 0, 0, 9], 0), // port 0
                },
                (_, 2) => own,
                _ if self.bogus_left > 0 => {
                    // unused loopback endpoints: dialable by the rules, refused by the kernel
                    self.bogus_left -= 1;
                    self.bogus_next += 1;
                    let b = self.bogus_next;
                    v4([127, 200, (b >> 8) as u8, b as u8], 1 + (b % 1000) as u16)
                }
                _ => own,
            };
        }
        k
    }
}
