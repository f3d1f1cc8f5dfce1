//! The crawler core: the sans-IO logic of the one crawler thread (§7, §8, §9).
//!
//! [`CrawlerCore`] owns everything periodic and slow: keepalive fan-out, reachout, the rep
//! crawler and online weight, telemetry broadcast and the telemetry cache, cleanup (purge),
//! peer-store flushes and publish relay. It reads the shared [`ChannelMap`] and answers with
//! [`CrawlerOutput`]s: commands for the shard that owns a channel (send, dial, close) and
//! actions for the node (store, DNS). It never reads a clock: the driver passes `now_ms`, an
//! RNG, and calls [`CrawlerCore::tick`] at [`CrawlerCore::next_wakeup_ms`].
//!
//! Same channel-map contents, same events, same times and the same RNG seed give the same
//! outputs: the crawler samples from its own table ordered by channel id, and sorts what it
//! reads from the map.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::RngCore;

use super::config::ProtoConfig;
use super::events::{CloseReason, CrawlerEvent, CrawlerOutput, NodeAction, ShardCommand};
use super::exclusion::PeerExclusion;
use super::keepalive::{encode_keepalive, fanout, keepalive_self, random_fill, random_subset};
use super::online::OnlineReps;
use super::reachout::{MergeContext, MergeRefusal, Reachout, ReachoutConfig, ReachoutStats};
use super::repcrawler::{QueryBoard, RepCrawler, RepCrawlerConfig, RepCrawlerStats, RepStatus};
pub use super::table::ChannelTable;
use super::weights::RepWeights;
use crate::channels::{Channel, ChannelId, ChannelMap};
use crate::endpoint::Endpoint;
use crate::types::PublicKey;
use crate::wire::{Message, Publish, TelemetryData, VERSION_MIN};

/// Most channels whose telemetry is cached (§9).
pub const TELEMETRY_CACHE_MAX: usize = 1024;

/// Builds the signed telemetry_ack message (header included) to broadcast, from the time and
/// the current peer count. An empty result skips the broadcast.
pub type TelemetrySource = Box<dyn FnMut(u64, usize) -> Vec<u8> + Send>;

/// What [`CrawlerCore::new`] needs. Build with [`CrawlerSetup::new`] and set the optional
/// fields.
pub struct CrawlerSetup {
    /// Protocol settings.
    pub config: ProtoConfig,
    /// The shared channel map.
    pub channels: Arc<ChannelMap>,
    /// The excluded peers (shared with the shards' admission checks).
    pub exclusion: Arc<Mutex<PeerExclusion>>,
    /// Representative weights.
    pub weights: RepWeights,
    /// Number of shards (dials go round-robin).
    pub shard_count: u16,
    /// Peers from the peer store, most recent first.
    pub stored_peers: Vec<Endpoint>,
    /// Preconfigured peer addresses already known (port 0 = the default port); dev: none.
    pub preconfigured: Vec<Endpoint>,
    /// Stored online-weight samples, oldest first.
    pub online_samples: Vec<u128>,
    /// The telemetry builder; `None` = no telemetry broadcast.
    pub telemetry: Option<TelemetrySource>,
    /// Overrides the rep crawler settings derived from `config`.
    pub rep_crawler: Option<RepCrawlerConfig>,
    /// Send a keepalive_self to each new channel at ChannelUp (off by default: the shard
    /// sends it when the handshake completes).
    pub keepalive_self_on_up: bool,
    /// Where the rep crawler publishes its query candidates; give the same board to the
    /// shards ([`ShardShared::query_board`]) so they can send a new channel's first query.
    /// A fresh board for `config.network` by default.
    ///
    /// [`ShardShared::query_board`]: super::shard::ShardShared::query_board
    pub query_board: Arc<QueryBoard>,
}

impl CrawlerSetup {
    /// Required parts; everything else empty / default.
    pub fn new(
        config: ProtoConfig,
        channels: Arc<ChannelMap>,
        exclusion: Arc<Mutex<PeerExclusion>>,
        weights: RepWeights,
        shard_count: u16,
    ) -> CrawlerSetup {
        CrawlerSetup {
            channels,
            exclusion,
            weights,
            shard_count,
            stored_peers: Vec::new(),
            preconfigured: Vec::new(),
            online_samples: Vec::new(),
            telemetry: None,
            rep_crawler: None,
            keepalive_self_on_up: false,
            query_board: Arc::new(QueryBoard::new(config.network)),
            config,
        }
    }
}

