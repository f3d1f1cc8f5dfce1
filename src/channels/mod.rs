//! The shared channel map: every realtime channel of the node, used at once by the shard threads
//! (insert on handshake success, look up and touch on every message, remove on close) and the
//! crawler thread (fan-out sampling, limits, purge, RPC) (§7.1–7.4).
//!
//! Layout:
//! - **Indexes** (endpoint → channel, node id → channels) live in concurrent maps
//!   ([`backend::DefaultBackend`]: papaya for endpoints, dashmap for node ids). Endpoint
//!   lookups and timestamp updates take no lock.
//! - **Admission state** is split into 64 *stripes*, chosen by the subnet key. A stripe holds,
//!   under a short mutex, the per-IP and per-subnet counts, the members of each IP group
//!   (endpoint, node id), the outbound reachout attempts of its subnets and a dense list of
//!   its channels for random sampling. Because an IP group (IPv4 address or IPv6 /48) lies
//!   inside exactly one subnet (IPv4 /24 or IPv6 /32), every admission rule for an endpoint is
//!   decided under one stripe lock: two shards inserting from the same subnet serialise, others
//!   do not contend. The total channel cap is an atomic reservation.
//! - Lock order: stripe mutex, then the backend's internal locks. No backend guard is ever held
//!   across another map call.
//!
//! The map never reads a clock: every time is passed in as `now_ms`.

pub mod backend;
mod channel;

use crate::endpoint::Endpoint;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam::utils::CachePadded;
use parking_lot::Mutex;
use rand::{Rng, RngCore};

pub use backend::{Backend, DefaultBackend};
pub use channel::{Channel, ChannelId, Direction};

use crate::endpoint::{IpKey, SubnetKey};
use crate::types::{Network, PublicKey};

/// Number of admission stripes (a power of two).
const STRIPES: usize = 64;

/// Limits enforced by [`ChannelMap`] (§7.2). Build with [`ChannelLimits::for_network`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Channels plus pending outbound attempts per IPv4 address or IPv6 /48.
    pub max_peers_per_ip: usize,
    /// Channels plus pending outbound attempts per IPv4 /24 or IPv6 /32.
    pub max_peers_per_subnetwork: usize,
    /// Inbound channels (the peer dialed us).
    pub max_channels: usize,
    /// Outbound channels (we dialed), a cap of their own: inbound peers can never take these
    /// places, so a flood of inbound sybils cannot crowd out the peers we chose.
    pub max_outbound: usize,
    /// Entries in the outbound attempts table.
    pub max_attempts: usize,
}

impl ChannelLimits {
    /// The defaults of a network: per IP 4 (dev and beta 256), per subnet 16 (dev and beta
    /// 256, as the reference's `network_config`), 4096 channels (dev 256: twice the 2048 /
    /// 128 inbound connection limit), 4096 attempts.
    pub const fn for_network(network: Network) -> Self {
        match network {
            Network::Live | Network::Test => ChannelLimits {
                max_peers_per_ip: 4,
                max_peers_per_subnetwork: 16,
                max_channels: 4096,
                max_outbound: 4096,
                max_attempts: 4096,
            },
            Network::Beta => ChannelLimits {
                max_peers_per_ip: 256,
                max_peers_per_subnetwork: 256,
                max_channels: 4096,
                max_outbound: 4096,
                max_attempts: 4096,
            },
            Network::Dev => ChannelLimits {
                max_peers_per_ip: 256,
                max_peers_per_subnetwork: 256,
                max_channels: 256,
                max_outbound: 256,
                max_attempts: 4096,
            },
        }
    }
}

impl Default for ChannelLimits {
    fn default() -> Self {
        ChannelLimits::for_network(Network::Live)
    }
}

