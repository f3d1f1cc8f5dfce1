//! A scripted driver for one [`ShardCore`], shared by the `shard` fuzz target
//! (`fuzz/fuzz_targets/shard.rs`) and the corpus replay in `tests/fuzz_corpus.rs`.
//!
//! A byte string is read as a [`Script`]: one configuration byte, then up to [`MAX_OPS`]
//! operations of an I/O loop on up to [`SLOTS`] connection slots: connects (inbound, outbound,
//! from a palette of IPv4, IPv6, v4-mapped, loopback, private and unspecified addresses),
//! arbitrary bytes, structurally valid frames for the dev network (handshake parts, keepalive,
//! confirm_ack, publish, telemetry_ack, any type with a valid header and arbitrary payload),
//! answers to the core's verify requests with input-chosen results (in any order, also for
//! closed connections and for ids never issued), ticks with input-chosen time steps, expiry
//! of the loop deadlines the core asked for, crawler commands and closes. A slot reused after
//! a close gets a new [`ConnId`] (slot index plus generation, as the io_uring loop names its
//! connections); [`Options::reuse_ids`] lets a connect reuse the slot's previous id instead.
//!
//! After every call into the core the driver checks what came out against a model of what
//! it has seen, and after every operation it checks the core's state; a violation panics with
//! the operation and the invariant (what a fuzzer looks for). The invariants:
//!
//! - every `IoAction` names a connection that is open (opened by the driver, not closed by
//!   the driver, not closed by an earlier `Close` of the core); nothing follows a `Close`;
//! - the core's own sends go to the connection being handled, are each one well-formed dev
//!   message, and only node_id_handshake before that connection's channel is up; a commanded
//!   send is passed on unchanged to the channel's connection; deadlines are not in the past;
//! - calls about closed or unknown connections, verify ids and channels produce nothing;
//!   a dial produces one `Dial` for the canonical endpoint, a failed dial one `DialFailed`;
//!   a tick produces only closes;
//! - every verify request id is fresh; a handshake signature check is asked at most once per
//!   connection and only before its channel; a connection never has more than
//!   [`MAX_INFLIGHT_PER_CONN`] checks outstanding; the core holds no more pending checks than
//!   the driver has not answered;
//! - a channel comes up only on a successful answer to that connection's handshake check,
//!   with the checked key as node id, the connection's remote endpoint and direction, never
//!   for our own node id, an excluded IP or a non-peer address; votes and telemetry only on a
//!   successful answer; each event names the channel of the connection being handled;
//! - a channel goes down exactly when its connection closes (in the same call), and the map,
//!   `channel_of`, `conn_of` and `Channel::is_alive` agree with that;
//! - `connections()` equals the connections open; channels per IP, per subnet and in all
//!   stay within the map's limits; `cookies()` ≤ the configured cap and ≤ the distinct remote
//!   endpoints of open connections;
//! - a `Timeout` close comes only from a tick, for a connection at least the handshake
//!   timeout old, and after a tick no connection without a channel is older than that.
//!
//! Running (from the repository root; a new corpus goes to the first directory):
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run shard -s none /tmp/shard fuzz/corpus/shard -- -max_total_time=120
//! ```
//!
//! `cargo test --test fuzz_corpus` replays `fuzz/corpus/shard`; the handwritten seeds
//! (`seed-*`) are built in that test, which also checks that each still reaches what it was
//! written for (`NANOPEER_WRITE_SEEDS=1` rewrites the files after a change of encoding).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::addr::{IpKey, SubnetKey, canonical, not_a_peer};
use super::config::ProtoConfig;
use super::events::{
    CloseReason, ConnId, CrawlerEvent, IoAction, ShardCommand, SignedMessage, VerifyRequest,
};
use super::exclusion::PeerExclusion;
use super::filter::DuplicateFilter;
use super::identity::NodeIdentity;
use super::repcrawler::QueryBoard;
use super::shard::{MAX_INFLIGHT_PER_CONN, Screening, ShardCore, ShardOutput, ShardShared};
use crate::channels::{Channel, ChannelId, ChannelLimits, ChannelMap, Direction};
use crate::crypto::{WorkThresholds, epoch_link, epoch_signer, genesis_hash};
use crate::types::{Amount, BlockHash, Cookie, Network, PublicKey, Signature};
use crate::wire::{
    Block, ChangeBlock, ConfirmAck, EMPTY_PEER, Extensions, HEADER_LEN, HandshakeResponse, Header,
    Keepalive, Message, MessageType, NodeIdHandshake, OpenBlock, Publish, ReceiveBlock, ResponseV2,
    SendBlock, StateBlock, TelemetryAck, TelemetryData, Vote, decode_message,
};

/// Most operations read from one input (the rest is ignored).
pub const MAX_OPS: usize = 512;
/// Connection slots.
pub const SLOTS: usize = 8;
/// Inbound connections open at once before the driver's table counts as full (so inputs
/// reach eviction with a few slots).
pub const INBOUND_CAP: usize = 5;
/// The network every frame is built for.
pub const NETWORK: Network = Network::Dev;
/// The shard id of the driven core.
pub const SHARD: u16 = 3;
/// Time of the first operation (ms).
pub const START_MS: u64 = 1_000;

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

/// How the driver names connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// [`Op::Connect`] with flag bit 1 reuses the slot's current id, open or closed. Off (the
    /// default, and what the io_uring loop does with its slot generations): every connection
    /// gets an id never used before.
    pub reuse_ids: bool,
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

const TAGS: u8 = 12;

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

