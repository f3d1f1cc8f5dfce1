//! The byte encoding of a [`Script`]: the operations and frames a fuzz input is read as, the
//! palettes their bytes index (addresses, ports, tick steps), and the reader and writer that
//! turn bytes into a script and back ([`Script::decode`], [`Script::encode`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::types::Network;
use crate::wire::{Extensions, Header, MessageType};

/// Most operations read from one input (the rest is ignored).
pub const MAX_OPS: usize = 512;
/// Connection slots.
pub const SLOTS: usize = 8;
/// The network every frame is built for.
pub const NETWORK: Network = Network::Dev;

/// Time steps of [`Op::Tick`], indexed by its first byte modulo 16 (around the dev
/// network's 1 s cleanup period, 5 s handshake timeout and cookie cutoff, 15 s idle timeout).
pub const TICK_STEPS_MS: [u64; 16] = [
    0, 1, 10, 100, 500, 999, 1_000, 1_001, 2_500, 4_999, 5_000, 5_001, 10_000, 15_000, 15_001,
    60_000,
];

/// Remote ports, indexed by a port byte modulo 4 (44 000 is the core's own listen port).
pub const PORTS: [u16; 4] = [44_000, 7_075, 50_000, 0];

/// Remote addresses, indexed by an address byte modulo 16.
pub fn address(index: u8) -> IpAddr {
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let v6 = |s: &str| IpAddr::V6(s.parse().expect("palette address"));
    match index % 16 {
        0 => v4(127, 0, 0, 1),
        1 => v4(127, 0, 0, 2),
        2 => v6("::1"),
        3 => v4(10, 0, 0, 1),
        4 => v4(192, 168, 1, 1),
        5 => v4(1, 2, 3, 4),
        6 => v4(1, 2, 3, 5),
        7 => v4(8, 8, 8, 8),
        8 => v6("::ffff:1.2.3.4"),
        9 => v6("2001:db8::1"),
        10 => v6("2001:db8::2"),
        11 => v6("2a00:1450:4001::1"),
        12 => v4(0, 0, 0, 0),
        13 => v6("::"),
        14 => v6("fe80::1"),
        _ => v4(224, 0, 0, 1),
    }
}

/// The endpoint named by an address byte and a port byte.
pub fn endpoint(addr: u8, port: u8) -> SocketAddr {
    SocketAddr::new(address(addr), PORTS[usize::from(port % 4)])
}

/// A frame built from input bytes (field bytes mostly derived from a seed byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// node_id_handshake. `flags`: bit 0 query, bit 1 response, bit 2 v2 response, bit 3
    /// wrong genesis, bit 4 v1 query. `node`: the response's node id (0: the core's own).
    Handshake {
        /// Which parts.
        flags: u8,
        /// Node id selector.
        node: u8,
        /// Seed of cookie, salt and signature.
        seed: u8,
    },
    /// keepalive: 8 slots of (address byte, port byte); address byte 16 mod 17 is `[::]`.
    Keepalive {
        /// The slots.
        peers: [u8; 16],
    },
    /// confirm_ack. `account` 0 is the zero account. `flags`: bit 0 final timestamp, bit 1
    /// rebroadcasted.
    ConfirmAck {
        /// Account selector.
        account: u8,
        /// Number of hashes.
        count: u8,
        /// Flags.
        flags: u8,
        /// Seed of hashes, signature and timestamp.
        seed: u8,
    },
    /// publish. `kind` modulo 5: send, receive, open, change, state. `flags`: bit 0 solve
    /// the entry work, bit 1 epoch link, bit 2 epoch 2 (else 1), bit 3 originator, bit 4 the
    /// account is the epoch signer.
    Publish {
        /// Block kind.
        kind: u8,
        /// Flags.
        flags: u8,
        /// Seed of the fields.
        seed: u8,
    },
    /// telemetry_ack. `flags`: bit 0 the node id of the connection's handshake, bit 1 wrong
    /// genesis, bit 2 empty ack.
    TelemetryAck {
        /// Flags.
        flags: u8,
        /// Unknown trailing bytes (at most 255).
        extra: u8,
        /// Seed of the fields.
        seed: u8,
    },
    /// Any message type with a valid header for the dev network and `payload` as its
    /// payload (read to the length the header computes; zero-padded).
    Raw {
        /// Index into [`MessageType::ALL`] (modulo 13).
        kind: u8,
        /// Extensions.
        ext: u16,
        /// `version_using` (at least 0x14).
        version: u8,
        /// The payload.
        payload: Vec<u8>,
    },
    /// `2 * count` distinct confirm_acks (one hash each) in one buffer.
    VoteFlood {
        /// Half the number of votes.
        count: u8,
        /// Seed.
        seed: u8,
    },
}

