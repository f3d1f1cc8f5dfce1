//! The rep crawler and online weight (§8).
//!
//! Every round (7 s when the known weight is sufficient, 3 s while warming up; dev 0.5 s) the
//! crawler sends one `confirm_req(hash, root)` to random channels and remembers
//! (hash, channel, sent time). A vote counts as a response only if it is live (not
//! rebroadcasted), from a non-zero account, and contains a hash that was queried on **that
//! same channel** and has not expired; the representative is then recorded with its channel.
//!
//! # The first query of a new channel
//!
//! Each new channel is also queried once when it comes up. By default the **shard** sends
//! that query, right after keepalive_self in the same loop turn (so both leave in one TCP
//! segment): it picks a pair from the [`QueryBoard`], to which the rep crawler publishes its
//! candidates, and passes the pair on in `ChannelUp`; the crawler records it with
//! [`RepCrawler::record_query`] exactly as if it had sent it. With
//! [`ProtoConfig::query_on_up`] off the shard passes no pair and the crawler sends the query
//! itself ([`RepCrawler::query_channel`]).
//!
//! # Which hash to ask for
//!
//! nanopeer has no ledger. The query set is the network's **genesis block** (root = genesis
//! account), which every node has and which is confirmed, plus hashes recently seen in valid
//! votes (the blocks under vote right now). A reference node answers a confirm_req through its
//! request aggregator: it looks the block up **by hash** first and only falls back to the root
//! (successor of the root block, or the open block of the root account) when the hash is
//! unknown. So the root matters little when the peer has the block: for vote hashes whose
//! block was relayed to us the real root is used; otherwise the hash itself is sent as the
//! root. That can never name another block (no block's successor or account is found under a
//! hash the peer lacks), so the worst case is no answer.
//!
//! # Which votes count
//!
//! The minimum weight of a counted representative is the principal-representative weight,
//! trended online weight / 1000 (§8), unless [`RepCrawlerConfig::min_weight`] overrides it. On
//! dev the genesis account holds the whole supply and passes easily. When no weights are
//! known at all (live or beta without a weights file, see [`super::weights`]) responders are
//! still tracked, with weight 0; they never make the weight sufficient. Unlike the reference,
//! loopback channels are not ignored: tests and local networks run on loopback.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddrV6;
use std::sync::Arc;

use parking_lot::RwLock;
use rand::{Rng, RngCore};

use super::config::ProtoConfig;
use super::events::{CrawlerOutput, NodeAction, ShardCommand};
use super::keepalive::random_subset;
use super::online::OnlineReps;
use super::weights::RepWeights;
use crate::channels::{Channel, ChannelId};
use crate::crypto::{genesis_account, genesis_hash};
use crate::types::{BlockHash, Network, PublicKey};
use crate::wire::{ConfirmReq, HashRoot, Message};

/// Vote hashes remembered for queries.
pub const SEEN_HASHES_MAX: usize = 64;
/// Block roots remembered (from relayed blocks) to pair with vote hashes.
pub const ROOTS_MAX: usize = 4096;
/// Outstanding queries kept at most (oldest dropped first).
pub const QUERIES_MAX: usize = 16_384;

/// The genesis pair of `network`: the genesis block's hash with the genesis account as root.
pub fn genesis_query(network: Network) -> HashRoot {
    HashRoot {
        hash: genesis_hash(network),
        root: BlockHash(genesis_account(network).0),
    }
}

/// The rep crawler's current query candidates, shared with the shards so that a shard can
/// send the first query of a new channel itself: the recently seen vote hashes paired with
/// their roots (at most [`SEEN_HASHES_MAX`]), then the genesis pair. The rep crawler
/// republishes whenever the set changes; a uniform pick from the board is a pick of the rep
/// crawler's own query choice. Never empty: the genesis pair is always there.
#[derive(Debug)]
pub struct QueryBoard {
    pairs: RwLock<Arc<[HashRoot]>>,
}