impl Frame {
    fn decode(r: &mut Reader<'_>) -> Frame {
        match r.u8() % 7 {
            0 => Frame::Handshake {
                flags: r.u8(),
                node: r.u8(),
                seed: r.u8(),
            },
            1 => {
                let mut peers = [0u8; 16];
                for p in &mut peers {
                    *p = r.u8();
                }
                Frame::Keepalive { peers }
            }
            2 => Frame::ConfirmAck {
                account: r.u8(),
                count: r.u8(),
                flags: r.u8(),
                seed: r.u8(),
            },
            3 => Frame::Publish {
                kind: r.u8(),
                flags: r.u8(),
                seed: r.u8(),
            },
            4 => Frame::TelemetryAck {
                flags: r.u8(),
                extra: r.u8(),
                seed: r.u8(),
            },
            5 => {
                let kind = r.u8();
                let ext = r.u16();
                let version = r.u8();
                let len = raw_header(kind, ext, version).payload_len();
                Frame::Raw {
                    kind,
                    ext,
                    version,
                    payload: r.bytes(len),
                }
            }
            _ => Frame::VoteFlood {
                count: r.u8(),
                seed: r.u8(),
            },
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Handshake { flags, node, seed } => out.extend([0, *flags, *node, *seed]),
            Frame::Keepalive { peers } => {
                out.push(1);
                out.extend(peers);
            }
            Frame::ConfirmAck {
                account,
                count,
                flags,
                seed,
            } => out.extend([2, *account, *count, *flags, *seed]),
            Frame::Publish { kind, flags, seed } => out.extend([3, *kind, *flags, *seed]),
            Frame::TelemetryAck { flags, extra, seed } => out.extend([4, *flags, *extra, *seed]),
            Frame::Raw {
                kind,
                ext,
                version,
                payload,
            } => {
                out.extend([5, *kind]);
                out.extend(ext.to_le_bytes());
                out.push(*version);
                let len = raw_header(*kind, *ext, *version).payload_len();
                let mut p = payload.clone();
                p.resize(len, 0);
                out.extend(p);
            }
            Frame::VoteFlood { count, seed } => out.extend([6, *count, *seed]),
        }
    }
}

impl Script {
    /// Reads a script from any bytes (missing bytes read as zero).
    pub fn decode(data: &[u8]) -> Script {
        let mut r = Reader { data };
        let config = r.u8();
        let mut ops = Vec::new();
        while !r.is_empty() && ops.len() < MAX_OPS {
            let op = match r.u8() % TAGS {
                0 => Op::Connect {
                    slot: r.u8(),
                    addr: r.u8(),
                    port: r.u8(),
                    flags: r.u8(),
                },
                1 => {
                    let slot = r.u8();
                    let n = usize::from(r.u8());
                    Op::Bytes {
                        slot,
                        bytes: r.bytes(n),
                    }
                }
                2 => Op::Frame {
                    slot: r.u8(),
                    split: r.u8(),
                    frame: Frame::decode(&mut r),
                },
                3 => Op::Verify {
                    pick: r.u8(),
                    ok: r.u8(),
                },
                4 => Op::VerifyAll { bits: r.u8() },
                5 => Op::Tick {
                    step: r.u8(),
                    flags: r.u8(),
                },
                6 => Op::Close {
                    slot: r.u8(),
                    flags: r.u8(),
                },
                7 => {
                    let pick = r.u8();
                    let n = usize::from(r.u8());
                    Op::CmdSend {
                        pick,
                        bytes: r.bytes(n),
                    }
                }
                8 => Op::CmdClose {
                    pick: r.u8(),
                    reason: r.u8(),
                },
                9 => Op::CmdDial {
                    addr: r.u8(),
                    port: r.u8(),
                },
                10 => Op::DialFailed {
                    addr: r.u8(),
                    port: r.u8(),
                },
                _ => Op::Establish {
                    slot: r.u8(),
                    addr: r.u8(),
                    port: r.u8(),
                    flags: r.u8(),
                    node: r.u8(),
                },
            };
            ops.push(op);
        }
        Script { config, ops }
    }

    /// The bytes that [`Script::decode`] reads back as this script (lengths above 255 are
    /// cut to 255).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.config];
        for op in &self.ops {
            match op {
                Op::Connect {
                    slot,
                    addr,
                    port,
                    flags,
                } => out.extend([0, *slot, *addr, *port, *flags]),
                Op::Bytes { slot, bytes } => {
                    let n = bytes.len().min(255);
                    out.extend([1, *slot, n as u8]);
                    out.extend(&bytes[..n]);
                }
                Op::Frame { slot, split, frame } => {
                    out.extend([2, *slot, *split]);
                    frame.encode(&mut out);
                }
                Op::Verify { pick, ok } => out.extend([3, *pick, *ok]),
                Op::VerifyAll { bits } => out.extend([4, *bits]),
                Op::Tick { step, flags } => out.extend([5, *step, *flags]),
                Op::Close { slot, flags } => out.extend([6, *slot, *flags]),
                Op::CmdSend { pick, bytes } => {
                    let n = bytes.len().min(255);
                    out.extend([7, *pick, n as u8]);
                    out.extend(&bytes[..n]);
                }
                Op::CmdClose { pick, reason } => out.extend([8, *pick, *reason]),
                Op::CmdDial { addr, port } => out.extend([9, *addr, *port]),
                Op::DialFailed { addr, port } => out.extend([10, *addr, *port]),
                Op::Establish {
                    slot,
                    addr,
                    port,
                    flags,
                    node,
                } => out.extend([11, *slot, *addr, *port, *flags, *node]),
            }
        }
        out
    }
}

fn raw_header(kind: u8, ext: u16, version: u8) -> Header {
    let t = MessageType::ALL[usize::from(kind) % MessageType::ALL.len()];
    let mut h = Header::new(NETWORK, t, Extensions(ext));
    h.version_using = version.max(0x14);
    h
}

