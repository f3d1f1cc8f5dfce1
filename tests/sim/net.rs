//! A deterministic in-memory network of nanopeer nodes (quinn-proto / smoltcp style).
//!
//! Every node is one [`ShardCore`] + one [`CrawlerCore`] with its own channel map, duplicate
//! filter, exclusion list, identity and in-memory peer store. One seeded ChaCha8 RNG drives
//! everything (delays, losses, cookies, salts, sampling), the clock is virtual (ms), and all
//! pending work sits in one queue ordered by (time, sequence number). Nothing is iterated in
//! hash order, so a seed fixes the whole run.
//!
//! Network model (TCP-like):
//! - `Dial` to a listening endpoint → after a random delay both sides get `on_connected` (the
//!   dialer outbound with the endpoint, the listener inbound with the dialer's IP and an
//!   ephemeral port); `Dial` to nothing (or an injected dial failure) → `on_dial_failed`.
//! - `Send` → the peer's `on_bytes` after a random delay, FIFO per direction
//!   (deliver = max(last deliver on that direction, now + delay)); loss drops a whole `Send`.
//! - `Close` → the peer's `on_closed` (after the data already in flight); `Deadline` closes the
//!   connection on both sides unless a newer deadline replaced it.
//! - Verify requests are checked with `crypto::verify` and answered after `verify_delay_ms`
//!   (so frames can arrive while a handshake response is being verified).
//! - Crawler outputs: shard commands go to the node's shard core, `FlushPeers` to the store,
//!   `ResolvePreconfigured` back as `on_preconfigured_resolved(preconfigured)`.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;

use nanopeer::channels::{Channel, ChannelId, ChannelLimits, ChannelMap};
use nanopeer::crypto::{KeyPair, genesis_account, genesis_hash, verify, vote_hash};
use nanopeer::endpoint::{Endpoint, IpKey};
use nanopeer::proto::config::ProtoConfig;
use nanopeer::proto::crawler::{CrawlerCore, CrawlerSetup};
use nanopeer::proto::events::{
    ConnId, CrawlerEvent, CrawlerOutput, IoAction, NodeAction, ShardCommand,
};
use nanopeer::proto::exclusion::PeerExclusion;
use nanopeer::proto::filter::DuplicateFilter;
use nanopeer::proto::identity::NodeIdentity;
use nanopeer::proto::repcrawler::{QueryBoard, RepCrawlerConfig};
use nanopeer::proto::shard::{ShardCore, ShardOutput, ShardShared};
use nanopeer::proto::telemetry::telemetry_ack_bytes;
use nanopeer::proto::weights::RepWeights;
use nanopeer::types::{BlockHash, Network, PublicKey};
use nanopeer::wire::{
    Block, ConfirmAck, HEADER_LEN, Header, Message, MessageType, Publish, Vote, decode_message,
};
use parking_lot::Mutex;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The node index of hand-driven raw peers (scripted clients, not cores).
pub const RAW: usize = usize::MAX;

/// The network every simulated node is on.
pub const NET: Network = Network::Dev;

/// The dev genesis private key (the dev genesis account holds the whole supply).
pub const DEV_GENESIS_PRIVATE: &str =
    "34F0A37AAD20F4A260F0A5B3CB3D7FB50673212263E58A380BC10474BB039CE4";

/// The dev genesis key pair.
pub fn dev_genesis_key() -> KeyPair {
    let mut k = [0u8; 32];
    hex::decode_to_slice(DEV_GENESIS_PRIVATE, &mut k).unwrap();
    KeyPair::from_private(k)
}

/// `127.0.0.ip:port` as the canonical (v4-mapped) endpoint.
pub fn ep(ip: u8, port: u16) -> Endpoint {
    Endpoint::new(
        std::net::IpAddr::from(Ipv4Addr::new(127, 0, 0, ip).to_ipv6_mapped()),
        port,
    )
}

/// Network behaviour.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Smallest one-way delay of a send, connect or close (ms).
    pub min_delay_ms: u64,
    /// Largest one-way delay (ms).
    pub max_delay_ms: u64,
    /// Probability that a whole `Send` is lost.
    pub loss: f64,
    /// Probability that a dial to a listening endpoint fails anyway.
    pub dial_failure: f64,
    /// Time until a refused / failed dial is reported.
    pub dial_fail_delay_ms: u64,
    /// Delay of a signature check (the batch verifier's flush).
    pub verify_delay_ms: u64,
    /// Shard core tick period (cookie purge, handshake timeouts).
    pub shard_tick_ms: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            min_delay_ms: 1,
            max_delay_ms: 20,
            loss: 0.0,
            dial_failure: 0.0,
            dial_fail_delay_ms: 5,
            verify_delay_ms: 1,
            shard_tick_ms: 100,
        }
    }
}