impl QueryBoard {
    /// A board holding only the genesis pair of `network`.
    pub fn new(network: Network) -> QueryBoard {
        QueryBoard {
            pairs: RwLock::new(Arc::from([genesis_query(network)])),
        }
    }

    /// A uniformly chosen candidate.
    pub fn pick(&self, rng: &mut impl RngCore) -> HashRoot {
        let pairs = self.pairs.read();
        pairs[rng.random_range(0..pairs.len())]
    }

    /// The current candidates: seen pairs in arrival order, the genesis pair last.
    pub fn pairs(&self) -> Arc<[HashRoot]> {
        self.pairs.read().clone()
    }

    fn publish(&self, pairs: Arc<[HashRoot]>) {
        *self.pairs.write() = pairs;
    }
}

/// Rep crawler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepCrawlerConfig {
    /// The network (genesis of the query set).
    pub network: Network,
    /// Round interval once weight is sufficient.
    pub normal_ms: u64,
    /// Round interval while weight is insufficient.
    pub warmup_ms: u64,
    /// A query expires after this.
    pub query_timeout_ms: u64,
    /// A channel that hosts a known rep is queried again only after this.
    pub rep_requery_ms: u64,
    /// Channels queried per round while insufficient.
    pub max_targets: usize,
    /// Channels queried per round once sufficient.
    pub max_targets_sufficient: usize,
    /// A non-rep channel with this many outstanding queries is skipped (normal).
    pub max_outstanding: usize,
    /// The same while insufficient (aggressive).
    pub max_outstanding_aggressive: usize,
    /// Minimum weight of a counted rep; `None` = trended / 1000 (PR weight).
    pub min_weight: Option<u128>,
    /// ResolvePreconfigured at most this often while insufficient.
    pub preconfigured_interval_ms: u64,
    /// Online-weight sample period.
    pub sample_ms: u64,
}

impl RepCrawlerConfig {
    /// Settings from the protocol config: targets 160 while insufficient, 40 once sufficient;
    /// outstanding limits 4 / 8; a rep channel is re-queried after 60 s (dev: the normal
    /// interval); preconfigured peers are resolved at most once per keepalive period.
    pub fn from_proto(c: &ProtoConfig) -> RepCrawlerConfig {
        RepCrawlerConfig {
            network: c.network,
            normal_ms: c.rep_crawler_normal_ms,
            warmup_ms: c.rep_crawler_warmup_ms,
            query_timeout_ms: c.rep_query_timeout_ms,
            rep_requery_ms: if c.network == Network::Dev {
                c.rep_crawler_normal_ms
            } else {
                60_000
            },
            max_targets: c.rep_crawler_max_targets,
            max_targets_sufficient: (c.rep_crawler_max_targets / 4).max(1),
            max_outstanding: 4,
            max_outstanding_aggressive: 8,
            min_weight: None,
            preconfigured_interval_ms: c.keepalive_period_ms,
            sample_ms: c.online_weight_sample_ms,
        }
    }
}

/// A known representative.
#[derive(Debug, Clone)]
pub struct RepEntry {
    /// The representative account.
    pub account: PublicKey,
    /// The channel it answered on (latest).
    pub channel: Arc<Channel>,
    /// Its weight (raw; 0 when unknown).
    pub weight: u128,
    /// Last counted response.
    pub last_response_ms: u64,
}

/// One representative as the RPC shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepInfo {
    /// The account.
    pub account: PublicKey,
    /// The channel's remote endpoint.
    pub endpoint: SocketAddrV6,
    /// Its weight (raw).
    pub weight: u128,
    /// Last counted response (ms).
    pub last_response_ms: u64,
}