/// Why the map refused a channel or an outbound attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// A channel with this remote endpoint already exists.
    #[error("a channel to this endpoint already exists")]
    EndpointExists,
    /// A channel with the same node id from the same IP (IPv4 address or IPv6 /48) exists.
    #[error("a channel with this node id from the same IP already exists")]
    DuplicateNodeId,
    /// The IP group has reached `max_peers_per_ip` (channels + pending attempts).
    #[error("per-IP limit reached")]
    IpLimit,
    /// The subnet has reached `max_peers_per_subnetwork` (channels + pending attempts).
    #[error("per-subnetwork limit reached")]
    SubnetLimit,
    /// The map holds `max_channels` inbound (or `max_outbound` outbound) channels.
    #[error("channel limit reached")]
    ChannelLimit,
    /// The endpoint was attempted within the window.
    #[error("endpoint attempted recently")]
    AttemptedRecently,
    /// The attempts table holds `max_attempts` entries.
    #[error("attempts table full")]
    AttemptsFull,
}

/// What [`ChannelMap::try_insert`] needs to create a channel.
#[derive(Clone, Copy, Debug)]
pub struct NewChannel {
    /// The peer's authenticated node id.
    pub node_id: PublicKey,
    /// The protocol version to record.
    pub protocol_version: u8,
    /// The remote endpoint of the connection.
    pub remote: Endpoint,
    /// The owning shard.
    pub shard: u16,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Creation time (ms); also the initial last sent / received time.
    pub now_ms: u64,
}

/// Channels, pending outbound attempts and unverified inbound connections counted against a
/// limit. Channels and attempts share the limit; unverified inbound connections have a count
/// of their own under the same limit (see [`ChannelMap::add_inbound`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Channels.
    pub channels: usize,
    /// Pending outbound attempts (recorded, not yet ended or turned into a channel).
    pub attempts: usize,
    /// Accepted connections whose handshake has not completed ([`ChannelMap::add_inbound`]).
    pub inbound: usize,
}

impl Usage {
    /// Channels plus pending attempts (unverified inbound connections are limited apart).
    pub fn total(&self) -> usize {
        self.channels + self.attempts
    }

    /// Nothing is counted (the entry can go).
    pub fn is_empty(&self) -> bool {
        self.total() == 0 && self.inbound == 0
    }
}

#[derive(Debug, Default)]
struct IpGroup {
    members: Vec<Arc<Channel>>,
    attempts: usize,
    inbound: usize,
}

impl IpGroup {
    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.attempts == 0 && self.inbound == 0
    }
}

#[derive(Clone, Copy, Debug)]
struct Attempt {
    at_ms: u64,
    /// Still counted in the limits (not ended, not turned into a channel).
    pending: bool,
}

#[derive(Default)]
struct StripeInner {
    ips: HashMap<IpKey, IpGroup>,
    subnets: HashMap<SubnetKey, Usage>,
    attempts: HashMap<Endpoint, Attempt>,
    list: Vec<Arc<Channel>>,
}

#[derive(Default)]
struct Stripe {
    /// `inner.list.len()`, readable without the lock (sampling).
    len: AtomicUsize,
    inner: Mutex<StripeInner>,
}

impl StripeInner {
    fn ip_usage(&self, key: &IpKey) -> Usage {
        self.ips.get(key).map_or(Usage::default(), |g| Usage {
            channels: g.members.len(),
            attempts: g.attempts,
            inbound: g.inbound,
        })
    }

    fn subnet_usage(&self, key: &SubnetKey) -> Usage {
        self.subnets.get(key).copied().unwrap_or_default()
    }

    /// Stops counting the pending attempt at `ep`, if any; true if one was pending.
    fn release_attempt(&mut self, ep: &Endpoint) -> bool {
        let Some(a) = self.attempts.get_mut(ep) else {
            return false;
        };
        if !a.pending {
            return false;
        }
        a.pending = false;
        self.uncount_attempt(ep);
        true
    }

    fn count_attempt(&mut self, ep: &Endpoint) {
        self.ips.entry(ep.ip_key()).or_default().attempts += 1;
        self.subnets.entry(ep.subnet_key()).or_default().attempts += 1;
    }

