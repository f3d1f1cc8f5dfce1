//! Reachout: `merge_peer` and its pacing (§7.4).
//!
//! [`Reachout::merge_peer`] decides whether an advertised endpoint is worth a dial and, if so,
//! records the attempt in the channel map and emits a [`ShardCommand::Dial`]. Every refusal has
//! its own reason and counter.
//!
//! Pacing follows the reference's two reachout loops, one `merge_peer` each per merge period:
//! - **keepalives** (`run_reachout`): the latest unconsumed keepalive of each channel is kept
//!   (at most [`ReachoutConfig::max_stored_keepalives`] channels); when the walker is idle it
//!   takes the stored keepalive of a random channel and merges its entries one by one;
//! - **known peers** (`run_reachout_cached`): the peers of the peer store (given at start) and
//!   those flushed since, remembered for an hour (at most
//!   [`ReachoutConfig::max_known_peers`]), walked the same way; a new walk starts at most once
//!   per peer-store interval.
//!
//! The attempts table (in the [`ChannelMap`]) stays bounded: it has a hard cap, attempts older
//! than the cleanup cutoff are purged, and the pacing adds at most two entries per merge period.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use parking_lot::Mutex;
use rand::{Rng, RngCore};

use super::addr::{is_loopback, not_a_peer};
use super::config::ProtoConfig;
use super::events::{CrawlerOutput, ShardCommand};
use super::exclusion::PeerExclusion;
use super::table::ChannelTable;
use crate::channels::{ChannelError, ChannelId, ChannelMap};
use crate::endpoint::Endpoint;

/// How long a peer flushed to the store stays in the walk of known peers (the peer store keeps
/// entries for 1 h, §7.6).
pub const KNOWN_PEER_TTL_MS: u64 = 3_600_000;

/// Why [`Reachout::merge_peer`] did not dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeRefusal {
    /// An empty slot `[::]:0`.
    Empty,
    /// Our own listening endpoint: the unspecified or a loopback address with our port.
    OwnEndpoint,
    /// Not a peer: unspecified address, port 0 or a reserved range (§7.7).
    NotAPeer,
    /// The IP (IPv4 address or IPv6 /48) has its share of channels + attempts.
    IpLimit,
    /// The subnet (IPv4 /24, IPv6 /32) has its share of channels + attempts.
    SubnetLimit,
    /// The IP is excluded (§7.5).
    Excluded,
    /// A channel to the endpoint exists (as remote or as peering endpoint).
    Connected,
    /// The endpoint was attempted within the reachout cutoff.
    AttemptedRecently,
    /// The attempts table is full.
    AttemptsFull,
}

crate::counter_set! {
    /// Reachout counters.
    pub struct ReachoutStats {
        groups {}
        /// Dials emitted.
        dials ["reachout", "dial", "out"],
        /// Empty slots skipped.
        empty,
        /// Refused: our own endpoint.
        own_endpoint ["reachout", "own_endpoint", "out"],
        /// Refused: not a peer / reserved.
        not_a_peer ["reachout", "not_a_peer", "out"],
        /// Refused: per-IP limit.
        ip_limit ["reachout", "max_per_ip", "out"],
        /// Refused: per-subnet limit.
        subnet_limit ["reachout", "max_per_subnetwork", "out"],
        /// Refused: excluded.
        excluded ["reachout", "excluded", "out"],
        /// Refused: already connected.
        connected ["reachout", "connected", "out"],
        /// Refused: attempted recently.
        attempted_recently ["reachout", "attempted_recently", "out"],
        /// Refused: attempts table full.
        attempts_full ["reachout", "max_attempts", "out"],
        /// Keepalives stored for pacing.
        keepalives_stored ["reachout", "keepalive_stored", "out"],
        /// Keepalives that replaced an unconsumed one of the same channel.
        keepalives_replaced,
        /// Keepalives dropped because the store was full.
        keepalives_dropped,
        /// Stored keepalives taken for merging.
        keepalives_sampled,
        /// Known peers walked.
        known_walked,
    }
}

impl ReachoutStats {
    fn count(&mut self, r: MergeRefusal) {
        let c = match r {
            MergeRefusal::Empty => &mut self.empty,
            MergeRefusal::OwnEndpoint => &mut self.own_endpoint,
            MergeRefusal::NotAPeer => &mut self.not_a_peer,
            MergeRefusal::IpLimit => &mut self.ip_limit,
            MergeRefusal::SubnetLimit => &mut self.subnet_limit,
            MergeRefusal::Excluded => &mut self.excluded,
            MergeRefusal::Connected => &mut self.connected,
            MergeRefusal::AttemptedRecently => &mut self.attempted_recently,
            MergeRefusal::AttemptsFull => &mut self.attempts_full,
        };
        *c += 1;
    }

    /// Σ of all refusals (empty slots excluded).
    pub fn refused(&self) -> u64 {
        self.own_endpoint
            + self.not_a_peer
            + self.ip_limit
            + self.subnet_limit
            + self.excluded
            + self.connected
            + self.attempted_recently
            + self.attempts_full
    }
}

