//! The driver's world: the I/O loop around the core (connection slots and their ids, the
//! listener's screen, verify answers, time and deadlines, crawler commands) and the model of
//! what that loop has opened, asked and been told, which the invariants check the core
//! against.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::script::{NETWORK, Op, SLOTS, TICK_STEPS_MS, endpoint};
use crate::channels::{Channel, ChannelId, ChannelLimits, ChannelMap};
use crate::crypto::genesis_hash;
use crate::endpoint::Endpoint;
use crate::proto::config::ProtoConfig;
use crate::proto::events::{CloseReason, ConnId, ShardCommand};
use crate::proto::exclusion::PeerExclusion;
use crate::proto::filter::DuplicateFilter;
use crate::proto::identity::NodeIdentity;
use crate::proto::repcrawler::QueryBoard;
use crate::proto::shard::{Screening, ShardCore, ShardOutput, ShardShared};
use crate::types::{BlockHash, PublicKey};

/// Inbound connections open at once before the driver's table counts as full (so inputs
/// reach eviction with a few slots).
pub const INBOUND_CAP: usize = 5;
/// The shard id of the driven core.
pub const SHARD: u16 = 3;
/// Time of the first operation (ms).
pub const START_MS: u64 = 1_000;

/// How the driver names connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// [`Op::Connect`] with flag bit 1 reuses the slot's current id, open or closed. Off (the
    /// default, and what the io_uring loop does with its slot generations): every connection
    /// gets an id never used before.
    pub reuse_ids: bool,
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

/// Our node identity, made once (key expansion is the costliest part of a run).
fn identity() -> Arc<NodeIdentity> {
    static ID: OnceLock<Arc<NodeIdentity>> = OnceLock::new();
    ID.get_or_init(|| Arc::new(NodeIdentity::from_private([0x5a; 32])))
        .clone()
}

/// One connection as the driver opened it.
pub(super) struct Inc {
    pub(super) id: ConnId,
    pub(super) remote: Endpoint,
    pub(super) outbound: bool,
    pub(super) opened_ms: u64,
    pub(super) open: bool,
    pub(super) deadline_ms: Option<u64>,
    /// The node id of the last handshake response we sent on it.
    pub(super) node_id: Option<PublicKey>,
    pub(super) handshake_checked: bool,
    pub(super) outstanding: usize,
    pub(super) channel: Option<Arc<Channel>>,
    pub(super) channel_down: bool,
}

/// One verify request the core issued and the driver has not answered yet.
#[derive(Clone, Copy)]
pub(super) struct Req {
    pub(super) inc: usize,
    pub(super) handshake: bool,
    pub(super) key: PublicKey,
}

/// The call being checked.
#[derive(Clone)]
pub(super) enum Call {
    Connect { inc: usize, replaced: Option<usize> },
    Bytes { inc: Option<usize> },
    Verified { req: Option<Req>, ok: bool },
    Closed { inc: Option<usize> },
    Tick,
    CmdSend { inc: Option<usize>, bytes: Vec<u8> },
    CmdClose { inc: Option<usize> },
    CmdDial { endpoint: Endpoint },
    DialFailed { endpoint: Endpoint },
}

/// The core under test, its shared state, the loop's model of the connections and checks,
/// and what the run has reached so far.
pub(super) struct Driver<'s> {
    pub(super) core: ShardCore,
    pub(super) shared: ShardShared,
    pub(super) rng: ChaCha8Rng,
    pub(super) options: Options,
    pub(super) now: u64,
    pub(super) own: PublicKey,
    pub(super) genesis: BlockHash,
    pub(super) incs: Vec<Inc>,
    /// The connection id of each slot's latest connection, and the one before.
    pub(super) slots: [(Option<ConnId>, Option<ConnId>); SLOTS],
    pub(super) generation: [u32; SLOTS],
    pub(super) open_ids: HashMap<ConnId, usize>,
    pub(super) outstanding: BTreeMap<u64, Req>,
    pub(super) max_id: u64,
    pub(super) channels: Vec<ChannelId>,
    pub(super) channel_inc: HashMap<ChannelId, usize>,
    pub(super) pending_dials: HashSet<Endpoint>,
    pub(super) step: usize,
    pub(super) op: &'s Op,
    pub(super) summary: Summary,
}

static NOOP: Op = Op::VerifyAll { bits: 0 };

impl<'s> Driver<'s> {
    pub(super) fn new(config: u8, options: Options) -> Driver<'s> {
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
}

impl Driver<'_> {
    fn slot_id(&self, slot: u8) -> Option<ConnId> {
        self.slots[usize::from(slot) % SLOTS].0
    }

    pub(super) fn open_inc(&self, id: Option<ConnId>) -> Option<usize> {
        id.and_then(|id| self.open_ids.get(&id).copied())
    }

    pub(super) fn apply(&mut self, op: &Op) {
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
                let endpoint = Endpoint::from(to);
                let command = ShardCommand::Dial { endpoint };
                self.call(Call::CmdDial { endpoint }, |core, rng, now, out| {
                    core.on_command(command, now, rng, out)
                });
            }
            Op::DialFailed { addr, port } => {
                let endpoint = Endpoint::from(endpoint(*addr, *port));
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

    /// Runs one call into the core and checks its output.
    pub(super) fn call(
        &mut self,
        call: Call,
        f: impl FnOnce(&mut ShardCore, &mut ChaCha8Rng, u64, &mut ShardOutput),
    ) {
        let mut out = ShardOutput::default();
        f(&mut self.core, &mut self.rng, self.now, &mut out);
        self.check_output(&call, &out);
    }

    pub(super) fn connect(
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
        let remote_c = Endpoint::from(remote);
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
            core.on_connected(id, Endpoint::from(remote), flag, now, rng, out)
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
        let verdict = self
            .core
            .screen_inbound(Endpoint::from(remote), full, self.now);
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

    pub(super) fn bytes(&mut self, id: Option<ConnId>, bytes: &[u8]) {
        let Some(id) = id else {
            return;
        };
        let inc = self.open_inc(Some(id));
        self.call(Call::Bytes { inc }, |core, rng, now, out| {
            core.on_bytes(id, bytes, now, rng, out)
        });
    }

    pub(super) fn verify(&mut self, id: u64, ok: bool) {
        let req = self.outstanding.remove(&id);
        if let Some(r) = req {
            self.incs[r.inc].outstanding -= 1;
            self.summary.verified += 1;
        }
        self.call(Call::Verified { req, ok }, |core, rng, now, out| {
            core.on_verified(id, ok, now, rng, out)
        });
    }

    pub(super) fn closed(&mut self, id: ConnId) {
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
}