crate::counter_set! {
    /// Crawler counters (reachout and rep crawler counters are separate, see
    /// [`CrawlerCore::reachout_stats`] and [`CrawlerCore::rep_stats`]).
    pub struct CrawlerStats {
        groups {}
        /// Keepalive rounds.
        keepalive_rounds,
        /// Random-peer keepalives sent by the flood.
        keepalive_flood ["network", "keepalive_flood", "out"],
        /// keepalive_self sent.
        keepalive_self ["network", "keepalive_self", "out"],
        /// Keepalives sent to idle channels.
        keepalive_idle ["network", "keepalive_idle", "out"],
        /// Keepalives received.
        keepalives_received ["network", "keepalive", "in"],
        /// ChannelUp events.
        channels_up ["network", "channel_up", "in"],
        /// ChannelDown events.
        channels_down ["network", "channel_down", "in"],
        /// Channels closed by the purge.
        purged ["network", "purged", "out"],
        /// Cleanup runs.
        cleanups ["network", "cleanup", "in"],
        /// Peer store flushes.
        flushes,
        /// Blocks relayed.
        blocks_relayed ["network", "blocks_relayed", "out"],
        /// Publish messages sent by relays.
        relay_sends,
        /// Telemetry broadcasts.
        telemetry_broadcasts ["telemetry", "broadcast", "out"],
        /// telemetry_ack messages sent.
        telemetry_sends ["telemetry", "telemetry_ack", "out"],
        /// Telemetry entries received and stored.
        telemetry_received ["telemetry", "process", "in"],
        /// Telemetry entries evicted (cache full) or gone stale.
        telemetry_evicted ["telemetry", "evicted", "in"],
        /// Genesis mismatches (exclusions).
        genesis_mismatches,
        /// Dials that failed.
        dials_failed,
        /// Events naming a channel the crawler does not know.
        unknown_channel,
        /// Preconfigured addresses received.
        preconfigured_resolved,
        /// Verified votes received (all representatives).
        votes,
        /// Votes of accounts beyond [`MAX_VOTE_COUNTERS`], counted only here.
        votes_untracked,
    }
}

/// The crawler core. See the [module docs](self).
pub struct CrawlerCore {
    config: ProtoConfig,
    channels: Arc<ChannelMap>,
    exclusion: Arc<Mutex<PeerExclusion>>,
    table: ChannelTable,
    reachout: Reachout,
    reps: RepCrawler,
    telemetry_source: Option<TelemetrySource>,
    telemetry: BTreeMap<ChannelId, (Box<TelemetryData>, u64)>,
    stored_peers: Vec<Endpoint>,
    preconfigured: Vec<Endpoint>,
    keepalive_self_on_up: bool,
    next_keepalive_ms: u64,
    next_cleanup_ms: u64,
    next_flush_ms: u64,
    next_telemetry_ms: u64,
    votes: HashMap<PublicKey, u64>,
    stats: CrawlerStats,
}

/// Most representatives whose verified votes are counted one by one; votes of further accounts
/// only raise [`CrawlerStats::votes_untracked`], so the table stays bounded whatever peers send.
pub const MAX_VOTE_COUNTERS: usize = 4096;