/// How one node is built.
#[derive(Clone, Debug)]
pub struct NodeOpts {
    /// Last octet of its loopback address 127.0.0.x.
    pub ip: u8,
    /// Listening port (distinct per node: any loopback address on our own port counts as
    /// ourselves in `not_a_peer`, so nodes sharing port 44000 could not dial each other).
    pub port: u16,
    /// Node id private key.
    pub key: [u8; 32],
    /// Protocol settings (listen_port is overwritten with `port`).
    pub config: ProtoConfig,
    /// Channel map limits (max_peers_per_ip mirrored from `config`).
    pub limits: ChannelLimits,
    /// Answer to ResolvePreconfigured.
    pub preconfigured: Vec<Endpoint>,
    /// Peers from the peer store at start (most recent first).
    pub stored_peers: Vec<Endpoint>,
    /// Broadcast signed telemetry.
    pub telemetry: bool,
    /// Rep crawler override.
    pub rep_crawler: Option<RepCrawlerConfig>,
    /// Answer confirm_req(genesis) with a final vote signed by this key.
    pub voter: Option<[u8; 32]>,
    /// Answer the n-th confirm_req (any hash) with a vote for its hashes signed by the n-th of
    /// these keys, while they last: a peer voting with ever-new keys.
    pub sybil_keys: Vec<[u8; 32]>,
    /// Representative weights of the node; `None` = the network's defaults.
    pub weights: Option<RepWeights>,
}

impl NodeOpts {
    /// Node `i`: 127.0.0.(i+1), port 44000 + i, key derived from `i`, dev settings.
    pub fn new(i: usize) -> NodeOpts {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        key[31] = 0x5a;
        NodeOpts {
            ip: (i + 1) as u8,
            port: 44_000 + i as u16,
            key,
            config: ProtoConfig::for_network(NET),
            limits: ChannelLimits::for_network(NET),
            preconfigured: Vec::new(),
            stored_peers: Vec::new(),
            telemetry: false,
            rep_crawler: None,
            voter: None,
            sybil_keys: Vec::new(),
            weights: None,
        }
    }

    /// The listening endpoint.
    pub fn endpoint(&self) -> Endpoint {
        ep(self.ip, self.port)
    }

    /// Sets the per-IP limit in the config and the map.
    pub fn max_per_ip(mut self, n: usize) -> Self {
        self.config.max_peers_per_ip = n as u32;
        self.limits.max_peers_per_ip = n;
        self
    }
}

/// One simulated node.
pub struct Node {
    /// How it was built.
    pub opts: NodeOpts,
    /// Its shard core.
    pub shard: ShardCore,
    /// Its crawler core.
    pub crawler: CrawlerCore,
    /// What its shard shares (map, filter, identity…).
    pub shared: ShardShared,
    /// The in-memory peer store: endpoint → time written.
    pub store: BTreeMap<Endpoint, u64>,
    /// Online-weight samples saved.
    pub samples: Vec<u128>,
    /// False while stopped (refuses connections).
    pub up: bool,
    /// Incremented at each restart; stale events carry the old value.
    pub incarnation: u32,
    /// Publish messages this node queued for sending.
    pub publish_sends: u64,
    /// Messages this node queued for sending.
    pub sends: u64,
    /// confirm_acks injected by the voting responder (genesis voter or sybil keys).
    pub votes_sent: u64,
    /// Sybil keys used so far.
    pub sybil_used: usize,
    next_shard_tick: u64,
    last_crawler_tick: Option<u64>,
}

impl Node {
    /// The node id.
    pub fn node_id(&self) -> PublicKey {
        self.shared.identity.node_id()
    }

    /// The listening endpoint.
    pub fn endpoint(&self) -> Endpoint {
        self.opts.endpoint()
    }

    /// The channel map.
    pub fn channels(&self) -> &ChannelMap {
        &self.shared.channels
    }

    /// Alive channels, sorted by id.
    pub fn channel_list(&self) -> Vec<Arc<Channel>> {
        let mut v = self.shared.channels.snapshot();
        v.retain(|c| c.is_alive());
        v.sort_by_key(|c| c.id());
        v
    }

    /// The channel to the node with `id`, if any.
    pub fn channel_to(&self, id: &PublicKey) -> Option<Arc<Channel>> {
        self.shared.channels.find_node_id(id)
    }
}

/// What a send hook decides.
pub enum HookAction {
    /// Deliver these bytes (possibly rewritten).
    Deliver(Vec<u8>),
    /// Deliver these bytes after an extra delay (the rest of the stream waits behind them).
    Delay(u64, Vec<u8>),
    /// Lose the send.
    Drop,
}

/// Context of a send seen by a hook.
pub struct SendCtx<'a> {
    /// Sending node.
    pub from: usize,
    /// Receiving node.
    pub to: usize,
    /// Current time.
    pub now_ms: u64,
    /// Identities of all nodes (for re-signing).
    pub identities: &'a [Arc<NodeIdentity>],
}