    fn uncount_attempt(&mut self, ep: &Endpoint) {
        let ip = ep.ip_key();
        if let Some(g) = self.ips.get_mut(&ip) {
            g.attempts = g.attempts.saturating_sub(1);
            if g.is_empty() {
                self.ips.remove(&ip);
            }
        }
        let sub = ep.subnet_key();
        if let Some(u) = self.subnets.get_mut(&sub) {
            u.attempts = u.attempts.saturating_sub(1);
            if u.is_empty() {
                self.subnets.remove(&sub);
            }
        }
    }

    /// Refused if one more unverified connection from `ep` would pass the per-IP or
    /// per-subnet limit.
    fn check(&self, ep: &Endpoint, limits: &ChannelLimits) -> Result<(), ChannelError> {
        if self.ip_usage(&ep.ip_key()).inbound >= limits.max_peers_per_ip {
            return Err(ChannelError::IpLimit);
        }
        if self.subnet_usage(&ep.subnet_key()).inbound >= limits.max_peers_per_subnetwork {
            return Err(ChannelError::SubnetLimit);
        }
        Ok(())
    }

    fn uncount_inbound(&mut self, ep: &Endpoint) -> bool {
        let ip = ep.ip_key();
        let Some(g) = self.ips.get_mut(&ip) else {
            return false;
        };
        if g.inbound == 0 {
            return false;
        }
        g.inbound -= 1;
        if g.is_empty() {
            self.ips.remove(&ip);
        }
        let sub = ep.subnet_key();
        if let Some(u) = self.subnets.get_mut(&sub) {
            u.inbound = u.inbound.saturating_sub(1);
            if u.is_empty() {
                self.subnets.remove(&sub);
            }
        }
        true
    }
}

/// The shared channel map. See the [module docs](self) for the layout.
///
/// `B` is the index storage; the default ([`DefaultBackend`]) was chosen with
/// `benches/channels.rs` (see its docs for the figures).
pub struct ChannelMap<B: Backend = DefaultBackend> {
    limits: ChannelLimits,
    index: B,
    stripes: Box<[CachePadded<Stripe>]>,
    stripe_hasher: backend::FoldBuildHasher,
    total: CachePadded<AtomicUsize>,
    outbound_total: AtomicUsize,
    attempts_total: AtomicUsize,
    next_id: AtomicU64,
}

impl ChannelMap {
    /// An empty map with these limits and the default backend.
    pub fn new(limits: ChannelLimits) -> Self {
        ChannelMap::with_backend(limits)
    }

    /// An empty map whose stripe assignment is keyed by `seed` instead of a per-process random
    /// key, so that [`snapshot`](Self::snapshot) order and [`random_set`](Self::random_set)
    /// draws depend only on the inserts and the caller's RNG (seeded simulations).
    ///
    /// The key only picks one of 64 stripes; it is not what bounds the work per channel (each
    /// stripe's maps use std's randomly keyed SipHash, and the admission limits bound them). A
    /// peer who knew the key could at worst steer its subnets into one stripe, i.e. make
    /// inserts from those subnets share one mutex. Production draws the seed from the OS RNG
    /// (as [`new`](Self::new) does), so it stays secret; a simulation takes it from its seeded
    /// RNG.
    pub fn with_hash_seed(limits: ChannelLimits, seed: u64) -> Self {
        let mut map = ChannelMap::with_backend(limits);
        map.stripe_hasher = backend::FoldBuildHasher::with_seed(seed);
        map
    }
}

