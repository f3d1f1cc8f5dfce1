//! What a simulated peer sends: [`Frame`]s built into dev-network bytes (handshake parts,
//! keepalives, votes, blocks with or without solved work, telemetry, raw headers, vote floods),
//! and a well-behaved peer's whole side of a handshake ([`Op::Establish`](super::Op::Establish)).

use std::net::SocketAddr;

use super::script::{Frame, NETWORK, PORTS, endpoint, raw_header};
use super::world::Driver;
use crate::crypto::{WorkThresholds, epoch_link, epoch_signer};
use crate::endpoint::Endpoint;
use crate::proto::events::ConnId;
use crate::types::{Amount, BlockHash, Cookie, PublicKey, Signature};
use crate::wire::{
    Block, ChangeBlock, ConfirmAck, EMPTY_PEER, HEADER_LEN, HandshakeResponse, Keepalive, Message,
    MessageType, NodeIdHandshake, OpenBlock, Publish, ReceiveBlock, ResponseV2, SendBlock,
    StateBlock, TelemetryAck, TelemetryData, Vote,
};

impl Driver<'_> {
    /// A well-behaved peer: the handshake messages of its side, then the check passes.
    pub(super) fn establish(&mut self, slot: u8, remote: SocketAddr, outbound: bool, node: u8) {
        let Some(inc) = self.connect(slot, remote, outbound, false) else {
            return;
        };
        let id = self.incs[inc].id;
        let hs = |flags| Frame::Handshake {
            flags,
            node,
            seed: node,
        };
        if self.incs[inc].outbound {
            // The core sent its query: answer with ours and our response.
            let b = self.build(Some(id), &hs(0b111));
            self.bytes(Some(id), &b);
        } else {
            let b = self.build(Some(id), &hs(0b001));
            self.bytes(Some(id), &b);
            if self.incs[inc].open {
                let b = self.build(Some(id), &hs(0b110));
                self.bytes(Some(id), &b);
            }
        }
        let mine: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, r)| r.inc == inc && r.handshake)
            .map(|(&id, _)| id)
            .collect();
        for v in mine {
            self.verify(v, true);
        }
    }

    fn node_id(&self, node: u8) -> PublicKey {
        if node == 0 {
            self.own
        } else {
            PublicKey([node; 32])
        }
    }

    /// The bytes of `frame` for the connection `id`.
    pub(super) fn build(&mut self, id: Option<ConnId>, frame: &Frame) -> Vec<u8> {
        let inc = self.open_inc(id);
        let message = match frame {
            Frame::Handshake { flags, node, seed } => {
                let cookie = Cookie([*seed; 32]);
                let node_id = self.node_id(*node);
                let response = HandshakeResponse {
                    node_id,
                    v2: (flags & 4 != 0).then(|| ResponseV2 {
                        salt: Cookie([seed.wrapping_add(1); 32]),
                        genesis: if flags & 8 != 0 {
                            BlockHash([*seed; 32])
                        } else {
                            self.genesis
                        },
                    }),
                    signature: Signature([*seed; 64]),
                };
                let mut m = NodeIdHandshake {
                    query: None,
                    response: None,
                };
                if flags & 1 != 0 {
                    m.query = Some(crate::wire::HandshakeQuery {
                        cookie,
                        v2: flags & 16 == 0,
                    });
                }
                if flags & 2 != 0 {
                    m.response = Some(response);
                    if let Some(i) = inc {
                        self.incs[i].node_id = Some(node_id);
                    }
                }
                if m.query.is_none() && m.response.is_none() {
                    // A handshake header with neither flag (payload empty).
                    let h = raw_header(7, 0, 0x15);
                    debug_assert_eq!(h.message_type, MessageType::NodeIdHandshake);
                    return h.encode().to_vec();
                }
                Message::NodeIdHandshake(m)
            }
            Frame::Keepalive { peers } => {
                let mut k = Keepalive {
                    peers: [EMPTY_PEER; 8],
                };
                for (slot, pair) in k.peers.iter_mut().zip(peers.chunks(2)) {
                    let (a, p) = (pair[0], pair[1]);
                    *slot = if a % 17 == 16 {
                        Endpoint::UNSPECIFIED
                            .with_port(PORTS[usize::from(p % 4)])
                            .to_v6()
                    } else {
                        Endpoint::from(endpoint(a, p)).to_v6()
                    };
                }
                Message::Keepalive(k)
            }
            Frame::ConfirmAck {
                account,
                count,
                flags,
                seed,
            } => Message::ConfirmAck(ConfirmAck {
                vote: vote(*account, *count, *flags, *seed, 0),
                rebroadcasted: flags & 2 != 0,
            }),
            Frame::Publish { kind, flags, seed } => Message::Publish(publish(*kind, *flags, *seed)),
            Frame::TelemetryAck { flags, extra, seed } => {
                let data = (flags & 4 == 0).then(|| {
                    let node_id = match inc.and_then(|i| self.incs[i].node_id) {
                        Some(n) if flags & 1 != 0 => n,
                        _ => PublicKey([*seed; 32]),
                    };
                    TelemetryData {
                        signature: Signature([*seed; 64]),
                        node_id,
                        block_count: u64::from(*seed),
                        peer_count: u32::from(*extra),
                        protocol_version: 0x15,
                        genesis_block: if flags & 2 != 0 {
                            BlockHash([*seed; 32])
                        } else {
                            self.genesis
                        },
                        timestamp: u64::from(*seed) << 20,
                        unknown_data: vec![*seed; usize::from(*extra)],
                        ..TelemetryData::default()
                    }
                });
                Message::TelemetryAck(TelemetryAck { data })
            }
            Frame::Raw {
                kind,
                ext,
                version,
                payload,
            } => {
                let h = raw_header(*kind, *ext, *version);
                let mut out = h.encode().to_vec();
                let len = h.payload_len();
                out.extend(payload.iter().take(len));
                out.resize(HEADER_LEN + len, 0);
                return out;
            }
            Frame::VoteFlood { count, seed } => {
                let mut out = Vec::new();
                for i in 0..u16::from(*count) * 2 {
                    let m = Message::ConfirmAck(ConfirmAck {
                        vote: vote(1 + (i % 7) as u8, 1, 0, *seed, u64::from(i) + 1),
                        rebroadcasted: false,
                    });
                    m.encode_into(NETWORK, &mut out);
                }
                return out;
            }
        };
        message.encode(NETWORK)
    }
}