impl std::fmt::Debug for CrawlerCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrawlerCore")
            .field("network", &self.config.network)
            .field("channels", &self.table.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl CrawlerCore {
    /// A crawler; nothing happens until [`start`](Self::start).
    pub fn new(setup: CrawlerSetup) -> CrawlerCore {
        let config = setup.config;
        let rep_config = setup
            .rep_crawler
            .unwrap_or_else(|| RepCrawlerConfig::from_proto(&config));
        let online = OnlineReps::new(
            config.online_weight_minimum,
            config.online_weight_max_samples,
        )
        .with_samples(setup.online_samples);
        CrawlerCore {
            reachout: Reachout::new(ReachoutConfig::from_proto(&config, setup.shard_count)),
            reps: RepCrawler::new(rep_config, setup.weights, online).with_board(setup.query_board),
            channels: setup.channels,
            exclusion: setup.exclusion,
            table: ChannelTable::new(),
            telemetry_source: setup.telemetry,
            telemetry: BTreeMap::new(),
            stored_peers: setup.stored_peers,
            preconfigured: setup.preconfigured,
            keepalive_self_on_up: setup.keepalive_self_on_up,
            next_keepalive_ms: 0,
            next_cleanup_ms: 0,
            next_flush_ms: 0,
            next_telemetry_ms: 0,
            votes: HashMap::new(),
            stats: CrawlerStats::default(),
            config,
        }
    }

    /// `add_initial_peers`: merges the stored peers (most recent first), then the
    /// preconfigured addresses; picks up channels already in the map; schedules the timers
    /// and runs the first [`tick`](Self::tick) (first rep crawler round).
    pub fn start(&mut self, now_ms: u64, rng: &mut impl RngCore, out: &mut Vec<CrawlerOutput>) {
        self.table.sync(self.sorted_snapshot());
        let stored = std::mem::take(&mut self.stored_peers);
        for ep in &stored {
            let _ = self.merge_peer(*ep, now_ms, out);
        }
        self.reachout.remember_peers(&stored, now_ms);
        // they were just merged: the first walk of known peers waits one interval
        self.reachout
            .defer_known_walk(now_ms + self.config.peer_store_interval_ms);
        let pre = std::mem::take(&mut self.preconfigured);
        for ep in pre {
            self.merge_default_port(ep, now_ms, out);
        }
        self.next_keepalive_ms = now_ms + self.config.keepalive_period_ms;
        self.next_cleanup_ms = now_ms + self.config.cleanup_period_ms;
        self.next_flush_ms = now_ms + self.config.peer_store_interval_ms;
        self.next_telemetry_ms = now_ms + self.config.telemetry_period_ms;
        self.tick(now_ms, rng, out);
    }

    fn sorted_snapshot(&self) -> Vec<Arc<Channel>> {
        let mut s = self.channels.snapshot();
        s.sort_by_key(|c| c.id());
        s
    }

    /// `merge_peer(ep)` now (§7.4): dial unless a refusal rule applies.
    pub fn merge_peer(
        &mut self,
        ep: Endpoint,
        now_ms: u64,
        out: &mut Vec<CrawlerOutput>,
    ) -> Result<u16, MergeRefusal> {
        let ctx = MergeContext {
            channels: &self.channels,
            table: &self.table,
            exclusion: &self.exclusion,
        };
        self.reachout.merge_peer(ep, now_ms, ctx, out)
    }

    fn merge_default_port(&mut self, ep: Endpoint, now_ms: u64, out: &mut Vec<CrawlerOutput>) {
        let ep = if ep.port() == 0 {
            ep.with_port(self.config.network.default_port())
        } else {
            ep
        };
        let _ = self.merge_peer(ep, now_ms, out);
    }

    /// The node resolved the preconfigured peers: dial each (port 0 = the network's default
    /// port), subject to the reachout rules.
    pub fn on_preconfigured_resolved(
        &mut self,
        addrs: Vec<Endpoint>,
        now_ms: u64,
        out: &mut Vec<CrawlerOutput>,
    ) {
        for ep in addrs {
            self.stats.preconfigured_resolved += 1;
            self.merge_default_port(ep, now_ms, out);
        }
    }

    fn channel_gone(&mut self, id: ChannelId) {
        self.table.remove(id);
        self.reachout.forget_channel(id);
        self.reps.channel_down(id);
        if self.telemetry.remove(&id).is_some() {
            self.stats.telemetry_evicted += 1;
        }
    }

    fn lookup(&self, id: ChannelId) -> Option<Arc<Channel>> {
        self.table.get(id).cloned()
    }

    /// Handles one event from a shard.
    pub fn on_event(
        &mut self,
        event: CrawlerEvent,
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut Vec<CrawlerOutput>,
    ) {
        match event {
            CrawlerEvent::ChannelUp(ch, sent) => {
                self.stats.channels_up += 1;
                if !ch.is_alive() {
                    return;
                }
                self.table.insert(ch.clone());
                if self.keepalive_self_on_up {
                    let peers = keepalive_self(self.table.list(), self.config.listen_port, rng);
                    self.send(&ch, encode_keepalive(self.config.network, peers), out);
                    self.stats.keepalive_self += 1;
                }
                match sent {
                    // the shard sent the first query with its keepalive_self
                    Some(q) => self.reps.record_query(ch.id(), q, now_ms),
                    None => self.reps.query_channel(&ch, now_ms, rng, out),
                }
            }
            CrawlerEvent::ChannelDown(ch) => {
                self.stats.channels_down += 1;
                self.channel_gone(ch.id());
            }
            CrawlerEvent::Keepalive { channel, peers } => {
                self.stats.keepalives_received += 1;
                if self.table.get(channel).is_none() {
                    self.stats.unknown_channel += 1;
                }
                self.reachout.store_keepalive(channel, peers);
            }
            CrawlerEvent::Vote {
                channel,
                account,
                hashes,
                rebroadcasted,
                ..
            } => {
                self.count_vote(account);
                let ch = self.lookup(channel);
                self.reps.on_vote(
                    ch.as_ref(),
                    channel,
                    account,
                    &hashes,
                    rebroadcasted,
                    now_ms,
                );
            }
            CrawlerEvent::Block {
                channel,
                hash,
                block,
            } => {
                self.reps.note_block(hash, block.root());
                self.relay(channel, &block, rng, out);
            }
            CrawlerEvent::Telemetry { channel, data } => {
                self.store_telemetry(channel, data, now_ms)
            }
            CrawlerEvent::GenesisMismatch { channel } => {
                self.stats.genesis_mismatches += 1;
                self.exclusion.lock().add(*channel.remote().ip(), now_ms);
                self.channels.remove_channel(&channel);
                out.push(CrawlerOutput::Shard {
                    shard: channel.shard(),
                    command: ShardCommand::Close {
                        channel: channel.id(),
                        reason: CloseReason::Excluded,
                    },
                });
                self.channel_gone(channel.id());
            }
            CrawlerEvent::Replaced(channel) => {
                // Out of the map already (the winning shard removed it); its shard closes the
                // connection and then reports ChannelDown.
                out.push(CrawlerOutput::Shard {
                    shard: channel.shard(),
                    command: ShardCommand::Close {
                        channel: channel.id(),
                        reason: CloseReason::Replaced,
                    },
                });
            }
            CrawlerEvent::DialFailed { endpoint } => {
                self.stats.dials_failed += 1;
                self.channels.end_attempt(&endpoint);
            }
        }
    }

    fn send(&self, ch: &Channel, bytes: Arc<[u8]>, out: &mut Vec<CrawlerOutput>) {
        out.push(CrawlerOutput::Shard {
            shard: ch.shard(),
            command: ShardCommand::Send {
                channel: ch.id(),
                bytes,
            },
        });
    }

    fn relay(
        &mut self,
        from: ChannelId,
        block: &crate::wire::Block,
        rng: &mut impl RngCore,
        out: &mut Vec<CrawlerOutput>,
    ) {
        let n = self.table.list().iter().filter(|c| c.is_alive()).count();
        let targets = random_subset(self.table.list(), fanout(1.0, n), rng, |c| c.id() == from);
        self.stats.blocks_relayed += 1;
        if targets.is_empty() {
            return;
        }
        let bytes: Arc<[u8]> = Message::Publish(Publish {
            block: block.clone(),
            originator: false,
        })
        .encode(self.config.network)
        .into();
        for c in &targets {
            self.send(c, bytes.clone(), out);
            self.stats.relay_sends += 1;
        }
    }

    fn store_telemetry(&mut self, channel: ChannelId, data: Box<TelemetryData>, now_ms: u64) {
        if self.table.get(channel).is_none() {
            self.stats.unknown_channel += 1;
            return;
        }
        if !self.telemetry.contains_key(&channel)
            && self.telemetry.len() >= TELEMETRY_CACHE_MAX
            && let Some(oldest) = self
                .telemetry
                .iter()
                .min_by_key(|(id, (_, t))| (*t, **id))
                .map(|(id, _)| *id)
        {
            self.telemetry.remove(&oldest);
            self.stats.telemetry_evicted += 1;
        }
        self.telemetry.insert(channel, (data, now_ms));
        self.stats.telemetry_received += 1;
    }

    /// Runs every periodic task that is due at `now_ms`.
    pub fn tick(&mut self, now_ms: u64, rng: &mut impl RngCore, out: &mut Vec<CrawlerOutput>) {
        if now_ms >= self.next_cleanup_ms {
            self.cleanup(now_ms, out);
            self.next_cleanup_ms = now_ms + self.config.cleanup_period_ms.max(1);
        }
        if now_ms >= self.reps.next_wakeup_ms() {
            let alive = self.table.alive();
            self.reps.tick(&alive, now_ms, rng, out);
        }
        if now_ms >= self.next_keepalive_ms {
            self.keepalive_round(now_ms, rng, out);
            self.next_keepalive_ms = now_ms + self.config.keepalive_period_ms.max(1);
        }
        if self.reachout.next_wakeup_ms().is_some_and(|t| now_ms >= t) {
            let ctx = MergeContext {
                channels: &self.channels,
                table: &self.table,
                exclusion: &self.exclusion,
            };
            self.reachout.step(now_ms, rng, ctx, out);
        }
        if now_ms >= self.next_telemetry_ms {
            self.broadcast_telemetry(now_ms, out);
            self.next_telemetry_ms = now_ms + self.config.telemetry_period_ms.max(1);
        }
        if now_ms >= self.next_flush_ms {
            self.flush_peers(now_ms, out);
            self.next_flush_ms = now_ms + self.config.peer_store_interval_ms.max(1);
        }
    }

    /// The earliest time [`tick`](Self::tick) has something to do.
    pub fn next_wakeup_ms(&self) -> u64 {
        let mut t = self
            .next_keepalive_ms
            .min(self.next_cleanup_ms)
            .min(self.next_flush_ms)
            .min(self.reps.next_wakeup_ms());
        if self.telemetry_source.is_some() {
            t = t.min(self.next_telemetry_ms);
        }
        if let Some(r) = self.reachout.next_wakeup_ms() {
            t = t.min(r);
        }
        t
    }

    /// One keepalive round (§7.4): a random-peer keepalive to ⌈0.75·√N⌉ random channels, a
    /// keepalive_self to ⌈0.25·√N⌉, and a random-peer keepalive to every other channel whose
    /// last send is older than the keepalive period.
    fn keepalive_round(
        &mut self,
        now_ms: u64,
        rng: &mut impl RngCore,
        out: &mut Vec<CrawlerOutput>,
    ) {
        self.stats.keepalive_rounds += 1;
        let list = self.table.alive();
        let n = list.len();
        if n == 0 {
            return;
        }
        let network = self.config.network;
        let fill = encode_keepalive(network, random_fill(&list, rng));
        let mut sent: HashSet<ChannelId> = HashSet::new();
        for c in random_subset(&list, fanout(0.75, n), rng, |_| false) {
            self.send(&c, fill.clone(), out);
            sent.insert(c.id());
            self.stats.keepalive_flood += 1;
        }
        let me = encode_keepalive(network, keepalive_self(&list, self.config.listen_port, rng));
        for c in random_subset(&list, fanout(0.25, n), rng, |_| false) {
            self.send(&c, me.clone(), out);
            sent.insert(c.id());
            self.stats.keepalive_self += 1;
        }
        let cutoff = now_ms.saturating_sub(self.config.keepalive_period_ms);
        for c in &list {
            if c.last_sent_ms() < cutoff && !sent.contains(&c.id()) {
                self.send(c, fill.clone(), out);
                self.stats.keepalive_idle += 1;
            }
        }
    }

    fn broadcast_telemetry(&mut self, now_ms: u64, out: &mut Vec<CrawlerOutput>) {
        let list = self.table.alive();
        let Some(src) = self.telemetry_source.as_mut() else {
            return;
        };
        let bytes = src(now_ms, list.len());
        if bytes.is_empty() || list.is_empty() {
            return;
        }
        let bytes: Arc<[u8]> = bytes.into();
        self.stats.telemetry_broadcasts += 1;
        for c in &list {
            self.send(c, bytes.clone(), out);
            self.stats.telemetry_sends += 1;
        }
    }

    /// Cleanup (§7.3): purge idle and old-version channels (closing them on their shard),
    /// purge exclusions and old attempts, re-sync the table, drop stale telemetry.
    fn cleanup(&mut self, now_ms: u64, out: &mut Vec<CrawlerOutput>) {
        self.stats.cleanups += 1;
        let mut purged = self
            .channels
            .purge(now_ms, self.config.cleanup_cutoff_ms, VERSION_MIN);
        purged.sort_by_key(|c| c.id());
        for c in purged {
            self.stats.purged += 1;
            out.push(CrawlerOutput::Shard {
                shard: c.shard(),
                command: ShardCommand::Close {
                    channel: c.id(),
                    reason: CloseReason::Purged,
                },
            });
            self.channel_gone(c.id());
        }
        self.exclusion.lock().purge(now_ms);
        for id in self.table.sync(self.sorted_snapshot()) {
            self.channel_gone(id);
        }
        let cutoff = self.config.telemetry_cache_cutoff_ms;
        let before = self.telemetry.len();
        self.telemetry
            .retain(|_, (_, t)| now_ms.saturating_sub(*t) <= cutoff);
        self.stats.telemetry_evicted += (before - self.telemetry.len()) as u64;
    }

    fn flush_peers(&mut self, now_ms: u64, out: &mut Vec<CrawlerOutput>) {
        self.stats.flushes += 1;
        let mut seen = HashSet::new();
        let peers: Vec<Endpoint> = self
            .table
            .list()
            .iter()
            .filter(|c| c.is_alive())
            .map(|c| c.peering_endpoint())
            .filter(|e| seen.insert(*e))
            .collect();
        self.reachout.remember_peers(&peers, now_ms);
        out.push(CrawlerOutput::Node(NodeAction::FlushPeers(peers)));
    }

    /// Cached telemetry that is not stale, by channel.
    pub fn telemetry(&self, now_ms: u64) -> Vec<(ChannelId, &TelemetryData)> {
        let cutoff = self.config.telemetry_cache_cutoff_ms;
        self.telemetry
            .iter()
            .filter(|(_, (_, t))| now_ms.saturating_sub(*t) <= cutoff)
            .map(|(id, (d, _))| (*id, &**d))
            .collect()
    }

    /// Representatives, online weight, trended, quorum delta and sufficiency (for the RPC).
    pub fn rep_status(&self, now_ms: u64) -> RepStatus {
        self.reps.status(now_ms)
    }

    /// The crawler's channel table.
    pub fn table(&self) -> &ChannelTable {
        &self.table
    }

    /// The rep crawler.
    pub fn rep_crawler(&self) -> &RepCrawler {
        &self.reps
    }

    /// The reachout state.
    pub fn reachout(&self) -> &Reachout {
        &self.reachout
    }

    /// The protocol settings.
    pub fn config(&self) -> &ProtoConfig {
        &self.config
    }

    /// Crawler counters.
    pub fn stats(&self) -> &CrawlerStats {
        &self.stats
    }

    /// Reachout counters.
    pub fn reachout_stats(&self) -> &ReachoutStats {
        self.reachout.stats()
    }

    /// Rep crawler counters.
    pub fn rep_stats(&self) -> &RepCrawlerStats {
        self.reps.stats()
    }

    /// Verified votes received per representative (live and rebroadcast, asked or not), most
    /// first; at most [`MAX_VOTE_COUNTERS`] accounts.
    pub fn votes_by_rep(&self) -> Vec<(PublicKey, u64)> {
        let mut v: Vec<(PublicKey, u64)> = self.votes.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    fn count_vote(&mut self, account: PublicKey) {
        self.stats.votes += 1;
        if let Some(n) = self.votes.get_mut(&account) {
            *n += 1;
        } else if self.votes.len() < MAX_VOTE_COUNTERS {
            self.votes.insert(account, 1);
        } else {
            self.stats.votes_untracked += 1;
        }
    }
}