/// One operation. Fields are raw input bytes, interpreted when run (slots modulo
/// [`SLOTS`], addresses through [`address`], ports through [`PORTS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Tag 0: `on_connected`. `flags`: bit 0 outbound, bit 1 reuse the slot's id (only with
    /// [`Options::reuse_ids`]; if that connection is open, the core forgets it).
    ///
    /// [`Options::reuse_ids`]: super::Options::reuse_ids
    Connect {
        /// Slot.
        slot: u8,
        /// Address byte.
        addr: u8,
        /// Port byte.
        port: u8,
        /// Flags.
        flags: u8,
    },
    /// Tag 1: `on_bytes` with arbitrary bytes (length byte, then the bytes).
    Bytes {
        /// Slot.
        slot: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Tag 2: a frame, fed whole (`split` 0) or in `split`-byte pieces.
    Frame {
        /// Slot.
        slot: u8,
        /// Piece size (0: whole).
        split: u8,
        /// The frame.
        frame: Frame,
    },
    /// Tag 3: answer one outstanding verify request (`pick` modulo their number, by id), or
    /// with `pick` 255 an id never issued. `ok` bit 0: the signature is valid.
    Verify {
        /// Which.
        pick: u8,
        /// Result.
        ok: u8,
    },
    /// Tag 4: answer every outstanding request, lowest id first; request `i` is valid when
    /// bit `i % 8` of `bits` is set.
    VerifyAll {
        /// Results.
        bits: u8,
    },
    /// Tag 5: advance time by [`TICK_STEPS_MS`]`[step % 16]`. `flags`: bit 0 the loop closes
    /// connections whose deadline passed, bit 1 skip `on_tick`.
    Tick {
        /// Step.
        step: u8,
        /// Flags.
        flags: u8,
    },
    /// Tag 6: the loop closes the slot's connection (`on_closed`); `flags` bit 0 names the
    /// slot's previous id instead.
    Close {
        /// Slot.
        slot: u8,
        /// Flags.
        flags: u8,
    },
    /// Tag 7: `ShardCommand::Send` to a channel (`pick` modulo the channels seen, 255: an
    /// unknown channel) with arbitrary bytes.
    CmdSend {
        /// Which channel.
        pick: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Tag 8: `ShardCommand::Close` of a channel (`pick` as for [`Op::CmdSend`]).
    CmdClose {
        /// Which channel.
        pick: u8,
        /// Reason selector.
        reason: u8,
    },
    /// Tag 9: `ShardCommand::Dial`.
    CmdDial {
        /// Address byte.
        addr: u8,
        /// Port byte.
        port: u8,
    },
    /// Tag 10: `on_dial_failed`.
    DialFailed {
        /// Address byte.
        addr: u8,
        /// Port byte.
        port: u8,
    },
    /// Tag 11: connect a new connection on the slot and play a well-behaved peer's side of
    /// the handshake with node id selector `node`, answering the signature check as valid.
    /// `flags` bit 0: outbound.
    Establish {
        /// Slot.
        slot: u8,
        /// Address byte.
        addr: u8,
        /// Port byte.
        port: u8,
        /// Flags.
        flags: u8,
        /// Node id selector.
        node: u8,
    },
}

/// A decoded input: configuration byte and operations.
///
/// Configuration bits: 0 no first query on channel up, 1 tight cookie caps (2 in all, 1 per
/// IP), 2 tight channel limits (2 per IP, 3 per subnet, 3 in all), 3 no local peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// Configuration bits.
    pub config: u8,
    /// The operations.
    pub ops: Vec<Op>,
}

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let take = n.min(self.data.len());
        let (head, rest) = self.data.split_at(take);
        self.data = rest;
        let mut v = head.to_vec();
        v.resize(n, 0);
        v
    }
}