/// A vote from `account` (0: the zero account) over `count` hashes.
fn vote(account: u8, count: u8, flags: u8, seed: u8, salt: u64) -> Vote {
    Vote {
        account: PublicKey([account; 32]),
        signature: Signature([seed; 64]),
        timestamp: if flags & 1 != 0 {
            u64::MAX
        } else {
            (u64::from(seed) << 8 | salt) << 4
        },
        hashes: (0..count).map(|i| BlockHash([seed ^ i; 32])).collect(),
    }
}

/// A block of kind `kind % 5` from `seed`, with entry work solved if `flags & 1`.
fn publish(kind: u8, flags: u8, seed: u8) -> Publish {
    let h = |x: u8| BlockHash([seed.wrapping_add(x); 32]);
    let k = |x: u8| PublicKey([seed.wrapping_add(x); 32]);
    let signature = Signature([seed; 64]);
    let work = u64::from(seed);
    let mut block = match kind % 5 {
        0 => Block::Send(SendBlock {
            previous: h(1),
            destination: k(2),
            balance: Amount(u128::from(seed)),
            signature,
            work,
        }),
        1 => Block::Receive(ReceiveBlock {
            previous: h(1),
            source: h(2),
            signature,
            work,
        }),
        2 => Block::Open(OpenBlock {
            source: h(1),
            representative: k(2),
            account: k(3),
            signature,
            work,
        }),
        3 => Block::Change(ChangeBlock {
            previous: h(1),
            representative: k(2),
            signature,
            work,
        }),
        _ => {
            let n = if flags & 4 != 0 { 2 } else { 1 };
            let account = if flags & 16 != 0 {
                epoch_signer(NETWORK, n).unwrap_or(k(3))
            } else {
                k(3)
            };
            Block::State(StateBlock {
                account,
                previous: if seed & 1 == 0 { BlockHash::ZERO } else { h(1) },
                representative: k(2),
                balance: Amount(u128::from(seed) << 64),
                link: if flags & 2 != 0 { epoch_link(n) } else { h(4) },
                signature,
                work,
            })
        }
    };
    if flags & 1 != 0 {
        let thresholds = WorkThresholds::for_network(NETWORK);
        for nonce in 0..4_096u64 {
            set_work(&mut block, work.wrapping_add(nonce << 8));
            if thresholds.validate_entry(&block) {
                break;
            }
        }
    }
    Publish {
        block,
        originator: flags & 8 != 0,
    }
}

fn set_work(block: &mut Block, work: u64) {
    match block {
        Block::Send(b) => b.work = work,
        Block::Receive(b) => b.work = work,
        Block::Open(b) => b.work = work,
        Block::Change(b) => b.work = work,
        Block::State(b) => b.work = work,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solved_work_passes_the_entry_check() {
        let t = WorkThresholds::for_network(NETWORK);
        for kind in 0..5 {
            assert!(t.validate_entry(&publish(kind, 1, 42).block), "kind {kind}");
        }
    }
}