/// A man in the middle: sees every send, may rewrite, delay or drop it.
pub type SendHook = Box<dyn FnMut(&SendCtx<'_>, Vec<u8>) -> HookAction>;

#[derive(Debug)]
struct Half {
    peer: (usize, u64),
    open: bool,
    /// Last delivery time of data sent on this half (towards the peer).
    last_deliver: u64,
    deadline: Option<u64>,
}

#[derive(Debug)]
enum Ev {
    Connect {
        dialer: usize,
        dialer_inc: u32,
        listener: usize,
        endpoint: Endpoint,
    },
    DialFailed {
        node: usize,
        inc: u32,
        endpoint: Endpoint,
    },
    Deliver {
        node: usize,
        conn: u64,
        bytes: Vec<u8>,
    },
    PeerClosed {
        node: usize,
        conn: u64,
    },
    Deadline {
        node: usize,
        conn: u64,
        at: u64,
    },
    Verified {
        node: usize,
        inc: u32,
        id: u64,
        ok: bool,
    },
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

enum Work {
    Shard(ShardOutput),
    Crawler(Vec<CrawlerOutput>),
}

/// Counters of the network itself.
#[derive(Debug, Default, Clone)]
pub struct NetStats {
    /// Sends delivered.
    pub delivered: u64,
    /// Sends lost (loss injection or hook).
    pub lost: u64,
    /// Dials that connected.
    pub connects: u64,
    /// Dials that failed.
    pub dial_failures: u64,
    /// Connections closed by an expired deadline.
    pub deadline_closes: u64,
    /// Steps run.
    pub steps: u64,
    /// Largest channels + attempts of one IP in one map, over every step.
    pub max_ip_usage: usize,
}

/// The simulated network.
pub struct SimNet {
    /// Current time (ms).
    pub now: u64,
    /// The one RNG.
    pub rng: ChaCha8Rng,
    /// Network behaviour.
    pub cfg: NetConfig,
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    /// Network counters.
    pub stats: NetStats,
    /// Optional man in the middle.
    pub hook: Option<SendHook>,
    /// Check per-IP usage of the touched node's map after every step.
    pub track_ip_usage: bool,
    /// Print connection closes and channel events (debugging).
    pub trace: bool,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    next_conn: u64,
    next_port: u16,
    halves: BTreeMap<(usize, u64), Half>,
    listeners: BTreeMap<Endpoint, usize>,
    digest: blake2b_simd::State,
    /// Bytes delivered to raw peers, by raw connection.
    pub raw_inbox: BTreeMap<u64, Vec<Vec<u8>>>,
}

fn first_type(bytes: &[u8]) -> Option<MessageType> {
    let head = bytes.first_chunk::<HEADER_LEN>()?;
    Header::decode(head, NET).ok().map(|h| h.message_type)
}

impl SimNet {
    /// An empty network with this seed.
    pub fn new(seed: u64, cfg: NetConfig) -> SimNet {
        SimNet {
            now: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            cfg,
            nodes: Vec::new(),
            stats: NetStats::default(),
            hook: None,
            track_ip_usage: false,
            trace: false,
            queue: BinaryHeap::new(),
            seq: 0,
            next_conn: 1,
            next_port: 50_000,
            halves: BTreeMap::new(),
            listeners: BTreeMap::new(),
            digest: blake2b_simd::Params::new().hash_length(32).to_state(),
            raw_inbox: BTreeMap::new(),
        }
    }

    /// Builds and starts a node now; returns its index.
    pub fn add_node(&mut self, opts: NodeOpts) -> usize {
        let i = self.nodes.len();
        let node = self.build(i, opts, 0);
        self.nodes.push(node);
        self.start(i);
        i
    }

    fn build(&mut self, i: usize, mut opts: NodeOpts, incarnation: u32) -> Node {
        opts.config.listen_port = opts.port;
        opts.limits.max_peers_per_ip = opts.config.max_peers_per_ip as usize;
        let identity = Arc::new(NodeIdentity::from_private(opts.key));
        let mut fkey = [0u8; 16];
        self.rng.fill_bytes(&mut fkey);
        let shared = ShardShared {
            channels: Arc::new(ChannelMap::with_hash_seed(opts.limits, self.rng.next_u64())),
            filter: Arc::new(DuplicateFilter::new(1 << 12, fkey, 60_000)),
            config: Arc::new(opts.config.clone()),
            identity: identity.clone(),
            exclusion: Arc::new(Mutex::new(PeerExclusion::new())),
            query_board: Arc::new(QueryBoard::new(NET)),
        };
        let mut setup = CrawlerSetup::new(
            opts.config.clone(),
            shared.channels.clone(),
            shared.exclusion.clone(),
            opts.weights
                .clone()
                .unwrap_or_else(|| RepWeights::defaults(NET)),
            1,
        );
        setup.stored_peers = opts.stored_peers.clone();
        setup.rep_crawler = opts.rep_crawler.clone();
        setup.query_board = shared.query_board.clone();
        if opts.telemetry {
            let start = self.now;
            let id = identity.clone();
            setup.telemetry = Some(Box::new(move |now, peers| {
                telemetry_ack_bytes(&id, NET, peers as u32, (now - start) / 1000, now)
            }));
        }
        let _ = i;
        Node {
            shard: ShardCore::new(0, shared.clone()),
            crawler: CrawlerCore::new(setup),
            shared,
            opts,
            store: BTreeMap::new(),
            samples: Vec::new(),
            up: true,
            incarnation,
            publish_sends: 0,
            sends: 0,
            votes_sent: 0,
            sybil_used: 0,
            next_shard_tick: self.now,
            last_crawler_tick: None,
        }
    }

    fn start(&mut self, i: usize) {
        self.listeners.insert(self.nodes[i].endpoint(), i);
        let mut out = Vec::new();
        let now = self.now;
        self.nodes[i].crawler.start(now, &mut self.rng, &mut out);
        self.nodes[i].last_crawler_tick = Some(now);
        self.run_work(i, Work::Crawler(out));
    }

    /// Stops node `i`: its connections close (the peers are told), it refuses dials.
    pub fn stop(&mut self, i: usize) {
        let mine: Vec<u64> = self
            .halves
            .range((i, 0)..=(i, u64::MAX))
            .map(|(k, _)| k.1)
            .collect();
        for conn in mine {
            if let Some(h) = self.halves.remove(&(i, conn))
                && h.open
            {
                self.close_peer(h.peer, h.last_deliver);
            }
        }
        self.listeners.remove(&self.nodes[i].endpoint());
        self.nodes[i].up = false;
    }

    /// Restarts node `i` as a new process: same identity and options, stored peers from its
    /// store (most recent first), no preconfigured peers, an empty channel map.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].up {
            self.stop(i);
        }
        let old = &self.nodes[i];
        let mut stored: Vec<(u64, Endpoint)> = old.store.iter().map(|(e, t)| (*t, *e)).collect();
        stored.sort_by(|a, b| b.cmp(a));
        let mut opts = old.opts.clone();
        opts.stored_peers = stored.into_iter().map(|(_, e)| e).collect();
        opts.preconfigured = Vec::new();
        let store = old.store.clone();
        let inc = old.incarnation + 1;
        let mut node = self.build(i, opts, inc);
        node.store = store;
        self.nodes[i] = node;
        self.start(i);
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn delay(&mut self) -> u64 {
        self.rng
            .random_range(self.cfg.min_delay_ms..=self.cfg.max_delay_ms)
    }

    fn record(&mut self, tag: &[u8], parts: &[&[u8]]) {
        self.digest.update(tag);
        self.digest.update(&self.now.to_le_bytes());
        for p in parts {
            self.digest.update(&(p.len() as u64).to_le_bytes());
            self.digest.update(p);
        }
    }

    /// A digest of everything delivered and every crawler event so far.
    pub fn transcript(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.digest.finalize().as_bytes());
        out
    }

    // ---- the step loop ----

    fn next_timer(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        for n in self.nodes.iter().filter(|n| n.up) {
            let c = n.crawler.next_wakeup_ms();
            let c = match n.last_crawler_tick {
                Some(last) if c <= last => last + 1,
                _ => c,
            };
            let s = c.min(n.next_shard_tick);
            t = Some(t.map_or(s, |x| x.min(s)));
        }
        t
    }

    /// Runs one event or one round of timers; false when nothing is left before `limit`.
    pub fn step(&mut self, limit: u64) -> bool {
        let q = self.queue.peek().map(|Reverse(q)| q.at);
        let timer = self.next_timer();
        let t = match (q, timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(x) => x,
                None => return false,
            },
        };
        if t > limit {
            return false;
        }
        self.now = self.now.max(t);
        self.stats.steps += 1;
        if q.is_some_and(|a| a <= t) {
            let Reverse(item) = self.queue.pop().expect("peeked");
            self.event(item.ev);
        } else {
            self.timers();
        }
        true
    }

    fn timers(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                continue;
            }
            if self.nodes[i].next_shard_tick <= now {
                let mut out = ShardOutput::default();
                self.nodes[i].shard.on_tick(now, &mut out);
                self.nodes[i].next_shard_tick = now + self.cfg.shard_tick_ms;
                self.run_work(i, Work::Shard(out));
            }
            let due = self.nodes[i].crawler.next_wakeup_ms() <= now
                && self.nodes[i].last_crawler_tick.is_none_or(|l| l < now);
            if due {
                let mut out = Vec::new();
                self.nodes[i].crawler.tick(now, &mut self.rng, &mut out);
                self.nodes[i].last_crawler_tick = Some(now);
                self.run_work(i, Work::Crawler(out));
            }
        }
    }

    /// Runs until `t` (inclusive); the clock ends at `t`.
    pub fn run_until(&mut self, t: u64) {
        while self.step(t) {}
        self.now = self.now.max(t);
    }

    /// Runs until `pred` holds (checked after every step) or `t`; returns the time it held.
    pub fn run_until_pred(&mut self, t: u64, mut pred: impl FnMut(&SimNet) -> bool) -> Option<u64> {
        if pred(self) {
            return Some(self.now);
        }
        while self.step(t) {
            if pred(self) {
                return Some(self.now);
            }
        }
        self.now = self.now.max(t);
        None
    }

    /// Runs for `ms` more.
    pub fn run_for(&mut self, ms: u64) {
        let t = self.now + ms;
        self.run_until(t);
    }

    fn event(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Connect {
                dialer,
                dialer_inc,
                listener,
                endpoint,
            } => {
                if self.nodes[dialer].incarnation != dialer_inc || !self.nodes[dialer].up {
                    return;
                }
                if !self.nodes[listener].up || self.listeners.get(&endpoint) != Some(&listener) {
                    self.stats.dial_failures += 1;
                    let mut out = ShardOutput::default();
                    self.nodes[dialer]
                        .shard
                        .on_dial_failed(endpoint, now, &mut out);
                    self.run_work(dialer, Work::Shard(out));
                    return;
                }
                self.stats.connects += 1;
                let (dc, lc) = (self.next_conn, self.next_conn + 1);
                self.next_conn += 2;
                self.halves.insert(
                    (dialer, dc),
                    Half {
                        peer: (listener, lc),
                        open: true,
                        last_deliver: now,
                        deadline: None,
                    },
                );
                self.halves.insert(
                    (listener, lc),
                    Half {
                        peer: (dialer, dc),
                        open: true,
                        last_deliver: now,
                        deadline: None,
                    },
                );
                self.next_port = self.next_port.checked_add(1).unwrap_or(50_000);
                let from = ep(self.nodes[dialer].opts.ip, self.next_port);
                self.record(b"C", &[&[dialer as u8, listener as u8], &dc.to_le_bytes()]);
                let mut out = ShardOutput::default();
                self.nodes[dialer].shard.on_connected(
                    ConnId(dc),
                    endpoint,
                    true,
                    now,
                    &mut self.rng,
                    &mut out,
                );
                self.run_work(dialer, Work::Shard(out));
                let mut out = ShardOutput::default();
                self.nodes[listener].shard.on_connected(
                    ConnId(lc),
                    from,
                    false,
                    now,
                    &mut self.rng,
                    &mut out,
                );
                self.run_work(listener, Work::Shard(out));
            }
            Ev::DialFailed {
                node,
                inc,
                endpoint,
            } => {
                if self.nodes[node].incarnation != inc || !self.nodes[node].up {
                    return;
                }
                self.stats.dial_failures += 1;
                let mut out = ShardOutput::default();
                self.nodes[node]
                    .shard
                    .on_dial_failed(endpoint, now, &mut out);
                self.run_work(node, Work::Shard(out));
            }
            Ev::Deliver { node, conn, bytes } => {
                if !self.halves.get(&(node, conn)).is_some_and(|h| h.open) {
                    return;
                }
                if node == RAW {
                    self.raw_inbox.entry(conn).or_default().push(bytes);
                    return;
                }
                self.stats.delivered += 1;
                self.record(b"D", &[&[node as u8], &conn.to_le_bytes(), &bytes]);
                let mut out = ShardOutput::default();
                self.nodes[node]
                    .shard
                    .on_bytes(ConnId(conn), &bytes, now, &mut self.rng, &mut out);
                self.run_work(node, Work::Shard(out));
                self.voter_reply(node, conn, &bytes);
            }
            Ev::PeerClosed { node, conn } => {
                if let Some(h) = self.halves.remove(&(node, conn))
                    && h.open
                    && node != RAW
                {
                    self.record(b"X", &[&[node as u8], &conn.to_le_bytes()]);
                    let mut out = ShardOutput::default();
                    self.nodes[node]
                        .shard
                        .on_closed(ConnId(conn), now, &mut out);
                    self.run_work(node, Work::Shard(out));
                }
            }
            Ev::Deadline { node, conn, at } => {
                let expired = self
                    .halves
                    .get(&(node, conn))
                    .is_some_and(|h| h.open && h.deadline == Some(at));
                if expired {
                    if self.trace {
                        eprintln!("{now} node {node} deadline closes {conn}");
                    }
                    self.stats.deadline_closes += 1;
                    let h = self.halves.remove(&(node, conn)).expect("checked");
                    self.close_peer(h.peer, h.last_deliver);
                    let mut out = ShardOutput::default();
                    self.nodes[node]
                        .shard
                        .on_closed(ConnId(conn), now, &mut out);
                    self.run_work(node, Work::Shard(out));
                }
            }
            Ev::Verified { node, inc, id, ok } => {
                if self.nodes[node].incarnation != inc || !self.nodes[node].up {
                    return;
                }
                let mut out = ShardOutput::default();
                self.nodes[node]
                    .shard
                    .on_verified(id, ok, now, &mut self.rng, &mut out);
                self.run_work(node, Work::Shard(out));
            }
        }
        if self.track_ip_usage {
            self.check_ip_usage();
        }
    }

    /// Largest channels + attempts of any node IP in any map right now.
    pub fn ip_usage_now(&self) -> usize {
        let ips: std::collections::BTreeSet<u8> = self.nodes.iter().map(|n| n.opts.ip).collect();
        let mut max = 0;
        for n in &self.nodes {
            for ip in &ips {
                let key = IpKey::of(*ep(*ip, 0).ip());
                max = max.max(n.channels().ip_usage(key).total());
            }
        }
        max
    }

    fn check_ip_usage(&mut self) {
        let u = self.ip_usage_now();
        self.stats.max_ip_usage = self.stats.max_ip_usage.max(u);
    }

    /// Tells the peer half its connection closed, after the data in flight.
    fn close_peer(&mut self, peer: (usize, u64), after: u64) {
        let d = self.delay();
        let at = after.max(self.now + d);
        self.push(
            at,
            Ev::PeerClosed {
                node: peer.0,
                conn: peer.1,
            },
        );
    }

    /// Queues raw bytes on node `from`'s half `conn` (as if its socket wrote them).
    pub fn transmit(&mut self, from: usize, conn: u64, bytes: Vec<u8>) {
        let Some(h) = self.halves.get(&(from, conn)) else {
            return;
        };
        if !h.open {
            return;
        }
        let peer = h.peer;
        if self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut extra = 0;
        let bytes = match self.hook.take() {
            Some(mut hook) => {
                let ids: Vec<Arc<NodeIdentity>> = self
                    .nodes
                    .iter()
                    .map(|n| n.shared.identity.clone())
                    .collect();
                let ctx = SendCtx {
                    from,
                    to: peer.0,
                    now_ms: self.now,
                    identities: &ids,
                };
                let act = hook(&ctx, bytes);
                self.hook = Some(hook);
                match act {
                    HookAction::Deliver(b) => b,
                    HookAction::Delay(ms, b) => {
                        extra = ms;
                        b
                    }
                    HookAction::Drop => {
                        self.stats.lost += 1;
                        return;
                    }
                }
            }
            None => bytes,
        };
        let d = self.delay();
        let h = self.halves.get_mut(&(from, conn)).expect("checked");
        let at = h.last_deliver.max(self.now + d + extra);
        h.last_deliver = at;
        self.push(
            at,
            Ev::Deliver {
                node: peer.0,
                conn: peer.1,
                bytes,
            },
        );
    }

    fn run_work(&mut self, i: usize, first: Work) {
        let mut work = VecDeque::from([first]);
        while let Some(w) = work.pop_front() {
            match w {
                Work::Shard(out) => self.shard_output(i, out, &mut work),
                Work::Crawler(out) => self.crawler_output(i, out, &mut work),
            }
        }
    }

    fn shard_output(&mut self, i: usize, out: ShardOutput, work: &mut VecDeque<Work>) {
        let now = self.now;
        for a in out.io {
            match a {
                IoAction::Send { conn, bytes } => {
                    let n = &mut self.nodes[i];
                    n.sends += 1;
                    if first_type(&bytes) == Some(MessageType::Publish) {
                        n.publish_sends += 1;
                    }
                    self.transmit(i, conn.0, bytes);
                }
                IoAction::Close { conn, reason } => {
                    if self.trace {
                        eprintln!("{now} node {i} closes {} ({reason:?})", conn.0);
                    }
                    if let Some(h) = self.halves.remove(&(i, conn.0))
                        && h.open
                    {
                        self.close_peer(h.peer, h.last_deliver);
                    }
                }
                IoAction::Dial { endpoint } => {
                    let inc = self.nodes[i].incarnation;
                    let target = self.listeners.get(&endpoint).copied();
                    let fail =
                        self.cfg.dial_failure > 0.0 && self.rng.random_bool(self.cfg.dial_failure);
                    match target {
                        Some(l) if !fail => {
                            let d = self.delay();
                            self.push(
                                now + d,
                                Ev::Connect {
                                    dialer: i,
                                    dialer_inc: inc,
                                    listener: l,
                                    endpoint,
                                },
                            );
                        }
                        _ => self.push(
                            now + self.cfg.dial_fail_delay_ms,
                            Ev::DialFailed {
                                node: i,
                                inc,
                                endpoint,
                            },
                        ),
                    }
                }
                IoAction::Deadline { conn, at_ms } => {
                    if let Some(h) = self.halves.get_mut(&(i, conn.0)) {
                        h.deadline = Some(at_ms);
                        self.push(
                            at_ms,
                            Ev::Deadline {
                                node: i,
                                conn: conn.0,
                                at: at_ms,
                            },
                        );
                    }
                }
            }
        }
        let inc = self.nodes[i].incarnation;
        for v in out.verify {
            let ok = verify(v.message.as_bytes(), &v.signature, &v.key);
            self.push(
                now + self.cfg.verify_delay_ms,
                Ev::Verified {
                    node: i,
                    inc,
                    id: v.id,
                    ok,
                },
            );
        }
        if !out.events.is_empty() {
            let mut cout = Vec::new();
            for e in out.events {
                let desc = format!("{e:?}");
                if self.trace
                    && let CrawlerEvent::ChannelUp(c, _) | CrawlerEvent::ChannelDown(c) = &e
                {
                    let up = matches!(e, CrawlerEvent::ChannelUp(..));
                    eprintln!(
                        "{now} node {i} channel {} {} remote {} conn {:?}",
                        c.id(),
                        if up { "up" } else { "down" },
                        c.remote(),
                        self.nodes[i].shard.conn_of(c.id())
                    );
                }
                self.record(b"E", &[&[i as u8], desc.as_bytes()]);
                self.nodes[i]
                    .crawler
                    .on_event(e, now, &mut self.rng, &mut cout);
            }
            work.push_back(Work::Crawler(cout));
        }
    }

    fn crawler_output(&mut self, i: usize, out: Vec<CrawlerOutput>, work: &mut VecDeque<Work>) {
        let now = self.now;
        for o in out {
            match o {
                CrawlerOutput::Shard { command, .. } => {
                    let mut sout = ShardOutput::default();
                    self.nodes[i]
                        .shard
                        .on_command(command, now, &mut self.rng, &mut sout);
                    work.push_back(Work::Shard(sout));
                }
                CrawlerOutput::Node(NodeAction::FlushPeers(peers)) => {
                    for p in peers {
                        self.nodes[i].store.insert(p, now);
                    }
                }
                CrawlerOutput::Node(NodeAction::SaveOnlineSample(w)) => {
                    self.nodes[i].samples.push(w);
                }
                CrawlerOutput::Node(NodeAction::ResolvePreconfigured) => {
                    let pre = self.nodes[i].opts.preconfigured.clone();
                    let mut cout = Vec::new();
                    self.nodes[i]
                        .crawler
                        .on_preconfigured_resolved(pre, now, &mut cout);
                    work.push_back(Work::Crawler(cout));
                }
            }
        }
    }

    // ---- harness-level peers and helpers ----

    /// The voting representative: a confirm_req(genesis) delivered to a voter node is answered
    /// on the same connection with a final vote for the genesis hash. A node with sybil keys
    /// answers any confirm_req with a vote for its hashes by its next unused key.
    fn voter_reply(&mut self, node: usize, conn: u64, bytes: &[u8]) {
        let Ok((_, Message::ConfirmReq(req))) = decode_message(bytes, NET) else {
            return;
        };
        let n = &mut self.nodes[node];
        if let Some(&key) = n.opts.sybil_keys.get(n.sybil_used) {
            n.sybil_used += 1;
            n.votes_sent += 1;
            let hashes = req.pairs.iter().map(|p| p.hash).collect();
            let bytes = signed_vote(&KeyPair::from_private(key), hashes, 1, false);
            self.transmit(node, conn, bytes);
            return;
        }
        let Some(key) = self.nodes[node].opts.voter else {
            return;
        };
        let genesis = genesis_hash(NET);
        if !req.pairs.iter().any(|p| p.hash == genesis) {
            return;
        }
        let key = KeyPair::from_private(key);
        let bytes = signed_vote(&key, vec![genesis], u64::MAX, false);
        self.nodes[node].votes_sent += 1;
        self.transmit(node, conn, bytes);
    }

    /// A scripted client at `127.0.0.ip:port` connects to node `to` now (no handshake is
    /// sent for it). Returns the raw connection: write with [`transmit`](Self::transmit)`(RAW,
    /// conn, …)`, read [`raw_inbox`](Self::raw_inbox).
    pub fn raw_connect(&mut self, ip: u8, port: u16, to: usize) -> u64 {
        let (rc, lc) = (self.next_conn, self.next_conn + 1);
        self.next_conn += 2;
        let now = self.now;
        for (me, peer) in [((RAW, rc), (to, lc)), ((to, lc), (RAW, rc))] {
            self.halves.insert(
                me,
                Half {
                    peer,
                    open: true,
                    last_deliver: now,
                    deadline: None,
                },
            );
        }
        let mut out = ShardOutput::default();
        self.nodes[to].shard.on_connected(
            ConnId(lc),
            ep(ip, port),
            false,
            now,
            &mut self.rng,
            &mut out,
        );
        self.run_work(to, Work::Shard(out));
        rc
    }

    /// True while the raw connection is open.
    pub fn raw_open(&self, conn: u64) -> bool {
        self.halves.get(&(RAW, conn)).is_some_and(|h| h.open)
    }

    /// Node `a`'s connection of its channel to node `b`, and `b`'s end of it.
    pub fn conn_between(&self, a: usize, b: usize) -> Option<(u64, u64)> {
        let ch = self.nodes[a].channel_to(&self.nodes[b].node_id())?;
        let ConnId(c) = self.nodes[a].shard.conn_of(ch.id())?;
        let h = self.halves.get(&(a, c))?;
        (h.peer.0 == b).then_some((c, h.peer.1))
    }

    /// Writes `bytes` on `from`'s end of its connection with `to` (raw, bypassing `from`'s
    /// core), as if `from` sent them. False if they share no channel.
    pub fn inject(&mut self, from: usize, to: usize, bytes: Vec<u8>) -> bool {
        match self.conn_between(to, from) {
            Some((_, from_conn)) => {
                self.transmit(from, from_conn, bytes);
                true
            }
            None => false,
        }
    }

    /// Publishes `block` at node `i` as its own: marks it seen in the node's filter and hands
    /// it to the crawler for relay (from no channel).
    pub fn publish_local(&mut self, i: usize, block: &Block) {
        let bytes = Message::Publish(Publish {
            block: block.clone(),
            originator: true,
        })
        .encode(NET);
        let now = self.now;
        self.nodes[i]
            .shared
            .filter
            .check_and_insert(&bytes[HEADER_LEN..], now);
        let mut out = Vec::new();
        self.nodes[i].crawler.on_event(
            CrawlerEvent::Block {
                channel: ChannelId(u64::MAX),
                hash: block.hash(),
                block: Arc::new(block.clone()),
            },
            now,
            &mut self.rng,
            &mut out,
        );
        self.run_work(i, Work::Crawler(out));
    }

    /// Hands `event` to node `i`'s crawler core now, as its shard would, and runs what it
    /// outputs (for floods too large to sign and send one by one).
    pub fn crawler_event(&mut self, i: usize, event: CrawlerEvent) {
        let mut out = Vec::new();
        let now = self.now;
        self.nodes[i]
            .crawler
            .on_event(event, now, &mut self.rng, &mut out);
        self.run_work(i, Work::Crawler(out));
    }

    /// Sends a command to node `i`'s shard core (e.g. a dial the crawler would refuse).
    pub fn command(&mut self, i: usize, command: ShardCommand) {
        let mut out = ShardOutput::default();
        let now = self.now;
        self.nodes[i]
            .shard
            .on_command(command, now, &mut self.rng, &mut out);
        self.run_work(i, Work::Shard(out));
    }

    // ---- assertions ----

    /// True when `i` and `j` each have a channel to the other **on the same connection**
    /// (during a crossed dial each side may briefly hold a channel on a different one).
    pub fn linked(&self, i: usize, j: usize) -> bool {
        let Some((ci, cj)) = self.conn_between(i, j) else {
            return false;
        };
        self.conn_between(j, i) == Some((cj, ci))
    }

    /// Number of other nodes node `i` is linked with.
    pub fn degree(&self, i: usize) -> usize {
        (0..self.nodes.len())
            .filter(|&j| j != i && self.linked(i, j))
            .count()
    }

    /// True when every up node has a channel to at least `min` other nodes.
    pub fn all_degrees_at_least(&self, min: usize) -> bool {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up)
            .all(|i| self.degree(i) >= min)
    }

    /// Every channel names the node that really sits behind it: the map's node id for a
    /// channel equals the identity of the node at its remote address.
    pub fn assert_channels_consistent(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            for c in n.channel_list() {
                let who = self.halves.iter().find_map(|((node, conn), h)| {
                    (*node == i && n.shard.conn_of(c.id()) == Some(ConnId(*conn)))
                        .then_some(h.peer.0)
                });
                let who = who.unwrap_or_else(|| panic!("node {i}: channel {} has no link", c.id()));
                assert_eq!(
                    *c.node_id(),
                    self.nodes[who].node_id(),
                    "node {i}: channel {} names the wrong node",
                    c.id()
                );
            }
        }
    }
}

/// An encoded confirm_ack by `key` for `hashes`.
pub fn signed_vote(key: &KeyPair, hashes: Vec<BlockHash>, timestamp: u64, forge: bool) -> Vec<u8> {
    let mut signature = key.sign(&vote_hash(&hashes, timestamp).0);
    if forge {
        signature.0[7] ^= 0x40;
    }
    Message::ConfirmAck(ConfirmAck {
        vote: Vote {
            account: key.public(),
            signature,
            timestamp,
            hashes,
        },
        rebroadcasted: false,
    })
    .encode(NET)
}

/// The dev genesis account.
pub fn dev_genesis_account() -> PublicKey {
    genesis_account(NET)
}