/// What a run reached (for tests that check a seed still goes where it was written to go).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Operations run.
    pub ops: usize,
    /// Connections opened.
    pub connects: u64,
    /// Channels that came up.
    pub channels_up: u64,
    /// Verify requests issued.
    pub verify_requests: u64,
    /// Verify requests answered (issued ids only).
    pub verified: u64,
    /// Most verify requests outstanding at once.
    pub max_outstanding: usize,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Closes the core asked for.
    pub core_closes: u64,
    /// Of those, handshake timeouts.
    pub timeouts: u64,
    /// Closes by the driver (peer close, deadline).
    pub loop_closes: u64,
    /// Keepalive events.
    pub keepalives: u64,
    /// Vote events.
    pub votes: u64,
    /// Block events.
    pub blocks: u64,
    /// Telemetry events.
    pub telemetry: u64,
    /// Genesis mismatch events.
    pub genesis_mismatches: u64,
    /// Commanded sends passed on.
    pub commanded_sends: u64,
    /// Dials asked of the loop.
    pub dials: u64,
    /// Accepted connections the core refused at its screen (limits, exclusion, full).
    pub screened_out: u64,
    /// Connections evicted to make room for a newcomer.
    pub evictions: u64,
}

/// Runs `data` as a [`Script`] with default [`Options`]; panics on a violated invariant.
pub fn check(data: &[u8]) -> Summary {
    run(&Script::decode(data), Options::default())
}

/// Runs a script; panics on a violated invariant.
pub fn run(script: &Script, options: Options) -> Summary {
    let mut d = Driver::new(script.config, options);
    for (i, op) in script.ops.iter().enumerate() {
        d.step = i;
        d.op = op;
        d.apply(op);
        d.check_state();
    }
    d.summary.ops = script.ops.len();
    d.summary
}

/// Our node identity, made once (key expansion is the costliest part of a run).
fn identity() -> Arc<NodeIdentity> {
    static ID: OnceLock<Arc<NodeIdentity>> = OnceLock::new();
    ID.get_or_init(|| Arc::new(NodeIdentity::from_private([0x5a; 32])))
        .clone()
}

/// One connection as the driver opened it.
struct Inc {
    id: ConnId,
    remote: SocketAddrV6,
    outbound: bool,
    opened_ms: u64,
    open: bool,
    deadline_ms: Option<u64>,
    /// The node id of the last handshake response we sent on it.
    node_id: Option<PublicKey>,
    handshake_checked: bool,
    outstanding: usize,
    channel: Option<Arc<Channel>>,
    channel_down: bool,
}

#[derive(Clone, Copy)]
struct Req {
    inc: usize,
    handshake: bool,
    key: PublicKey,
}

/// The call being checked.
#[derive(Clone)]
enum Call {
    Connect { inc: usize, replaced: Option<usize> },
    Bytes { inc: Option<usize> },
    Verified { req: Option<Req>, ok: bool },
    Closed { inc: Option<usize> },
    Tick,
    CmdSend { inc: Option<usize>, bytes: Vec<u8> },
    CmdClose { inc: Option<usize> },
    CmdDial { endpoint: SocketAddrV6 },
    DialFailed { endpoint: SocketAddrV6 },
}

struct Driver<'s> {
    core: ShardCore,
    shared: ShardShared,
    rng: ChaCha8Rng,
    options: Options,
    now: u64,
    own: PublicKey,
    genesis: BlockHash,
    incs: Vec<Inc>,
    /// The connection id of each slot's latest connection, and the one before.
    slots: [(Option<ConnId>, Option<ConnId>); SLOTS],
    generation: [u32; SLOTS],
    open_ids: HashMap<ConnId, usize>,
    outstanding: BTreeMap<u64, Req>,
    max_id: u64,
    channels: Vec<ChannelId>,
    channel_inc: HashMap<ChannelId, usize>,
    pending_dials: HashSet<SocketAddrV6>,
    step: usize,
    op: &'s Op,
    summary: Summary,
}

macro_rules! inv {
    ($d:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            panic!(
                "shard invariant violated at op #{} {} (t={} ms): {}",
                $d.step,
                op_text($d.op),
                $d.now,
                format!($($fmt)+)
            );
        }
    };
}