/// Reachout settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachoutConfig {
    /// Whether private ranges are peers.
    pub allow_local_peers: bool,
    /// Our listening port.
    pub listen_port: u16,
    /// No second attempt to an endpoint within this time.
    pub reachout_cutoff_ms: u64,
    /// One merge per walker per this period.
    pub merge_period_ms: u64,
    /// A new walk of the known peers starts at most this often.
    pub known_walk_interval_ms: u64,
    /// Channels whose latest keepalive is kept.
    pub max_stored_keepalives: usize,
    /// Known peers remembered for the cached walk.
    pub max_known_peers: usize,
    /// Number of shards dials are spread over (round-robin).
    pub shard_count: u16,
}

impl ReachoutConfig {
    /// Settings from the protocol config.
    pub fn from_proto(config: &ProtoConfig, shard_count: u16) -> ReachoutConfig {
        ReachoutConfig {
            allow_local_peers: config.allow_local_peers,
            listen_port: config.listen_port,
            reachout_cutoff_ms: config.reachout_cutoff_ms,
            merge_period_ms: config.merge_period_ms.max(1),
            known_walk_interval_ms: config.peer_store_interval_ms,
            max_stored_keepalives: config.max_channels.max(1),
            max_known_peers: 4096,
            shard_count: shard_count.max(1),
        }
    }
}

/// What [`Reachout::merge_peer`] consults.
#[derive(Clone, Copy)]
pub struct MergeContext<'a> {
    /// The channel map (attempts and limits).
    pub channels: &'a ChannelMap,
    /// The crawler's channel table (peering endpoints).
    pub table: &'a ChannelTable,
    /// The excluded peers.
    pub exclusion: &'a Mutex<PeerExclusion>,
}

/// The reachout state: stored keepalives, the known-peer walk, pacing timers, counters.
#[derive(Debug)]
pub struct Reachout {
    config: ReachoutConfig,
    stored: BTreeMap<ChannelId, [Endpoint; 8]>,
    current: VecDeque<Endpoint>,
    next_keepalive_ms: u64,
    known: BTreeMap<Endpoint, u64>,
    walk: VecDeque<Endpoint>,
    next_walk_start_ms: u64,
    next_known_ms: u64,
    next_shard: u16,
    stats: ReachoutStats,
}

impl Reachout {
    /// Empty state.
    pub fn new(config: ReachoutConfig) -> Reachout {
        Reachout {
            config,
            stored: BTreeMap::new(),
            current: VecDeque::new(),
            next_keepalive_ms: 0,
            known: BTreeMap::new(),
            walk: VecDeque::new(),
            next_walk_start_ms: 0,
            next_known_ms: 0,
            next_shard: 0,
            stats: ReachoutStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &ReachoutStats {
        &self.stats
    }

    /// The settings.
    pub fn config(&self) -> &ReachoutConfig {
        &self.config
    }

    /// Channels with a stored, unconsumed keepalive.
    pub fn stored_keepalives(&self) -> usize {
        self.stored.len()
    }

    /// Known peers remembered for the cached walk.
    pub fn known_peers(&self) -> usize {
        self.known.len()
    }

    /// `merge_peer` (`track_reachout`, §7.4): refuses for the first matching reason, else
    /// records the attempt in the map and emits a dial to the next shard (round-robin).
    pub fn merge_peer(
        &mut self,
        ep: Endpoint,
        now_ms: u64,
        ctx: MergeContext<'_>,
        out: &mut Vec<CrawlerOutput>,
    ) -> Result<u16, MergeRefusal> {
        let r = self.check_and_dial(ep, now_ms, ctx, out);
        match r {
            Ok(_) => self.stats.dials += 1,
            Err(e) => self.stats.count(e),
        }
        r
    }

    fn check_and_dial(
        &mut self,
        ep: Endpoint,
        now_ms: u64,
        ctx: MergeContext<'_>,
        out: &mut Vec<CrawlerOutput>,
    ) -> Result<u16, MergeRefusal> {
        if ep == Endpoint::UNSPECIFIED {
            return Err(MergeRefusal::Empty);
        }
        let ip = *ep.ip();
        let unspecified = ip.is_unspecified() || ip == Ipv4Addr::UNSPECIFIED.to_ipv6_mapped();
        if ep.port() == self.config.listen_port && (unspecified || is_loopback(ip)) {
            return Err(MergeRefusal::OwnEndpoint);
        }
        let own = Endpoint::localhost(self.config.listen_port);
        if not_a_peer(ep, self.config.allow_local_peers, own) {
            return Err(MergeRefusal::NotAPeer);
        }
        if ctx.exclusion.lock().check(ip, now_ms) {
            return Err(MergeRefusal::Excluded);
        }
        if ctx.channels.contains(&ep) || ctx.table.has_peering_endpoint(&ep) {
            return Err(MergeRefusal::Connected);
        }
        if ctx
            .channels
            .attempted_recently(&ep, now_ms, self.config.reachout_cutoff_ms)
        {
            return Err(MergeRefusal::AttemptedRecently);
        }
        match ctx
            .channels
            .try_attempt(&ep, now_ms, self.config.reachout_cutoff_ms)
        {
            Ok(()) => {}
            Err(ChannelError::IpLimit) => return Err(MergeRefusal::IpLimit),
            Err(ChannelError::SubnetLimit) => return Err(MergeRefusal::SubnetLimit),
            Err(ChannelError::AttemptedRecently) => return Err(MergeRefusal::AttemptedRecently),
            Err(ChannelError::EndpointExists) => return Err(MergeRefusal::Connected),
            Err(_) => return Err(MergeRefusal::AttemptsFull),
        }
        let shard = self.next_shard;
        self.next_shard = (self.next_shard + 1) % self.config.shard_count;
        out.push(CrawlerOutput::Shard {
            shard,
            command: ShardCommand::Dial { endpoint: ep },
        });
        Ok(shard)
    }

    /// Keeps `peers` as the latest unconsumed keepalive of `channel`. When
    /// `max_stored_keepalives` channels already have one, a keepalive from another channel is
    /// dropped.
    pub fn store_keepalive(&mut self, channel: ChannelId, peers: [Endpoint; 8]) {
        if peers.iter().all(|p| *p == Endpoint::UNSPECIFIED) {
            return;
        }
        let len = self.stored.len();
        match self.stored.entry(channel) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                e.insert(peers);
                self.stats.keepalives_replaced += 1;
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                if len >= self.config.max_stored_keepalives {
                    self.stats.keepalives_dropped += 1;
                    return;
                }
                e.insert(peers);
                self.stats.keepalives_stored += 1;
            }
        }
    }