/// The rep crawler's state for the RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepStatus {
    /// Known representatives with alive channels, by account.
    pub representatives: Vec<RepInfo>,
    /// Σ weight of online reps (observed within 300 s).
    pub online_weight: u128,
    /// Trended online weight.
    pub trended: u128,
    /// Quorum delta.
    pub delta: u128,
    /// Σ weight of known reps with alive channels.
    pub known_weight: u128,
    /// known_weight > delta.
    pub sufficient: bool,
}

/// Rep crawler counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepCrawlerStats {
    /// Rounds run.
    pub rounds: u64,
    /// confirm_req sent (one per target).
    pub queries_sent: u64,
    /// Queries that expired.
    pub queries_expired: u64,
    /// Votes seen.
    pub votes: u64,
    /// Votes ignored: rebroadcasted.
    pub votes_rebroadcasted: u64,
    /// Votes ignored: zero account.
    pub votes_zero_account: u64,
    /// Votes ignored: no hash queried on that channel (or expired).
    pub votes_unsolicited: u64,
    /// Votes ignored: weight below the minimum.
    pub votes_low_weight: u64,
    /// Responses counted.
    pub responses: u64,
    /// Responses from accounts with no known weight (no weights loaded).
    pub responses_unknown_weight: u64,
    /// New reps.
    pub reps_added: u64,
    /// Reps that moved to another channel.
    pub reps_moved: u64,
    /// Reps evicted (dead channel).
    pub reps_evicted: u64,
    /// ResolvePreconfigured emitted.
    pub preconfigured_resolves: u64,
    /// Online-weight samples taken.
    pub samples: u64,
}

/// The rep crawler.
#[derive(Debug)]
pub struct RepCrawler {
    config: RepCrawlerConfig,
    weights: RepWeights,
    online: OnlineReps,
    reps: BTreeMap<PublicKey, RepEntry>,
    /// (channel, hash) → sent time.
    queries: HashMap<(ChannelId, BlockHash), u64>,
    /// Send order, for expiry.
    query_order: VecDeque<(u64, ChannelId, BlockHash)>,
    outstanding: HashMap<ChannelId, usize>,
    /// Channel → last time it was queried.
    last_request: HashMap<ChannelId, u64>,
    seen: VecDeque<BlockHash>,
    roots: HashMap<BlockHash, BlockHash>,
    root_order: VecDeque<BlockHash>,
    /// The query candidates (`seen` paired with roots, then genesis), published here;
    /// [`pick_query`](Self::pick_query) picks from it too.
    board: Arc<QueryBoard>,
    next_round_ms: u64,
    next_preconfigured_ms: u64,
    next_sample_ms: u64,
    stats: RepCrawlerStats,
}

impl RepCrawler {
    /// A crawler with these weights and online-weight state (samples loaded from the store),
    /// publishing to a board of its own (see [`with_board`](Self::with_board)).
    pub fn new(config: RepCrawlerConfig, weights: RepWeights, online: OnlineReps) -> RepCrawler {
        let next_sample_ms = config.sample_ms;
        RepCrawler {
            board: Arc::new(QueryBoard::new(config.network)),
            config,
            weights,
            online,
            reps: BTreeMap::new(),
            queries: HashMap::new(),
            query_order: VecDeque::new(),
            outstanding: HashMap::new(),
            last_request: HashMap::new(),
            seen: VecDeque::new(),
            roots: HashMap::new(),
            root_order: VecDeque::new(),
            next_round_ms: 0,
            next_preconfigured_ms: 0,
            next_sample_ms,
            stats: RepCrawlerStats::default(),
        }
    }

    /// Publishes the query candidates to `board` (shared with the shards) from now on.
    pub fn with_board(mut self, board: Arc<QueryBoard>) -> RepCrawler {
        board.publish(self.board.pairs());
        self.board = board;
        self
    }

    /// The board the query candidates are published to.
    pub fn board(&self) -> &Arc<QueryBoard> {
        &self.board
    }

    /// The counters.
    pub fn stats(&self) -> &RepCrawlerStats {
        &self.stats
    }