/// One field of an operation or frame in the byte encoding: how it is read (missing bytes
/// read as zero) and written back.
trait Field: Sized {
    fn read(r: &mut Reader<'_>) -> Self;
    fn write(&self, out: &mut Vec<u8>);
}

/// A byte.
impl Field for u8 {
    fn read(r: &mut Reader<'_>) -> u8 {
        r.u8()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

/// Two bytes, little-endian.
impl Field for u16 {
    fn read(r: &mut Reader<'_>) -> u16 {
        r.u16()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend(self.to_le_bytes());
    }
}

/// 16 bytes (a keepalive's address and port bytes).
impl Field for [u8; 16] {
    fn read(r: &mut Reader<'_>) -> [u8; 16] {
        let mut v = [0u8; 16];
        for b in &mut v {
            *b = r.u8();
        }
        v
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend(self);
    }
}

/// A length byte, then that many bytes (longer byte strings are cut to 255 when written).
impl Field for Vec<u8> {
    fn read(r: &mut Reader<'_>) -> Vec<u8> {
        let n = usize::from(r.u8());
        r.bytes(n)
    }
    fn write(&self, out: &mut Vec<u8>) {
        let n = self.len().min(255);
        out.push(n as u8);
        out.extend(&self[..n]);
    }
}

/// The byte layout of a tagged enum, written once for both directions: `read` takes a tag
/// byte modulo the number of tags, then the fields of that variant in the order listed;
/// `write` puts the same tag and fields in the same order, so the two cannot disagree. A
/// field is a [`Field`], or `name[len_fn(fields before it)]`: exactly that many bytes (read
/// zero-padded; written cut or zero-padded to that length).
macro_rules! layout {
    (@read $r:ident) => {
        Field::read($r)
    };
    (@read $r:ident, $len:expr) => {
        $r.bytes($len)
    };
    (@write $out:ident, $f:ident) => {
        Field::write($f, $out)
    };
    (@write $out:ident, $f:ident, $len:expr) => {{
        let mut bytes = $f.clone();
        bytes.resize($len, 0);
        $out.extend(bytes);
    }};
    ($ty:ident {
        $($tag:literal => $v:ident { $($f:ident $([$len:ident($($arg:ident),*)])?),* },)+
    }) => {
        impl Field for $ty {
            fn read(r: &mut Reader<'_>) -> $ty {
                const TAGS: u8 = [$($tag),+].len() as u8;
                match r.u8() % TAGS {
                    $($tag => {
                        $(let $f = layout!(@read r $(, $len($(&$arg),*))?);)*
                        $ty::$v { $($f),* }
                    })+
                    _ => unreachable!("the tags are 0 to their number - 1"),
                }
            }

            fn write(&self, out: &mut Vec<u8>) {
                match self {
                    $($ty::$v { $($f),* } => {
                        out.push($tag);
                        $(layout!(@write out, $f $(, $len($($arg),*))?);)*
                    })+
                }
            }
        }
    };
}

layout! {
    Frame {
        0 => Handshake { flags, node, seed },
        1 => Keepalive { peers },
        2 => ConfirmAck { account, count, flags, seed },
        3 => Publish { kind, flags, seed },
        4 => TelemetryAck { flags, extra, seed },
        5 => Raw { kind, ext, version, payload[raw_len(kind, ext, version)] },
        6 => VoteFlood { count, seed },
    }
}

layout! {
    Op {
        0 => Connect { slot, addr, port, flags },
        1 => Bytes { slot, bytes },
        2 => Frame { slot, split, frame },
        3 => Verify { pick, ok },
        4 => VerifyAll { bits },
        5 => Tick { step, flags },
        6 => Close { slot, flags },
        7 => CmdSend { pick, bytes },
        8 => CmdClose { pick, reason },
        9 => CmdDial { addr, port },
        10 => DialFailed { addr, port },
        11 => Establish { slot, addr, port, flags, node },
    }
}

impl Script {
    /// Reads a script from any bytes (missing bytes read as zero).
    pub fn decode(data: &[u8]) -> Script {
        let mut r = Reader { data };
        let config = r.u8();
        let mut ops = Vec::new();
        while !r.is_empty() && ops.len() < MAX_OPS {
            ops.push(Op::read(&mut r));
        }
        Script { config, ops }
    }

    /// The bytes that [`Script::decode`] reads back as this script (lengths above 255 are
    /// cut to 255).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.config];
        for op in &self.ops {
            op.write(&mut out);
        }
        out
    }
}

/// The payload length of a [`Frame::Raw`]: what its header computes.
fn raw_len(kind: &u8, ext: &u16, version: &u8) -> usize {
    raw_header(*kind, *ext, *version).payload_len()
}

pub(super) fn raw_header(kind: u8, ext: u16, version: u8) -> Header {
    let t = MessageType::ALL[usize::from(kind) % MessageType::ALL.len()];
    let mut h = Header::new(NETWORK, t, Extensions(ext));
    h.version_using = version.max(0x14);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_round_trip() {
        let script = Script {
            config: 5,
            ops: vec![
                Op::Establish {
                    slot: 1,
                    addr: 5,
                    port: 2,
                    flags: 0,
                    node: 9,
                },
                Op::Frame {
                    slot: 1,
                    split: 3,
                    frame: Frame::Raw {
                        kind: 1,     // publish
                        ext: 0x0600, // state block: 216 bytes
                        version: 0x15,
                        payload: vec![7; 216],
                    },
                },
                Op::Bytes {
                    slot: 2,
                    bytes: vec![1, 2, 3],
                },
                Op::Tick { step: 9, flags: 1 },
            ],
        };
        assert_eq!(Script::decode(&script.encode()), script);
    }
}