    /// Forgets the stored keepalive of a closed channel.
    pub fn forget_channel(&mut self, channel: ChannelId) {
        self.stored.remove(&channel);
    }

    /// Remembers peers for the cached walk (stored peers at start, flushed peers later),
    /// stamped `now_ms`; entries older than an hour and the oldest beyond the cap go.
    pub fn remember_peers(&mut self, peers: &[Endpoint], now_ms: u64) {
        for p in peers {
            self.known.insert(*p, now_ms);
        }
        let cutoff = now_ms.saturating_sub(KNOWN_PEER_TTL_MS);
        self.known.retain(|_, &mut t| t >= cutoff);
        if self.known.len() > self.config.max_known_peers {
            let mut by_age: Vec<(u64, Endpoint)> =
                self.known.iter().map(|(e, t)| (*t, *e)).collect();
            by_age.sort_unstable();
            let excess = self.known.len() - self.config.max_known_peers;
            for (_, e) in by_age.into_iter().take(excess) {
                self.known.remove(&e);
            }
        }
    }

    /// No new walk of the known peers starts before `until_ms`.
    pub fn defer_known_walk(&mut self, until_ms: u64) {
        self.next_walk_start_ms = self.next_walk_start_ms.max(until_ms);
    }

    /// One paced step of each walker that is due: at most one `merge_peer` from the stored
    /// keepalives and one from the known peers.
    pub fn step(
        &mut self,
        now_ms: u64,
        rng: &mut impl RngCore,
        ctx: MergeContext<'_>,
        out: &mut Vec<CrawlerOutput>,
    ) {
        if now_ms >= self.next_keepalive_ms {
            if self.current.is_empty() && !self.stored.is_empty() {
                let i = rng.random_range(0..self.stored.len());
                let key = *self.stored.keys().nth(i).expect("index in range");
                let peers = self.stored.remove(&key).expect("key present");
                self.current = peers
                    .into_iter()
                    .filter(|p| *p != Endpoint::UNSPECIFIED)
                    .collect();
                self.stats.keepalives_sampled += 1;
            }
            if let Some(ep) = self.current.pop_front() {
                let _ = self.merge_peer(ep, now_ms, ctx, out);
                self.next_keepalive_ms = now_ms + self.config.merge_period_ms;
            }
        }
        if now_ms >= self.next_known_ms {
            if self.walk.is_empty() && now_ms >= self.next_walk_start_ms && !self.known.is_empty() {
                self.walk = self.known.keys().copied().collect();
                self.next_walk_start_ms = now_ms + self.config.known_walk_interval_ms;
            }
            if let Some(ep) = self.walk.pop_front() {
                self.stats.known_walked += 1;
                let _ = self.merge_peer(ep, now_ms, ctx, out);
                self.next_known_ms = now_ms + self.config.merge_period_ms;
            }
        }
    }

    /// When [`step`](Self::step) has work next, if it has any.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        let ka =
            (!self.current.is_empty() || !self.stored.is_empty()).then_some(self.next_keepalive_ms);
        let known = if !self.walk.is_empty() {
            Some(self.next_known_ms)
        } else if !self.known.is_empty() {
            Some(self.next_known_ms.max(self.next_walk_start_ms))
        } else {
            None
        };
        match (ka, known) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