/// An operation for a panic message, cut to 200 characters.
fn op_text(op: &Op) -> String {
    let mut s = format!("{op:?}");
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

static NOOP: Op = Op::VerifyAll { bits: 0 };

impl<'s> Driver<'s> {
    fn new(config: u8, options: Options) -> Driver<'s> {
        let mut proto = ProtoConfig::for_network(NETWORK);
        proto.query_on_up = config & 1 == 0;
        if config & 2 != 0 {
            proto.max_cookies = 2;
            proto.max_cookies_per_ip = 1;
        }
        if config & 8 != 0 {
            proto.allow_local_peers = false;
        }
        let mut limits = ChannelLimits::for_network(NETWORK);
        if config & 4 != 0 {
            limits.max_peers_per_ip = 2;
            limits.max_peers_per_subnetwork = 3;
            limits.max_channels = 3;
            limits.max_outbound = 3;
        }
        let identity = identity();
        let shared = ShardShared {
            channels: Arc::new(ChannelMap::with_hash_seed(limits, 7)),
            filter: Arc::new(DuplicateFilter::new(1 << 10, [9; 16], 60_000)),
            config: Arc::new(proto),
            identity: identity.clone(),
            exclusion: Arc::new(Mutex::new(PeerExclusion::new())),
            query_board: Arc::new(QueryBoard::new(NETWORK)),
        };
        Driver {
            core: ShardCore::new(SHARD, shared.clone()),
            shared,
            rng: ChaCha8Rng::seed_from_u64(u64::from(config)),
            options,
            now: START_MS,
            own: identity.node_id(),
            genesis: genesis_hash(NETWORK),
            incs: Vec::new(),
            slots: [(None, None); SLOTS],
            generation: [0; SLOTS],
            open_ids: HashMap::new(),
            outstanding: BTreeMap::new(),
            max_id: 0,
            channels: Vec::new(),
            channel_inc: HashMap::new(),
            pending_dials: HashSet::new(),
            step: 0,
            op: &NOOP,
            summary: Summary::default(),
        }
    }

    fn slot_id(&self, slot: u8) -> Option<ConnId> {
        self.slots[usize::from(slot) % SLOTS].0
    }

    fn open_inc(&self, id: Option<ConnId>) -> Option<usize> {
        id.and_then(|id| self.open_ids.get(&id).copied())
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Connect {
                slot,
                addr,
                port,
                flags,
            } => {
                self.connect(
                    *slot,
                    endpoint(*addr, *port),
                    flags & 1 != 0,
                    flags & 2 != 0,
                );
            }
            Op::Bytes { slot, bytes } => self.bytes(self.slot_id(*slot), bytes),
            Op::Frame { slot, split, frame } => {
                let id = self.slot_id(*slot);
                let bytes = self.build(id, frame);
                if *split == 0 {
                    self.bytes(id, &bytes);
                } else {
                    for piece in bytes.chunks(usize::from(*split)) {
                        self.bytes(id, piece);
                    }
                }
            }
            Op::Verify { pick, ok } => {
                let id = if *pick == 255 || self.outstanding.is_empty() {
                    self.max_id + 1 + u64::from(*ok >> 1)
                } else {
                    let i = usize::from(*pick) % self.outstanding.len();
                    *self.outstanding.keys().nth(i).expect("in range")
                };
                self.verify(id, ok & 1 != 0);
            }
            Op::VerifyAll { bits } => {
                let ids: Vec<u64> = self.outstanding.keys().copied().collect();
                for (i, id) in ids.into_iter().enumerate() {
                    self.verify(id, bits >> (i % 8) & 1 != 0);
                }
            }
            Op::Tick { step, flags } => {
                self.now += TICK_STEPS_MS[usize::from(step % 16)];
                if flags & 1 != 0 {
                    self.expire_deadlines();
                }
                if flags & 2 == 0 {
                    self.tick();
                }
            }
            Op::Close { slot, flags } => {
                let s = usize::from(*slot) % SLOTS;
                let id = if flags & 1 != 0 {
                    self.slots[s].1
                } else {
                    self.slots[s].0
                };
                if let Some(id) = id {
                    self.closed(id);
                }
            }
            Op::CmdSend { pick, bytes } => {
                let channel = self.pick_channel(*pick);
                let inc = self.channel_target(channel);
                let bytes: Arc<[u8]> = bytes.as_slice().into();
                let command = ShardCommand::Send {
                    channel,
                    bytes: bytes.clone(),
                };
                let call = Call::CmdSend {
                    inc,
                    bytes: bytes.to_vec(),
                };
                self.call(call, |core, rng, now, out| {
                    core.on_command(command, now, rng, out)
                });
            }
            Op::CmdClose { pick, reason } => {
                let channel = self.pick_channel(*pick);
                let inc = self.channel_target(channel);
                let reason = match reason % 3 {
                    0 => CloseReason::Requested,
                    1 => CloseReason::Purged,
                    _ => CloseReason::Excluded,
                };
                let command = ShardCommand::Close { channel, reason };
                self.call(Call::CmdClose { inc }, |core, rng, now, out| {
                    core.on_command(command, now, rng, out)
                });
            }
            Op::CmdDial { addr, port } => {
                let to = endpoint(*addr, *port);
                let endpoint = canonical(to);
                let command = ShardCommand::Dial { endpoint };
                self.call(Call::CmdDial { endpoint }, |core, rng, now, out| {
                    core.on_command(command, now, rng, out)
                });
            }
            Op::DialFailed { addr, port } => {
                let endpoint = canonical(endpoint(*addr, *port));
                self.pending_dials.remove(&endpoint);
                self.call(Call::DialFailed { endpoint }, |core, _, now, out| {
                    core.on_dial_failed(endpoint, now, out)
                });
            }
            Op::Establish {
                slot,
                addr,
                port,
                flags,
                node,
            } => self.establish(*slot, endpoint(*addr, *port), flags & 1 != 0, *node),
        }
    }

    /// A well-behaved peer: the handshake messages of its side, then the check passes.
    fn establish(&mut self, slot: u8, remote: SocketAddr, outbound: bool, node: u8) {
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
    fn build(&mut self, id: Option<ConnId>, frame: &Frame) -> Vec<u8> {
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
                        SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, PORTS[usize::from(p % 4)], 0, 0)
                    } else {
                        canonical(endpoint(a, p))
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

    /// Runs one call into the core and checks its output.
    fn call(
        &mut self,
        call: Call,
        f: impl FnOnce(&mut ShardCore, &mut ChaCha8Rng, u64, &mut ShardOutput),
    ) {
        let mut out = ShardOutput::default();
        f(&mut self.core, &mut self.rng, self.now, &mut out);
        self.check_output(&call, &out);
    }

    fn connect(
        &mut self,
        slot: u8,
        remote: SocketAddr,
        outbound: bool,
        reuse: bool,
    ) -> Option<usize> {
        if !outbound && !self.screen(remote) {
            return None;
        }
        let s = usize::from(slot) % SLOTS;
        let current = self.slots[s].0;
        let id = match current {
            Some(id) if reuse && self.options.reuse_ids => id,
            _ => {
                self.generation[s] += 1;
                ConnId(u64::from(self.generation[s]) << 32 | s as u64)
            }
        };
        // A reused open id: the core forgets the old connection (no Close asked).
        let replaced = self.open_inc(Some(id));
        if let Some(old) = replaced {
            self.incs[old].open = false;
            self.open_ids.remove(&id);
            self.summary.loop_closes += 1;
        }
        if current != Some(id) {
            self.slots[s] = (Some(id), current);
        }
        let remote_c = canonical(remote);
        let outbound = self.pending_dials.remove(&remote_c) || outbound;
        let inc = self.incs.len();
        self.incs.push(Inc {
            id,
            remote: remote_c,
            outbound,
            opened_ms: self.now,
            open: true,
            deadline_ms: None,
            node_id: None,
            handshake_checked: false,
            outstanding: 0,
            channel: None,
            channel_down: false,
        });
        self.open_ids.insert(id, inc);
        self.summary.connects += 1;
        let flag = outbound;
        self.call(Call::Connect { inc, replaced }, |core, rng, now, out| {
            core.on_connected(id, remote, flag, now, rng, out)
        });
        self.incs[inc].open.then_some(inc)
    }

    /// The listener's screen of an accepted connection, as the io loop runs it: with more
    /// than [`INBOUND_CAP`] inbound connections open the table is full, and an eviction
    /// closes the victim (`on_closed`) before the newcomer is connected. False: refused.
    fn screen(&mut self, remote: SocketAddr) -> bool {
        let inbound: Vec<usize> = (0..self.incs.len())
            .filter(|&i| self.incs[i].open && !self.incs[i].outbound)
            .collect();
        let full = inbound.len() >= INBOUND_CAP;
        let verdict = self.core.screen_inbound(remote, full, self.now);
        match verdict {
            Screening::Accept => {
                inv!(self, !full, "accepted {remote} into a full table");
                true
            }
            Screening::Refuse => {
                self.summary.screened_out += 1;
                false
            }
            Screening::Evict(victim) => {
                inv!(
                    self,
                    full,
                    "evicted {victim:?} from a table that was not full"
                );
                let vi = self.open_inc(Some(victim));
                inv!(
                    self,
                    vi.is_some_and(|v| !self.incs[v].outbound),
                    "eviction victim {victim:?} is not an open inbound connection"
                );
                let unverified_left = inbound.iter().any(|&i| self.incs[i].channel.is_none());
                inv!(
                    self,
                    !unverified_left || vi.is_some_and(|v| self.incs[v].channel.is_none()),
                    "channel {victim:?} evicted while unverified connections are open"
                );
                self.summary.evictions += 1;
                self.closed(victim);
                true
            }
        }
    }

    fn bytes(&mut self, id: Option<ConnId>, bytes: &[u8]) {
        let Some(id) = id else {
            return;
        };
        let inc = self.open_inc(Some(id));
        self.call(Call::Bytes { inc }, |core, rng, now, out| {
            core.on_bytes(id, bytes, now, rng, out)
        });
    }

    fn verify(&mut self, id: u64, ok: bool) {
        let req = self.outstanding.remove(&id);
        if let Some(r) = req {
            self.incs[r.inc].outstanding -= 1;
            self.summary.verified += 1;
        }
        self.call(Call::Verified { req, ok }, |core, rng, now, out| {
            core.on_verified(id, ok, now, rng, out)
        });
    }

    fn closed(&mut self, id: ConnId) {
        let inc = self.open_inc(Some(id));
        if let Some(i) = inc {
            self.incs[i].open = false;
            self.open_ids.remove(&id);
            self.summary.loop_closes += 1;
        }
        self.call(Call::Closed { inc }, |core, _, now, out| {
            core.on_closed(id, now, out)
        });
    }

    fn tick(&mut self) {
        self.call(Call::Tick, |core, _, now, out| core.on_tick(now, out));
        let timeout = self.shared.config.handshake_timeout_ms;
        for inc in self.incs.iter().filter(|c| c.open && c.channel.is_none()) {
            inv!(
                self,
                inc.opened_ms + timeout > self.now,
                "{:?} opened at {} ms has no channel after a tick past its handshake timeout",
                inc.id,
                inc.opened_ms
            );
        }
    }

    /// The loop closes every connection whose latest deadline has passed.
    fn expire_deadlines(&mut self) {
        let due: Vec<ConnId> = self
            .incs
            .iter()
            .filter(|c| c.open && c.deadline_ms.is_some_and(|d| d <= self.now))
            .map(|c| c.id)
            .collect();
        for id in due {
            self.closed(id);
        }
    }

    fn pick_channel(&self, pick: u8) -> ChannelId {
        if pick == 255 || self.channels.is_empty() {
            ChannelId(u64::MAX - u64::from(pick))
        } else {
            self.channels[usize::from(pick) % self.channels.len()]
        }
    }

    fn channel_target(&self, channel: ChannelId) -> Option<usize> {
        self.channel_inc
            .get(&channel)
            .copied()
            .filter(|&i| self.incs[i].open)
    }

    fn check_output(&mut self, call: &Call, out: &ShardOutput) {
        // Calls about nothing the core knows produce nothing.
        let dead = match call {
            Call::Bytes { inc } | Call::Closed { inc } | Call::CmdClose { inc } => inc.is_none(),
            Call::CmdSend { inc, .. } => inc.is_none(),
            Call::Verified { req, .. } => req.is_none_or(|r| !self.incs[r.inc].open),
            _ => false,
        };
        inv!(
            self,
            !dead || out.is_empty(),
            "a call about a closed or unknown connection, id or channel produced {}",
            brief(out)
        );
        // The connection the call is about: requests, events and sends belong to it.
        let owner = match call {
            Call::Connect { inc, .. } => Some(*inc),
            Call::Bytes { inc } => *inc,
            Call::Verified { req, .. } => req.map(|r| r.inc),
            _ => None,
        };
        let owner_had_channel = owner.is_some_and(|i| self.incs[i].channel.is_some());
        let ok = matches!(call, Call::Verified { ok: true, .. });
        if let Call::Connect {
            replaced: Some(old),
            ..
        } = call
        {
            inv!(
                self,
                self.incs[*old].channel.is_none()
                    || out.events.iter().any(|e| matches!(e,
                        CrawlerEvent::ChannelDown(ch) if Some(ch.id()) == self.incs[*old].channel.as_ref().map(|c| c.id()))),
                "a connection replaced under its id kept its channel"
            );
        }
        for v in &out.verify {
            self.issued(owner, v);
        }
        let mut closed_now = Vec::new();
        for e in &out.events {
            self.event(call, owner, ok, e, &mut closed_now);
        }
        let mut dialed = 0;
        for a in &out.io {
            match a {
                IoAction::Send { conn, bytes } => {
                    let inc = self.open_ids.get(conn).copied();
                    inv!(
                        self,
                        inc.is_some(),
                        "Send to {conn:?}, which is not open (never opened, closed, or closed by the core)"
                    );
                    let inc = inc.expect("checked");
                    if let Call::CmdSend {
                        inc: target,
                        bytes: b,
                    } = call
                    {
                        inv!(
                            self,
                            Some(inc) == *target && b == bytes,
                            "a commanded send went to {conn:?} or changed its bytes"
                        );
                        self.summary.commanded_sends += 1;
                        continue;
                    }
                    inv!(
                        self,
                        Some(inc) == owner,
                        "the core sent on {conn:?}, not the connection it was handling"
                    );
                    let decoded = decode_message(bytes, NETWORK);
                    inv!(
                        self,
                        decoded.is_ok(),
                        "the core sent a malformed message {:?}: {decoded:?}",
                        hex::encode(bytes)
                    );
                    let (header, _) = decoded.expect("checked");
                    let has_channel = self.incs[inc].channel.is_some();
                    if header.message_type == MessageType::NodeIdHandshake {
                        inv!(
                            self,
                            !owner_had_channel,
                            "node_id_handshake sent on a realtime channel"
                        );
                    } else {
                        inv!(
                            self,
                            has_channel,
                            "{} sent before the handshake completed",
                            header.message_type
                        );
                    }
                }
                IoAction::Close { conn, reason } => {
                    let inc = self.open_ids.remove(conn);
                    inv!(self, inc.is_some(), "Close of {conn:?}, which is not open");
                    let inc = inc.expect("checked");
                    let c = &mut self.incs[inc];
                    c.open = false;
                    self.summary.core_closes += 1;
                    inv!(
                        self,
                        c.channel.is_none() || c.channel_down,
                        "{conn:?} closed without ChannelDown for its channel"
                    );
                    if *reason == CloseReason::Timeout {
                        self.summary.timeouts += 1;
                        let (opened, timeout) =
                            (c.opened_ms, self.shared.config.handshake_timeout_ms);
                        inv!(
                            self,
                            matches!(call, Call::Tick) && self.now >= opened + timeout,
                            "timeout close of {conn:?} opened at {opened} ms"
                        );
                    }
                }
                IoAction::Deadline { conn, at_ms } => {
                    let inc = self.open_ids.get(conn).copied();
                    inv!(
                        self,
                        inc.is_some() && inc == owner,
                        "Deadline for {conn:?}, which is not the open connection being handled"
                    );
                    inv!(self, *at_ms >= self.now, "deadline {at_ms} in the past");
                    self.incs[inc.expect("checked")].deadline_ms = Some(*at_ms);
                }
                IoAction::Dial { endpoint } => {
                    dialed += 1;
                    inv!(
                        self,
                        matches!(call, Call::CmdDial { endpoint: e } if e == endpoint),
                        "Dial of {endpoint} not asked for"
                    );
                    self.pending_dials.insert(*endpoint);
                    self.summary.dials += 1;
                }
            }
        }
        match call {
            Call::CmdDial { .. } => inv!(self, dialed == 1, "a dial command gave {dialed} dials"),
            Call::Tick => inv!(
                self,
                out.verify.is_empty()
                    && out.events.is_empty()
                    && out.io.iter().all(|a| matches!(a, IoAction::Close { .. })),
                "a tick produced more than closes: {}",
                brief(out)
            ),
            Call::DialFailed { .. } => inv!(
                self,
                out.io.is_empty() && out.verify.is_empty() && out.events.len() == 1,
                "a failed dial produced {}",
                brief(out)
            ),
            _ => {}
        }
        for inc in closed_now {
            inv!(
                self,
                !self.incs[inc].open,
                "{:?}: GenesisMismatch without a close",
                self.incs[inc].id
            );
        }
    }

    fn issued(&mut self, owner: Option<usize>, v: &VerifyRequest) {
        inv!(
            self,
            owner.is_some(),
            "verify request {} from a call about no connection",
            v.id
        );
        let inc = owner.expect("checked");
        inv!(
            self,
            !self.outstanding.contains_key(&v.id),
            "verify id {} issued twice",
            v.id
        );
        let handshake = matches!(v.message, SignedMessage::Handshake(_));
        if handshake {
            let c = &self.incs[inc];
            inv!(
                self,
                c.channel.is_none() && !c.handshake_checked,
                "a second handshake check, or one on a realtime channel, for {:?}",
                c.id
            );
            self.incs[inc].handshake_checked = true;
        }
        self.incs[inc].outstanding += 1;
        self.outstanding.insert(
            v.id,
            Req {
                inc,
                handshake,
                key: v.key,
            },
        );
        self.max_id = self.max_id.max(v.id);
        self.summary.verify_requests += 1;
        self.summary.max_outstanding = self.summary.max_outstanding.max(self.outstanding.len());
    }

    fn event(
        &mut self,
        call: &Call,
        owner: Option<usize>,
        ok: bool,
        e: &CrawlerEvent,
        closed_now: &mut Vec<usize>,
    ) {
        let owner_channel = owner.and_then(|i| {
            let c = &self.incs[i];
            c.channel
                .as_ref()
                .filter(|_| !c.channel_down)
                .map(|ch| ch.id())
        });
        let verified = matches!(call, Call::Verified { .. });
        match e {
            CrawlerEvent::ChannelUp(ch, _) => {
                let req = match call {
                    Call::Verified {
                        req: Some(r),
                        ok: true,
                    } if r.handshake => Some(*r),
                    _ => None,
                };
                inv!(
                    self,
                    req.is_some(),
                    "ChannelUp {:?} without a successful handshake check",
                    ch.id()
                );
                let r = req.expect("checked");
                let c = &self.incs[r.inc];
                inv!(self, c.channel.is_none(), "second channel on {:?}", c.id);
                inv!(
                    self,
                    *ch.node_id() == r.key && r.key != self.own,
                    "channel node id {:?} is not the checked key, or is ours",
                    ch.node_id()
                );
                inv!(
                    self,
                    ch.remote() == c.remote && ch.shard() == SHARD,
                    "channel remote {} / shard {} for a connection from {}",
                    ch.remote(),
                    ch.shard(),
                    c.remote
                );
                let direction = if c.outbound {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                inv!(
                    self,
                    ch.direction() == direction,
                    "channel direction {:?}, connection outbound: {}",
                    ch.direction(),
                    c.outbound
                );
                let config = &self.shared.config;
                let own_ep = SocketAddrV6::new(Ipv6Addr::LOCALHOST, config.listen_port, 0, 0);
                inv!(
                    self,
                    !not_a_peer(c.remote, config.allow_local_peers, own_ep),
                    "channel to {}, which is not a peer",
                    c.remote
                );
                inv!(
                    self,
                    !self.shared.exclusion.lock().check(*c.remote.ip(), self.now),
                    "channel to excluded {}",
                    c.remote
                );
                inv!(
                    self,
                    !self.channel_inc.contains_key(&ch.id()),
                    "channel id {:?} reused",
                    ch.id()
                );
                self.channels.push(ch.id());
                self.channel_inc.insert(ch.id(), r.inc);
                self.incs[r.inc].channel = Some(ch.clone());
                self.summary.channels_up += 1;
            }
            CrawlerEvent::ChannelDown(ch) => {
                let inc = self.channel_inc.get(&ch.id()).copied();
                inv!(
                    self,
                    inc.is_some_and(|i| !self.incs[i].channel_down),
                    "ChannelDown for {:?}, which is not up",
                    ch.id()
                );
                self.incs[inc.expect("checked")].channel_down = true;
            }
            CrawlerEvent::Keepalive { channel, .. } => {
                inv!(
                    self,
                    Some(*channel) == owner_channel && (!verified || ok),
                    "Keepalive event for {channel:?}, not the handled connection's channel"
                );
                self.summary.keepalives += 1;
            }
            CrawlerEvent::Block { channel, .. } => {
                inv!(
                    self,
                    Some(*channel) == owner_channel && (!verified || ok),
                    "Block event for {channel:?}: not the handled channel, or after a failed check"
                );
                self.summary.blocks += 1;
            }
            CrawlerEvent::Vote {
                channel, hashes, ..
            } => {
                let non_hs =
                    matches!(call, Call::Verified { req: Some(r), ok: true } if !r.handshake);
                inv!(
                    self,
                    Some(*channel) == owner_channel && non_hs && hashes.len() <= 255,
                    "Vote event for {channel:?} without a successful vote check of that channel"
                );
                self.summary.votes += 1;
            }
            CrawlerEvent::Telemetry { channel, data } => {
                let node_id =
                    owner.and_then(|i| self.incs[i].channel.as_ref().map(|c| *c.node_id()));
                inv!(
                    self,
                    Some(*channel) == owner_channel
                        && verified
                        && ok
                        && Some(data.node_id) == node_id,
                    "Telemetry event for {channel:?} without a successful check of that channel's node"
                );
                self.summary.telemetry += 1;
            }
            CrawlerEvent::GenesisMismatch { channel } => {
                inv!(
                    self,
                    Some(channel.id()) == owner_channel && verified && ok,
                    "GenesisMismatch for {:?}, not the checked channel",
                    channel.id()
                );
                // What the crawler does with it: exclude the IP.
                self.shared
                    .exclusion
                    .lock()
                    .add(*channel.remote().ip(), self.now);
                closed_now.extend(owner);
                self.summary.genesis_mismatches += 1;
            }
            CrawlerEvent::Replaced(ch) => {
                // A channel of this shard that loses its place is closed here, in the same
                // call; only another shard's channel is handed to the crawler.
                inv!(
                    self,
                    ch.shard() != SHARD,
                    "Replaced event for channel {:?} of this shard",
                    ch.id()
                );
            }
            CrawlerEvent::DialFailed { endpoint } => {
                inv!(
                    self,
                    matches!(call, Call::DialFailed { endpoint: e } if e == endpoint),
                    "DialFailed for {endpoint} not reported by the loop"
                );
            }
        }
    }

    /// The core's state against the model, after every operation.
    fn check_state(&mut self) {
        let open: Vec<&Inc> = self.incs.iter().filter(|c| c.open).collect();
        self.summary.max_connections = self.summary.max_connections.max(open.len());
        inv!(
            self,
            self.core.connections() == open.len(),
            "connections() = {}, open = {}",
            self.core.connections(),
            open.len()
        );
        inv!(
            self,
            self.core.pending_verifications() <= self.outstanding.len(),
            "{} pending verifications, {} unanswered",
            self.core.pending_verifications(),
            self.outstanding.len()
        );
        let map = &self.shared.channels;
        let mut with_channel = 0;
        let mut per_ip: HashMap<IpKey, usize> = HashMap::new();
        let mut per_subnet: HashMap<SubnetKey, usize> = HashMap::new();
        for c in &self.incs {
            let core_ch = self.core.channel_of(c.id).map(|ch| ch.id());
            if c.open {
                inv!(
                    self,
                    c.outstanding <= MAX_INFLIGHT_PER_CONN as usize,
                    "{:?} has {} checks outstanding",
                    c.id,
                    c.outstanding
                );
                let mine = c.channel.as_ref().map(|ch| ch.id());
                inv!(
                    self,
                    core_ch == mine && !c.channel_down,
                    "channel_of({:?}) = {core_ch:?}, expected {mine:?}",
                    c.id
                );
                if let Some(ch) = &c.channel {
                    with_channel += 1;
                    *per_ip.entry(IpKey::of(*c.remote.ip())).or_default() += 1;
                    *per_subnet.entry(SubnetKey::of(*c.remote.ip())).or_default() += 1;
                    inv!(
                        self,
                        self.core.conn_of(ch.id()) == Some(c.id)
                            && map.get(&c.remote).map(|m| m.id()) == Some(ch.id())
                            && ch.is_alive(),
                        "open channel {:?} of {:?} missing from conn_of or the map, or not alive",
                        ch.id(),
                        c.id
                    );
                }
            } else if let Some(ch) = &c.channel {
                inv!(
                    self,
                    c.channel_down
                        && self.core.conn_of(ch.id()).is_none()
                        && map.get(&c.remote).map(|m| m.id()) != Some(ch.id())
                        && !ch.is_alive(),
                    "channel {:?} of closed {:?} is still up somewhere",
                    ch.id(),
                    c.id
                );
            }
        }
        inv!(
            self,
            map.len() == with_channel,
            "the map has {} channels, open connections {with_channel}",
            map.len()
        );
        let limits = map.limits();
        inv!(
            self,
            map.inbound_len() + map.outbound_len() == with_channel,
            "inbound {} + outbound {} channels, open connections with a channel {with_channel}",
            map.inbound_len(),
            map.outbound_len()
        );
        inv!(
            self,
            map.inbound_len() <= limits.max_channels
                && map.outbound_len() <= limits.max_outbound
                && per_ip.values().all(|&n| n <= limits.max_peers_per_ip)
                && per_subnet
                    .values()
                    .all(|&n| n <= limits.max_peers_per_subnetwork),
            "channel limits exceeded: {with_channel} channels, per IP {per_ip:?}, per subnet {per_subnet:?}"
        );
        let endpoints: HashSet<SocketAddrV6> = open.iter().map(|c| c.remote).collect();
        let cookies = self.core.cookies();
        inv!(
            self,
            cookies <= self.shared.config.max_cookies && cookies <= endpoints.len(),
            "{cookies} cookies for {} open endpoints (cap {})",
            endpoints.len(),
            self.shared.config.max_cookies
        );
    }
}

/// A one-line account of an output (message types, not bytes).
fn brief(out: &ShardOutput) -> String {
    let io = out.io.iter().map(|a| match a {
        IoAction::Send { conn, bytes } => {
            let t = bytes
                .get(..HEADER_LEN)
                .and_then(|h| MessageType::from_u8(h[5]))
                .map_or("?", MessageType::name);
            format!("Send({}, {t}, {} B)", conn.0, bytes.len())
        }
        IoAction::Close { conn, reason } => format!("Close({}, {reason:?})", conn.0),
        IoAction::Deadline { conn, at_ms } => format!("Deadline({}, {at_ms})", conn.0),
        IoAction::Dial { endpoint } => format!("Dial({endpoint})"),
    });
    let events = out.events.iter().map(|e| match e {
        CrawlerEvent::ChannelUp(ch, _) => format!("ChannelUp({})", ch.id().0),
        CrawlerEvent::ChannelDown(ch) => format!("ChannelDown({})", ch.id().0),
        CrawlerEvent::Keepalive { channel, .. } => format!("Keepalive({})", channel.0),
        CrawlerEvent::Vote { channel, .. } => format!("Vote({})", channel.0),
        CrawlerEvent::Block { channel, .. } => format!("Block({})", channel.0),
        CrawlerEvent::Telemetry { channel, .. } => format!("Telemetry({})", channel.0),
        CrawlerEvent::GenesisMismatch { channel } => format!("GenesisMismatch({})", channel.id().0),
        CrawlerEvent::DialFailed { endpoint } => format!("DialFailed({endpoint})"),
        CrawlerEvent::Replaced(ch) => format!("Replaced({})", ch.id().0),
    });
    let verify = out.verify.iter().map(|v| format!("Verify({})", v.id));
    let all: Vec<String> = io.chain(events).chain(verify).collect();
    format!("[{}]", all.join(", "))
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

    #[test]
    fn solved_work_passes_the_entry_check() {
        let t = WorkThresholds::for_network(NETWORK);
        for kind in 0..5 {
            assert!(t.validate_entry(&publish(kind, 1, 42).block), "kind {kind}");
        }
    }

    #[test]
    fn an_established_channel_carries_votes() {
        let script = Script {
            config: 0,
            ops: vec![
                Op::Establish {
                    slot: 0,
                    addr: 5,
                    port: 2,
                    flags: 0,
                    node: 9,
                },
                Op::Frame {
                    slot: 0,
                    split: 0,
                    frame: Frame::ConfirmAck {
                        account: 3,
                        count: 2,
                        flags: 0,
                        seed: 1,
                    },
                },
                Op::VerifyAll { bits: 0xff },
            ],
        };
        let s = run(&script, Options::default());
        assert_eq!((s.channels_up, s.votes), (1, 1), "{s:?}");
    }

    #[test]
    #[should_panic(expected = "shard invariant violated")]
    fn a_violation_panics() {
        let mut d = Driver::new(0, Options::default());
        // Pretend the driver opened a connection the core never heard of.
        d.incs.push(Inc {
            id: ConnId(99),
            remote: canonical(endpoint(5, 2)),
            outbound: false,
            opened_ms: 0,
            open: true,
            deadline_ms: None,
            node_id: None,
            handshake_checked: false,
            outstanding: 0,
            channel: None,
            channel_down: false,
        });
        d.check_state();
    }
}