    /// The weights in use.
    pub fn weights(&self) -> &RepWeights {
        &self.weights
    }

    /// The settings.
    pub fn config(&self) -> &RepCrawlerConfig {
        &self.config
    }

    /// Outstanding (unexpired, not yet purged) queries.
    pub fn outstanding_queries(&self) -> usize {
        self.queries.len()
    }

    /// The known reps (any channel state), by account.
    pub fn reps(&self) -> impl Iterator<Item = &RepEntry> {
        self.reps.values()
    }

    /// The minimum weight of a counted rep now.
    pub fn min_weight(&self) -> u128 {
        self.config
            .min_weight
            .unwrap_or_else(|| self.online.trended() / 1000)
    }

    /// Σ weight of known reps whose channel is alive.
    pub fn known_weight(&self) -> u128 {
        self.reps
            .values()
            .filter(|r| r.channel.is_alive())
            .fold(0u128, |a, r| a.saturating_add(r.weight))
    }

    /// Σ weight of reps observed online within the weight period.
    pub fn online_weight(&self, now_ms: u64) -> u128 {
        self.online.online(now_ms, |a| self.weights.get(a))
    }

    /// Known weight > quorum delta.
    pub fn sufficient(&self, now_ms: u64) -> bool {
        self.known_weight() > self.online.delta(self.online_weight(now_ms))
    }

    /// True when `channel` hosts a known rep.
    pub fn is_rep_channel(&self, channel: ChannelId) -> bool {
        self.reps.values().any(|r| r.channel.id() == channel)
    }

    /// True when `channel` hosts a rep of at least the PR weight (`is_pr`).
    pub fn is_pr(&self, channel: ChannelId) -> bool {
        let min = self.online.trended() / 1000;
        self.reps
            .values()
            .any(|r| r.channel.id() == channel && r.weight >= min && r.weight > 0)
    }

    /// The status for the RPC.
    pub fn status(&self, now_ms: u64) -> RepStatus {
        let online_weight = self.online_weight(now_ms);
        let delta = self.online.delta(online_weight);
        let known_weight = self.known_weight();
        RepStatus {
            representatives: self
                .reps
                .values()
                .filter(|r| r.channel.is_alive())
                .map(|r| RepInfo {
                    account: r.account,
                    endpoint: r.channel.remote(),
                    weight: r.weight,
                    last_response_ms: r.last_response_ms,
                })
                .collect(),
            online_weight,
            trended: self.online.trended(),
            delta,
            known_weight,
            sufficient: known_weight > delta,
        }
    }

    /// Remembers the root of a relayed block, to pair with its hash in later queries.
    pub fn note_block(&mut self, hash: BlockHash, root: BlockHash) {
        if self.roots.insert(hash, root).is_none() {
            let mut changed = self.seen.contains(&hash);
            self.root_order.push_back(hash);
            if self.root_order.len() > ROOTS_MAX
                && let Some(old) = self.root_order.pop_front()
            {
                self.roots.remove(&old);
                changed |= self.seen.contains(&old);
            }
            if changed {
                self.refresh_candidates();
            }
        }
    }

    /// Rebuilds the candidates from `seen` and `roots` and publishes them to the board.
    fn refresh_candidates(&mut self) {
        let genesis = genesis_query(self.config.network);
        let pairs: Arc<[HashRoot]> = self
            .seen
            .iter()
            .map(|&hash| HashRoot {
                hash,
                root: self.roots.get(&hash).copied().unwrap_or(hash),
            })
            .chain(std::iter::once(genesis))
            .collect();
        self.board.publish(pairs);
    }

    /// The hash/root to ask for: the genesis block, or a hash recently seen in a vote (the
    /// same uniform pick the shards make from the board).
    fn pick_query(&self, rng: &mut impl RngCore) -> HashRoot {
        self.board.pick(rng)
    }