impl<B: Backend> ChannelMap<B> {
    /// An empty map with these limits and backend `B`.
    pub fn with_backend(limits: ChannelLimits) -> Self {
        ChannelMap {
            limits,
            index: B::with_capacity(limits.max_channels.min(1 << 16)),
            stripes: (0..STRIPES).map(|_| CachePadded::default()).collect(),
            stripe_hasher: backend::FoldBuildHasher::default(),
            total: CachePadded::new(AtomicUsize::new(0)),
            outbound_total: AtomicUsize::new(0),
            attempts_total: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ChannelLimits {
        &self.limits
    }

    fn stripe_of(&self, subnet: &SubnetKey) -> &Stripe {
        let h = self.stripe_hasher.hash_one(subnet) as usize;
        &self.stripes[h & (STRIPES - 1)]
    }

    // ---- per-message path: no locks ----

    /// The channel at `ep`, if any.
    #[inline]
    pub fn get(&self, ep: &Endpoint) -> Option<Arc<Channel>> {
        self.index.with(ep, Arc::clone)
    }

    /// Calls `f` with the channel at `ep` without cloning the `Arc`. `f` must not call back
    /// into the map.
    #[inline]
    pub fn with_channel<R>(&self, ep: &Endpoint, f: impl FnOnce(&Channel) -> R) -> Option<R> {
        self.index.with(ep, |c| f(c))
    }

    /// True when a channel to `ep` exists.
    #[inline]
    pub fn contains(&self, ep: &Endpoint) -> bool {
        self.index.with(ep, |_| ()).is_some()
    }

    /// Records a received message on the channel at `ep`; false if there is none.
    #[inline]
    pub fn touch_received(&self, ep: &Endpoint, now_ms: u64) -> bool {
        self.index.with(ep, |c| c.touch_received(now_ms)).is_some()
    }

    /// Records a sent message on the channel at `ep`; false if there is none.
    #[inline]
    pub fn touch_sent(&self, ep: &Endpoint, now_ms: u64) -> bool {
        self.index.with(ep, |c| c.touch_sent(now_ms)).is_some()
    }

    /// An alive channel of `node_id`, if any (the first one registered).
    pub fn find_node_id(&self, node_id: &PublicKey) -> Option<Arc<Channel>> {
        self.index
            .node_with(node_id, |l| l.iter().find(|c| c.is_alive()).cloned())
            .flatten()
    }

    /// All channels of `node_id` (one per IP group at most, several across IPs).
    pub fn channels_of_node(&self, node_id: &PublicKey) -> Vec<Arc<Channel>> {
        self.index
            .node_with(node_id, |l| l.to_vec())
            .unwrap_or_default()
    }

    /// The number of channels.
    pub fn len(&self) -> usize {
        self.total.load(Ordering::Relaxed) + self.outbound_total.load(Ordering::Relaxed)
    }

    /// True when there is no channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // ---- counts (short stripe lock) ----

    /// Channels and pending attempts of an IP group.
    pub fn ip_usage(&self, key: IpKey) -> Usage {
        let sub = SubnetKey::of_ip_key(key);
        self.stripe_of(&sub).inner.lock().ip_usage(&key)
    }

    /// Channels and pending attempts of a subnet.
    pub fn subnet_usage(&self, key: SubnetKey) -> Usage {
        self.stripe_of(&key).inner.lock().subnet_usage(&key)
    }

    /// The number of entries in the attempts table (pending or not).
    pub fn attempt_count(&self) -> usize {
        self.attempts_total.load(Ordering::Relaxed)
    }

    // ---- admission ----

    /// Creates a channel if every rule allows it, atomically with respect to other inserts,
    /// removals and attempts from any thread. Refused when: a channel to the endpoint exists;
    /// a channel with the same node id from the same IP exists (the same node id from another
    /// IP is fine); the IP group or subnet is full (channels + pending attempts; an outbound
    /// channel takes over the pending attempt to its own endpoint); the map is full.
    /// `not_a_peer` and exclusion are the caller's checks (§6.3 item 5).
    pub fn try_insert(&self, new: NewChannel) -> Result<Arc<Channel>, ChannelError> {
        self.insert(new, false, |_| false).map(|(ch, _)| ch)
    }

    /// [`try_insert`](Self::try_insert) for an inbound connection counted with
    /// [`add_inbound`](Self::add_inbound): on success the unverified count ends in the same
    /// step as the channel is counted. On failure the count stays; the caller ends it with
    /// [`end_inbound`](Self::end_inbound) when the connection closes.
    pub fn try_insert_counted(&self, new: NewChannel) -> Result<Arc<Channel>, ChannelError> {
        self.insert(new, true, |_| false).map(|(ch, _)| ch)
    }

    /// [`try_insert`](Self::try_insert) (or, with `counted`,
    /// [`try_insert_counted`](Self::try_insert_counted)) where a channel with the same node id
    /// from the same IP does not simply refuse the new one: `keep_new(existing)` decides,
    /// and when it says so the existing channel is removed (marked closed) in the same step
    /// as the new one is inserted and is returned, for its connection to be closed. Both
    /// sides of a crossed dial must decide alike (see `proto::handshake::keep_new_channel`).
    pub fn try_insert_resolving(
        &self,
        new: NewChannel,
        counted: bool,
        keep_new: impl FnOnce(&Channel) -> bool,
    ) -> Result<(Arc<Channel>, Option<Arc<Channel>>), ChannelError> {
        self.insert(new, counted, keep_new)
    }

    fn insert(
        &self,
        new: NewChannel,
        counted: bool,
        keep_new: impl FnOnce(&Channel) -> bool,
    ) -> Result<(Arc<Channel>, Option<Arc<Channel>>), ChannelError> {
        let ep = new.remote;
        let ip = ep.ip_key();
        let sub = ep.subnet_key();
        let stripe = self.stripe_of(&sub);
        let mut inner = stripe.inner.lock();

        let group = inner.ips.get(&ip);
        let mut replace: Option<(Endpoint, ChannelId, Direction)> = None;
        if let Some(g) = group {
            if g.members.iter().any(|m| m.remote() == ep) {
                return Err(ChannelError::EndpointExists);
            }
            if let Some(d) = g.members.iter().find(|m| *m.node_id() == new.node_id) {
                if !keep_new(d) {
                    return Err(ChannelError::DuplicateNodeId);
                }
                replace = Some((d.remote(), d.id(), d.direction()));
            }
        }
        // An outbound channel replaces its own pending attempt rather than adding to it.
        let own_attempt = new.direction == Direction::Outbound
            && inner.attempts.get(&ep).is_some_and(|a| a.pending);
        let own_inbound = counted
            && new.direction == Direction::Inbound
            && inner.ips.get(&ip).is_some_and(|g| g.inbound > 0);
        // A replaced channel's place is the new one's.
        let credit = usize::from(own_attempt) + usize::from(replace.is_some());
        if inner.ip_usage(&ip).total() - credit >= self.limits.max_peers_per_ip {
            return Err(ChannelError::IpLimit);
        }
        if inner.subnet_usage(&sub).total() - credit >= self.limits.max_peers_per_subnetwork {
            return Err(ChannelError::SubnetLimit);
        }
        let (total, max) = match new.direction {
            Direction::Inbound => (&*self.total, self.limits.max_channels),
            Direction::Outbound => (&self.outbound_total, self.limits.max_outbound),
        };
        let same_place = replace.is_some_and(|(_, _, d)| d == new.direction);
        if !same_place
            && total
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| {
                    (t < max).then_some(t + 1)
                })
                .is_err()
        {
            return Err(ChannelError::ChannelLimit);
        }
        // Committed: nothing below can fail.
        let replaced =
            replace.and_then(|(rep, id, _)| self.remove_locked(stripe, &mut inner, rep, id));
        if same_place {
            // The removal gave the place back; the new channel takes it.
            total.fetch_add(1, Ordering::AcqRel);
        }
        if own_attempt {
            inner.release_attempt(&ep);
        }
        if own_inbound {
            inner.uncount_inbound(&ep);
        }
        let id = ChannelId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let ch = Arc::new(Channel::new(
            id,
            new.node_id,
            new.protocol_version,
            ep,
            new.shard,
            new.direction,
            new.now_ms,
        ));
        inner.ips.entry(ip).or_default().members.push(ch.clone());
        inner.subnets.entry(sub).or_default().channels += 1;
        ch.slot.store(inner.list.len() as u32, Ordering::Relaxed);
        inner.list.push(ch.clone());
        stripe.len.store(inner.list.len(), Ordering::Relaxed);
        self.index.node_insert(&ch);
        self.index.insert(ch.clone());
        Ok((ch, replaced))
    }

    /// Removes the channel at `ep` and marks it closed; returns it.
    pub fn remove(&self, ep: &Endpoint) -> Option<Arc<Channel>> {
        let ep = *ep;
        let sub = ep.subnet_key();
        let stripe = self.stripe_of(&sub);
        let mut inner = stripe.inner.lock();
        let id = inner
            .ips
            .get(&ep.ip_key())?
            .members
            .iter()
            .find(|m| m.remote() == ep)?
            .id();
        self.remove_locked(stripe, &mut inner, ep, id)
    }

    /// Removes `channel` if it is still in the map (same id at its endpoint) and marks it
    /// closed; true if it was removed.
    pub fn remove_channel(&self, channel: &Channel) -> bool {
        channel.close();
        let ep = channel.remote();
        let stripe = self.stripe_of(&ep.subnet_key());
        let mut inner = stripe.inner.lock();
        self.remove_locked(stripe, &mut inner, ep, channel.id())
            .is_some()
    }

    fn remove_locked(
        &self,
        stripe: &Stripe,
        inner: &mut StripeInner,
        ep: Endpoint,
        id: ChannelId,
    ) -> Option<Arc<Channel>> {
        let ip = ep.ip_key();
        let group = inner.ips.get_mut(&ip)?;
        let pos = group.members.iter().position(|m| m.id() == id)?;
        let ch = group.members.swap_remove(pos);
        if group.is_empty() {
            inner.ips.remove(&ip);
        }
        let sub = ep.subnet_key();
        if let Some(u) = inner.subnets.get_mut(&sub) {
            u.channels = u.channels.saturating_sub(1);
            if u.is_empty() {
                inner.subnets.remove(&sub);
            }
        }
        // The dense list position is recorded in the channel (kept exact under this lock).
        let slot = ch.slot.load(Ordering::Relaxed) as usize;
        debug_assert!(inner.list.get(slot).is_some_and(|c| c.id() == id));
        let slot = if inner.list.get(slot).is_some_and(|c| c.id() == id) {
            slot
        } else {
            inner.list.iter().position(|c| c.id() == id)?
        };
        inner.list.swap_remove(slot);
        if let Some(moved) = inner.list.get(slot) {
            moved.slot.store(slot as u32, Ordering::Relaxed);
        }
        stripe.len.store(inner.list.len(), Ordering::Relaxed);
        self.index.remove(&ep);
        self.index.node_remove(ch.node_id(), id);
        match ch.direction() {
            Direction::Inbound => self.total.fetch_sub(1, Ordering::AcqRel),
            Direction::Outbound => self.outbound_total.fetch_sub(1, Ordering::AcqRel),
        };
        ch.close();
        Some(ch)
    }

    /// Removes and returns every channel to close (§7.3): last sent before
    /// `now_ms - max_idle_ms`, protocol version below `min_version`, or already closed. All
    /// returned channels are marked closed. Attempts older than the same cutoff are dropped.
    /// (Live uses `max_idle_ms` = 300 s, dev 5 s.)
    pub fn purge(&self, now_ms: u64, max_idle_ms: u64, min_version: u8) -> Vec<Arc<Channel>> {
        let cutoff = now_ms.saturating_sub(max_idle_ms);
        let mut out = Vec::new();
        for stripe in self.stripes.iter() {
            let mut inner = stripe.inner.lock();
            let victims: Vec<(Endpoint, ChannelId)> = inner
                .list
                .iter()
                .filter(|c| {
                    !c.is_alive() || c.last_sent_ms() < cutoff || c.protocol_version() < min_version
                })
                .map(|c| (c.remote(), c.id()))
                .collect();
            for (ep, id) in victims {
                if let Some(ch) = self.remove_locked(stripe, &mut inner, ep, id) {
                    out.push(ch);
                }
            }
            let old: Vec<(Endpoint, bool)> = inner
                .attempts
                .iter()
                .filter(|(_, a)| a.at_ms < cutoff)
                .map(|(ep, a)| (*ep, a.pending))
                .collect();
            for (ep, pending) in old {
                inner.attempts.remove(&ep);
                if pending {
                    inner.uncount_attempt(&ep);
                }
                self.attempts_total.fetch_sub(1, Ordering::Relaxed);
            }
        }
        out
    }

    // ---- unverified inbound connections ----

    /// Whether one more unverified connection from `ep` fits now. Unverified inbound
    /// connections are limited per IP group and per subnet by the same `max_peers_per_ip` /
    /// `max_peers_per_subnetwork` as channels, in a count of their own: a source can hold
    /// at most that many connections that have not authenticated, however many channels it
    /// has (a count shared with channels would refuse a peer's reconnect, or one side of a
    /// crossed dial, while its old channel is still in the map). Read-only: the check the
    /// listener makes before it gives an accepted socket a slot.
    pub fn check_inbound(&self, ep: &Endpoint) -> Result<(), ChannelError> {
        let ep = *ep;
        let stripe = self.stripe_of(&ep.subnet_key());
        stripe.inner.lock().check(&ep, &self.limits)
    }

    /// Counts an accepted, not yet authenticated connection from `ep` in its IP's and subnet's
    /// limits, if it fits ([`check_inbound`](Self::check_inbound)). The count ends with
    /// [`end_inbound`](Self::end_inbound) or passes to the channel
    /// ([`try_insert_counted`](Self::try_insert_counted)).
    pub fn add_inbound(&self, ep: &Endpoint) -> Result<(), ChannelError> {
        let ep = *ep;
        let ip = ep.ip_key();
        let sub = ep.subnet_key();
        let stripe = self.stripe_of(&sub);
        let mut inner = stripe.inner.lock();
        inner.check(&ep, &self.limits)?;
        inner.ips.entry(ip).or_default().inbound += 1;
        inner.subnets.entry(sub).or_default().inbound += 1;
        Ok(())
    }

    /// Ends the count of an unverified inbound connection from `ep` (it closed, or failed its
    /// handshake). True if one was counted.
    pub fn end_inbound(&self, ep: &Endpoint) -> bool {
        let ep = *ep;
        let stripe = self.stripe_of(&ep.subnet_key());
        stripe.inner.lock().uncount_inbound(&ep)
    }

    /// Inbound channels (the part of [`len`](Self::len) capped by `max_channels`).
    pub fn inbound_len(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Outbound channels (capped by `max_outbound`).
    pub fn outbound_len(&self) -> usize {
        self.outbound_total.load(Ordering::Relaxed)
    }

    // ---- outbound attempts ----

    /// Records an outbound reachout to `ep` at `now_ms` (the map's half of `track_reachout`,
    /// §7.4). Refused when: a channel to `ep` exists; `ep` was attempted within `window_ms`
    /// (300 s in the reference); the IP group or subnet is full (channels + pending attempts);
    /// the attempts table is full. A recorded attempt counts in the limits until
    /// [`end_attempt`](Self::end_attempt), an outbound channel to `ep`, or a purge.
    pub fn try_attempt(
        &self,
        ep: &Endpoint,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<(), ChannelError> {
        let ep = *ep;
        let ip = ep.ip_key();
        let sub = ep.subnet_key();
        let stripe = self.stripe_of(&sub);
        let mut inner = stripe.inner.lock();
        if inner
            .ips
            .get(&ip)
            .is_some_and(|g| g.members.iter().any(|m| m.remote() == ep))
        {
            return Err(ChannelError::EndpointExists);
        }
        let existing = inner.attempts.get(&ep).copied();
        if let Some(a) = existing
            && now_ms.saturating_sub(a.at_ms) < window_ms
        {
            return Err(ChannelError::AttemptedRecently);
        }
        let credit = usize::from(existing.is_some_and(|a| a.pending));
        if inner.ip_usage(&ip).total() - credit >= self.limits.max_peers_per_ip {
            return Err(ChannelError::IpLimit);
        }
        if inner.subnet_usage(&sub).total() - credit >= self.limits.max_peers_per_subnetwork {
            return Err(ChannelError::SubnetLimit);
        }
        if existing.is_none() {
            let max = self.limits.max_attempts;
            if self
                .attempts_total
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| {
                    (t < max).then_some(t + 1)
                })
                .is_err()
            {
                return Err(ChannelError::AttemptsFull);
            }
        }
        inner.attempts.insert(
            ep,
            Attempt {
                at_ms: now_ms,
                pending: true,
            },
        );
        if credit == 0 {
            inner.count_attempt(&ep);
        }
        Ok(())
    }

    /// True when `ep` was attempted within `window_ms` before `now_ms`.
    pub fn attempted_recently(&self, ep: &Endpoint, now_ms: u64, window_ms: u64) -> bool {
        let ep = *ep;
        let stripe = self.stripe_of(&ep.subnet_key());
        let inner = stripe.inner.lock();
        inner
            .attempts
            .get(&ep)
            .is_some_and(|a| now_ms.saturating_sub(a.at_ms) < window_ms)
    }

    /// Ends the pending attempt to `ep` (the dial failed or was given up): it stops counting in
    /// the limits but stays recorded for [`attempted_recently`](Self::attempted_recently).
    /// True if a pending attempt was ended.
    pub fn end_attempt(&self, ep: &Endpoint) -> bool {
        let ep = *ep;
        let stripe = self.stripe_of(&ep.subnet_key());
        stripe.inner.lock().release_attempt(&ep)
    }

    // ---- crawler reads ----

    /// Every channel, stripe by stripe (each stripe consistent, the whole not a single instant).
    pub fn snapshot(&self) -> Vec<Arc<Channel>> {
        let mut out = Vec::with_capacity(self.len());
        for stripe in self.stripes.iter() {
            out.extend(stripe.inner.lock().list.iter().cloned());
        }
        out
    }

    /// Up to `n` distinct alive channels chosen at random (§7.4 `random_set`): at most `2n`
    /// uniform draws over all channels, skipping closed channels and repeats. When the map holds
    /// at most `n` channels, all alive ones are returned.
    pub fn random_set(&self, n: usize, rng: &mut impl RngCore) -> Vec<Arc<Channel>> {
        // Cumulative stripe lengths: a draw r falls in the first stripe whose end exceeds it.
        let mut ends = [0usize; STRIPES];
        let mut total = 0usize;
        for (end, s) in ends.iter_mut().zip(self.stripes.iter()) {
            total += s.len.load(Ordering::Relaxed);
            *end = total;
        }
        if total == 0 || n == 0 {
            return Vec::new();
        }
        if total <= n {
            let mut all: Vec<_> = self.snapshot();
            all.retain(|c| c.is_alive());
            all.truncate(n);
            return all;
        }
        let mut out: Vec<Arc<Channel>> = Vec::with_capacity(n);
        for _ in 0..n.saturating_mul(2) {
            if out.len() >= n {
                break;
            }
            let r = rng.random_range(0..total);
            let s = ends.partition_point(|&end| end <= r).min(STRIPES - 1);
            let start = if s == 0 { 0 } else { ends[s - 1] };
            // The list may have changed since the lengths were read: a miss is a wasted draw.
            let pick = self.stripes[s].inner.lock().list.get(r - start).cloned();
            if let Some(c) = pick
                && c.is_alive()
                && !out.iter().any(|o| o.id() == c.id())
            {
                out.push(c);
            }
        }
        out
    }

    /// Removes every channel owned by `shard` and marks it closed; returns them. For a shard
    /// that died without closing its connections: its peers must not stay "connected" (and
    /// their node ids refused as duplicates) until the next purge.
    pub fn remove_shard(&self, shard: u16) -> Vec<Arc<Channel>> {
        let mut out = Vec::new();
        for stripe in self.stripes.iter() {
            let mut inner = stripe.inner.lock();
            let victims: Vec<(Endpoint, ChannelId)> = inner
                .list
                .iter()
                .filter(|c| c.shard() == shard)
                .map(|c| (c.remote(), c.id()))
                .collect();
            for (ep, id) in victims {
                if let Some(ch) = self.remove_locked(stripe, &mut inner, ep, id) {
                    out.push(ch);
                }
            }
        }
        out
    }
}