    /// Records a confirm_req for `q` sent on `channel` at `now_ms`: it is outstanding (a vote
    /// for `q.hash` from that channel counts as a response until it expires), the channel was
    /// queried now, and `queries_sent` counts it. The oldest records beyond [`QUERIES_MAX`]
    /// are dropped. The crawler's own queries go through here, and so does the first query
    /// of a channel the shard sent with keepalive_self.
    pub fn record_query(&mut self, channel: ChannelId, q: HashRoot, now_ms: u64) {
        if self.queries.insert((channel, q.hash), now_ms).is_none() {
            *self.outstanding.entry(channel).or_default() += 1;
        }
        self.query_order.push_back((now_ms, channel, q.hash));
        self.last_request.insert(channel, now_ms);
        self.stats.queries_sent += 1;
        while self.query_order.len() > QUERIES_MAX {
            if let Some((t, ch, h)) = self.query_order.pop_front() {
                self.drop_query(t, ch, h);
            }
        }
    }

    fn send_query(
        &mut self,
        targets: &[Arc<Channel>],
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut Vec<CrawlerOutput>,
    ) {
        if targets.is_empty() {
            return;
        }
        let q = self.pick_query(rng);
        let bytes: Arc<[u8]> = Message::ConfirmReq(ConfirmReq { pairs: vec![q] })
            .encode(self.config.network)
            .into();
        for c in targets {
            self.record_query(c.id(), q, now_ms);
            out.push(CrawlerOutput::Shard {
                shard: c.shard(),
                command: ShardCommand::Send {
                    channel: c.id(),
                    bytes: bytes.clone(),
                },
            });
        }
    }

    fn drop_query(&mut self, sent_ms: u64, ch: ChannelId, hash: BlockHash) {
        // Only the entry recorded at this time: a re-query of the same pair refreshed it.
        if self.queries.get(&(ch, hash)) == Some(&sent_ms) {
            self.queries.remove(&(ch, hash));
            if let Some(n) = self.outstanding.get_mut(&ch) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.outstanding.remove(&ch);
                }
            }
        }
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some(&(t, ch, h)) = self.query_order.front() {
            if now_ms.saturating_sub(t) < self.config.query_timeout_ms {
                break;
            }
            self.query_order.pop_front();
            if self.queries.get(&(ch, h)) == Some(&t) {
                self.stats.queries_expired += 1;
            }
            self.drop_query(t, ch, h);
        }
    }

    /// Queries a new channel once (at ChannelUp, when the shard did not).
    pub fn query_channel(
        &mut self,
        channel: &Arc<Channel>,
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut Vec<CrawlerOutput>,
    ) {
        self.send_query(std::slice::from_ref(channel), now_ms, rng, out);
    }

    /// Forgets per-channel bookkeeping of a closed channel and evicts reps on it.
    pub fn channel_down(&mut self, channel: ChannelId) {
        self.last_request.remove(&channel);
        let before = self.reps.len();
        self.reps.retain(|_, r| r.channel.id() != channel);
        self.stats.reps_evicted += (before - self.reps.len()) as u64;
    }

    /// A verified vote arrived on `channel`. Returns true if it counted as a response.
    pub fn on_vote(
        &mut self,
        channel: Option<&Arc<Channel>>,
        channel_id: ChannelId,
        account: PublicKey,
        hashes: &[BlockHash],
        rebroadcasted: bool,
        now_ms: u64,
    ) -> bool {
        self.stats.votes += 1;
        let mut changed = false;
        for h in hashes.iter().take(8) {
            if !self.seen.contains(h) {
                changed = true;
                self.seen.push_back(*h);
                if self.seen.len() > SEEN_HASHES_MAX {
                    self.seen.pop_front();
                }
            }
        }
        if changed {
            self.refresh_candidates();
        }
        if rebroadcasted {
            self.stats.votes_rebroadcasted += 1;
            return false;
        }
        if account.is_zero() {
            self.stats.votes_zero_account += 1;
            return false;
        }
        let timeout = self.config.query_timeout_ms;
        let solicited = hashes.iter().any(|h| {
            self.queries
                .get(&(channel_id, *h))
                .is_some_and(|&t| now_ms.saturating_sub(t) < timeout)
        });
        let Some(channel) = channel.filter(|c| solicited && c.is_alive()) else {
            self.stats.votes_unsolicited += 1;
            return false;
        };
        let weight = self.weights.get(&account);
        if self.weights.is_empty() {
            self.stats.responses_unknown_weight += 1;
        } else if weight < self.min_weight() || weight == 0 {
            self.stats.votes_low_weight += 1;
            return false;
        }
        self.stats.responses += 1;
        if weight > 0 {
            self.online.observe(account, now_ms);
        }
        match self.reps.get_mut(&account) {
            Some(e) => {
                if e.channel.id() != channel.id() {
                    e.channel = channel.clone();
                    self.stats.reps_moved += 1;
                }
                e.weight = weight;
                e.last_response_ms = now_ms;
            }
            None => {
                self.reps.insert(
                    account,
                    RepEntry {
                        account,
                        channel: channel.clone(),
                        weight,
                        last_response_ms: now_ms,
                    },
                );
                self.stats.reps_added += 1;
            }
        }
        true
    }

    /// When [`tick`](Self::tick) has work next.
    pub fn next_wakeup_ms(&self) -> u64 {
        self.next_round_ms.min(self.next_sample_ms)
    }

    /// Runs what is due: a round (expire, evict, sufficiency, preconfigured, queries) and the
    /// online-weight sample. `channels` is the alive channel list.
    pub fn tick(
        &mut self,
        channels: &[Arc<Channel>],
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut Vec<CrawlerOutput>,
    ) {
        if now_ms >= self.next_sample_ms {
            self.online.trim(now_ms);
            let w = self.online_weight(now_ms);
            self.online.sample(w);
            self.stats.samples += 1;
            out.push(CrawlerOutput::Node(NodeAction::SaveOnlineSample(w)));
            self.next_sample_ms = now_ms + self.config.sample_ms.max(1);
        }
        if now_ms < self.next_round_ms {
            return;
        }
        self.stats.rounds += 1;
        self.expire(now_ms);
        let before = self.reps.len();
        self.reps.retain(|_, r| r.channel.is_alive());
        self.stats.reps_evicted += (before - self.reps.len()) as u64;
        let sufficient = self.sufficient(now_ms);
        if !sufficient && now_ms >= self.next_preconfigured_ms {
            out.push(CrawlerOutput::Node(NodeAction::ResolvePreconfigured));
            self.stats.preconfigured_resolves += 1;
            self.next_preconfigured_ms = now_ms + self.config.preconfigured_interval_ms;
        }
        let (n, max_out) = if sufficient {
            (
                self.config.max_targets_sufficient,
                self.config.max_outstanding,
            )
        } else {
            (
                self.config.max_targets,
                self.config.max_outstanding_aggressive,
            )
        };
        let rep_channels: HashMap<ChannelId, ()> =
            self.reps.values().map(|r| (r.channel.id(), ())).collect();
        let requery = self.config.rep_requery_ms;
        let candidates = random_subset(channels, n, rng, |c| {
            if rep_channels.contains_key(&c.id()) {
                self.last_request
                    .get(&c.id())
                    .is_some_and(|&t| now_ms.saturating_sub(t) < requery)
            } else {
                self.outstanding.get(&c.id()).copied().unwrap_or(0) >= max_out
            }
        });
        self.send_query(&candidates, now_ms, rng, out);
        self.next_round_ms = now_ms
            + if sufficient {
                self.config.normal_ms
            } else {
                self.config.warmup_ms
            }
            .max(1);
    }
}
