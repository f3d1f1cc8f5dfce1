//! The shard handler: one [`ShardCore`] driven by one io_uring shard.
//!
//! It maps io connection ids to proto connection ids (`ConnId::to_u64`), turns every io
//! callback into a core call, and carries out what the core asks: socket actions go to the
//! ring, crawler events to a bounded channel (never blocking), signature checks to a per-shard
//! [`BatchVerifier`] that flushes when it holds its effective cap of items, `batch_delay` after
//! its first item, or when the ring is about to sleep.
//!
//! The cap adapts ([`AdaptiveBatch`]): a failed multiscalar batch costs the batch check plus one
//! single verification per item, about twice the single cost per item, so a source of bad
//! signatures could double the shard's verify cost. After a flush with an invalid signature the
//! cap halves (down to 1, plain single verification); after [`AdaptiveBatch::GROW_AFTER`] clean
//! flushes in a row it doubles again, up to `batch_max`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Sender, TrySendError};
use parking_lot::Mutex;
use rand_chacha::ChaCha20Rng;

use crate::crypto::{BatchStats, BatchVerifier, KeyCache};
use crate::endpoint::Endpoint;
use crate::io::{self, CloseReason, Handler, Io, Screen};
use crate::proto::events::{ConnId, CrawlerEvent, IoAction, ShardCommand, VerifyRequest};
use crate::proto::shard::{Screening, ShardCore, ShardOutput, ShardShared};
use crate::proto::stats::ShardStats;

/// How often the core's timers run (syn-cookie purge, handshake timeouts).
const TICK: Duration = Duration::from_millis(100);
/// How often the shard's metrics are published at most.
const PUBLISH: Duration = Duration::from_millis(100);
/// Most ChannelUp/ChannelDown events kept while the crawler's queue is full.
const LIFECYCLE_BACKLOG: usize = 65_536;

/// Number of batch-size histogram buckets: 1, 2–3, 4–7, …, 64–127, ≥ 128.
pub const BATCH_BUCKETS: usize = 8;

/// The bucket of a batch of `n` items (`n ≥ 1`): ⌊log2 n⌋, capped.
pub fn batch_bucket(n: usize) -> usize {
    (usize::BITS - 1 - n.max(1).leading_zeros()).min(BATCH_BUCKETS as u32 - 1) as usize
}

/// Why a verify batch was flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlushCause {
    Full,
    Delay,
    Sleep,
}

crate::counter_set! {
    /// Counters of one shard's batch verifier.
    pub struct BatchMetrics {
        groups {
            /// Flushes by size (requests handed to the verifier): bucket `i` counts sizes
            /// `2^i ..= 2^(i+1) − 1`, the last bucket everything from 128.
            sizes: [u64; BATCH_BUCKETS],
            /// The verifier's own counters: multiscalar batches, failed batches (fallbacks to
            /// single verification), items verified singly.
            verifier: BatchStats,
        }
        /// Flushes (each answers every pending request).
        flushes ["signature_batch", "flushes", "in"],
        /// Flushes because the batch reached `batch_max`.
        flush_full ["signature_batch", "flush_full", "in"],
        /// Flushes because `batch_delay` passed since the first pending item.
        flush_delay ["signature_batch", "flush_delay", "in"],
        /// Flushes because the ring was about to sleep.
        flush_sleep ["signature_batch", "flush_sleep", "in"],
        /// Requests answered.
        requests ["signature_batch", "requests", "in"],
        /// Requests whose key is not a curve point (answered `false` without verifying).
        invalid_keys ["signature_batch", "invalid_keys", "in"],
        /// Times the adaptive cap was halved (a flush held an invalid signature).
        cap_shrinks @ "nanopeer_verify_batch_cap_shrinks_total",
        /// Times the adaptive cap was doubled (after clean flushes).
        cap_grows,
        /// The current adaptive cap (summed over shards in node totals).
        cap @ "nanopeer_verify_batch_cap",
        /// Requests verified on their own, outside the batch, because their source sent an
        /// invalid signature recently (the per-source adaptation).
        alone ["signature_batch", "alone", "in"],
    }
}

/// The effective batch size of one shard's verifier, adapted to the share of bad signatures.
///
/// A multiscalar batch that fails is re-verified item by item, so under a flood of bad
/// signatures fixed batches cost about 2× single verification per item. The cap halves after
/// every flush that held an invalid signature (floor 1: single verification, no batch check)
/// and doubles after [`Self::GROW_AFTER`] clean flushes in a row (ceiling `max`). Under 100 %
/// bad signatures it stays at 1 (cost per item ≈ single); with none it stays at `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptiveBatch {
    max: usize,
    cap: usize,
    clean: u32,
    shrinks: u64,
    grows: u64,
}

impl AdaptiveBatch {
    /// Clean flushes in a row after which the cap doubles.
    pub const GROW_AFTER: u32 = 4;

    /// Starts at `max` (at least 1).
    pub fn new(max: usize) -> AdaptiveBatch {
        let max = max.max(1);
        AdaptiveBatch {
            max,
            cap: max,
            clean: 0,
            shrinks: 0,
            grows: 0,
        }
    }

    /// The current cap: flush when this many requests are pending.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The ceiling (`batch_max`).
    pub fn max(&self) -> usize {
        self.max
    }

    /// Times the cap was halved.
    pub fn shrinks(&self) -> u64 {
        self.shrinks
    }

    /// Times the cap was doubled.
    pub fn grows(&self) -> u64 {
        self.grows
    }

    /// Records a flush of `verified` signatures of which `invalid` did not verify.
    pub fn on_flush(&mut self, verified: usize, invalid: usize) {
        if invalid > 0 {
            self.clean = 0;
            if self.cap > 1 {
                self.cap /= 2;
                self.shrinks += 1;
            }
        } else if verified > 0 {
            self.clean += 1;
            if self.clean >= Self::GROW_AFTER && self.cap < self.max {
                self.cap = (self.cap * 2).min(self.max);
                self.clean = 0;
                self.grows += 1;
            }
        }
    }
}

crate::counter_set! {
    /// Events from one shard to the crawler's bounded queue.
    pub struct QueueStats {
        groups {}
        /// Events handed to the crawler.
        events_sent,
        /// Events dropped because the crawler's queue was full (keepalives, votes, blocks,
        /// telemetry; the crawler re-reads the channel map at cleanup).
        events_dropped ["drop", "crawler_event", "in"],
        /// ChannelUp/ChannelDown held back because the queue was full (sent later, in order).
        lifecycle_deferred,
        /// ChannelUp/ChannelDown dropped because the backlog was full too.
        lifecycle_dropped ["drop", "channel_lifecycle", "in"],
    }
}

/// What one shard publishes for metrics and RPC (at most every 100 ms, and when it stops).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMetrics {
    /// The shard's index.
    pub shard: usize,
    /// The protocol core's counters.
    pub proto: ShardStats,
    /// The batch verifier's counters.
    pub batch: BatchMetrics,
    /// Connections the core tracks now (handshaking and realtime).
    pub connections: u64,
    /// Outstanding syn cookies.
    pub cookies: u64,
    /// Events to the crawler: handed over, dropped, held back.
    pub queue: QueueStats,
    /// Dials that failed before connecting (socket creation, connection cap).
    pub dial_errors: u64,
}

/// Everything the shard factory shares between the shards of one node.
#[derive(Clone)]
pub(crate) struct ShardSetup {
    pub(crate) shared: ShardShared,
    pub(crate) epoch: Instant,
    pub(crate) events: Sender<CrawlerEvent>,
    pub(crate) batch_max: usize,
    pub(crate) batch_delay: Duration,
    pub(crate) key_cache: usize,
}

/// The io handler of one shard.
pub(crate) struct NodeShard {
    core: ShardCore,
    out: ShardOutput,
    spare_io: Vec<IoAction>,
    spare_verify: Vec<VerifyRequest>,
    rng: ChaCha20Rng,
    epoch: Instant,
    events: Sender<CrawlerEvent>,
    backlog: VecDeque<CrawlerEvent>,
    verifier: BatchVerifier,
    adapt: AdaptiveBatch,
    keys: KeyCache,
    batch_ids: Vec<u64>,
    rejected: Vec<u64>,
    /// Results of requests verified alone (suspect sources), answered at the next flush.
    alone: Vec<(u64, bool)>,
    results: Vec<(u64, bool)>,
    batch_started: Option<Instant>,
    batch_delay: Duration,
    next_tick: Instant,
    dial_tokens: HashMap<u64, Endpoint>,
    next_token: u64,
    metrics: ShardMetrics,
    published: Arc<Mutex<ShardMetrics>>,
    next_publish: Instant,
}

impl NodeShard {
    pub(crate) fn new(
        index: usize,
        setup: &ShardSetup,
        rng: ChaCha20Rng,
        published: Arc<Mutex<ShardMetrics>>,
    ) -> NodeShard {
        let now = Instant::now();
        NodeShard {
            core: ShardCore::new(index as u16, setup.shared.clone()),
            out: ShardOutput::default(),
            spare_io: Vec::new(),
            spare_verify: Vec::new(),
            rng,
            epoch: setup.epoch,
            events: setup.events.clone(),
            backlog: VecDeque::new(),
            verifier: BatchVerifier::new(setup.batch_max),
            adapt: AdaptiveBatch::new(setup.batch_max),
            keys: KeyCache::new(setup.key_cache),
            batch_ids: Vec::with_capacity(setup.batch_max),
            rejected: Vec::new(),
            alone: Vec::new(),
            results: Vec::with_capacity(setup.batch_max),
            batch_started: None,
            batch_delay: setup.batch_delay,
            next_tick: now + TICK,
            dial_tokens: HashMap::new(),
            next_token: 1,
            metrics: ShardMetrics {
                shard: index,
                ..ShardMetrics::default()
            },
            published,
            next_publish: now,
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Carries out everything the core produced, until nothing is left (applying an action
    /// or flushing a batch may produce more).
    fn drain(&mut self, io: &mut Io) {
        loop {
            if !self.out.events.is_empty() {
                self.forward_events();
            }
            if !self.out.verify.is_empty() {
                let mut reqs = std::mem::take(&mut self.spare_verify);
                std::mem::swap(&mut reqs, &mut self.out.verify);
                for req in reqs.drain(..) {
                    self.enqueue(req, io.now());
                    if self.verifier.is_full() || self.verifier.len() >= self.adapt.cap() {
                        self.flush(io.now(), FlushCause::Full);
                    }
                }
                self.spare_verify = reqs;
            }
            if !self.out.io.is_empty() {
                let mut actions = std::mem::take(&mut self.spare_io);
                std::mem::swap(&mut actions, &mut self.out.io);
                for action in actions.drain(..) {
                    self.apply(io, action);
                }
                self.spare_io = actions;
            }
            if self.out.is_empty() {
                break;
            }
        }
    }

    fn apply(&mut self, io: &mut Io, action: IoAction) {
        match action {
            IoAction::Send { conn, bytes } => {
                // NotOpen (closed meanwhile) and SendQueueFull are counted by the io layer.
                let _ = io.send_owned(io::ConnId::from_u64(conn.0), bytes);
            }
            IoAction::Close { conn, .. } => {
                io.close(io::ConnId::from_u64(conn.0));
            }
            IoAction::Dial { endpoint } => {
                let token = self.next_token;
                self.next_token = self.next_token.wrapping_add(1);
                match io.dial(endpoint.to_socket_addr(), token) {
                    Ok(_) => {
                        self.dial_tokens.insert(token, endpoint);
                    }
                    Err(e) => {
                        self.metrics.dial_errors += 1;
                        tracing::debug!(%endpoint, error = %e, "dial failed");
                        let now_ms = self.ms(io.now());
                        self.core.on_dial_failed(endpoint, now_ms, &mut self.out);
                    }
                }
            }
            IoAction::Deadline { conn, at_ms } => {
                io.set_deadline(
                    io::ConnId::from_u64(conn.0),
                    self.epoch + Duration::from_millis(at_ms),
                );
            }
        }
    }

    fn forward_events(&mut self) {
        self.retry_backlog();
        for ev in self.out.events.drain(..) {
            let lifecycle = matches!(
                ev,
                CrawlerEvent::ChannelUp(..) | CrawlerEvent::ChannelDown(_)
            );
            if lifecycle && !self.backlog.is_empty() {
                // keep Up/Down in order behind the ones already waiting
                if self.backlog.len() < LIFECYCLE_BACKLOG {
                    self.backlog.push_back(ev);
                    self.metrics.queue.lifecycle_deferred += 1;
                } else {
                    self.metrics.queue.lifecycle_dropped += 1;
                }
                continue;
            }
            match self.events.try_send(ev) {
                Ok(()) => self.metrics.queue.events_sent += 1,
                Err(TrySendError::Full(ev)) if lifecycle => {
                    self.backlog.push_back(ev);
                    self.metrics.queue.lifecycle_deferred += 1;
                }
                Err(TrySendError::Full(_)) => self.metrics.queue.events_dropped += 1,
                // The crawler has stopped (node shutdown): nothing to tell.
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    fn retry_backlog(&mut self) {
        while let Some(ev) = self.backlog.pop_front() {
            match self.events.try_send(ev) {
                Ok(()) => self.metrics.queue.events_sent += 1,
                Err(TrySendError::Full(ev)) => {
                    self.backlog.push_front(ev);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    fn enqueue(&mut self, req: VerifyRequest, now: Instant) {
        if self.batch_started.is_none() {
            self.batch_started = Some(now);
        }
        if req.alone {
            // A suspect source: verified now, on its own, so a bad signature of it never
            // fails a batch of other peers' items.
            let ok = match self.keys.get(&req.key) {
                Some(vk) => vk.verify(req.message.as_bytes(), &req.signature),
                None => {
                    self.metrics.batch.invalid_keys += 1;
                    false
                }
            };
            self.metrics.batch.alone += 1;
            self.alone.push((req.id, ok));
            return;
        }
        match self.keys.get(&req.key) {
            Some(vk) => match self
                .verifier
                .push_key(vk, req.message.as_bytes(), &req.signature)
            {
                Ok(_) => self.batch_ids.push(req.id),
                // Not reached: the batch is flushed as soon as it is full.
                Err(_) => self.rejected.push(req.id),
            },
            None => {
                self.metrics.batch.invalid_keys += 1;
                self.rejected.push(req.id);
            }
        }
    }

    fn pending(&self) -> bool {
        !self.batch_ids.is_empty() || !self.rejected.is_empty() || !self.alone.is_empty()
    }

    /// Verifies every pending request and answers each.
    fn flush(&mut self, now: Instant, cause: FlushCause) {
        if !self.pending() {
            return;
        }
        let now_ms = self.ms(now);
        let m = &mut self.metrics.batch;
        m.flushes += 1;
        match cause {
            FlushCause::Full => m.flush_full += 1,
            FlushCause::Delay => m.flush_delay += 1,
            FlushCause::Sleep => m.flush_sleep += 1,
        }
        let n = self.batch_ids.len() + self.rejected.len() + self.alone.len();
        m.requests += n as u64;
        m.sizes[batch_bucket(n)] += 1;
        let mut results = std::mem::take(&mut self.results);
        results.clear();
        if !self.batch_ids.is_empty() {
            let oks = self.verifier.verify(&mut self.rng);
            let invalid = oks.iter().filter(|ok| !**ok).count();
            results.extend(self.batch_ids.iter().copied().zip(oks.iter().copied()));
            self.adapt.on_flush(self.batch_ids.len(), invalid);
            self.batch_ids.clear();
        }
        results.extend(self.rejected.drain(..).map(|id| (id, false)));
        results.append(&mut self.alone);
        self.batch_started = None;
        for &(id, ok) in &results {
            self.core
                .on_verified(id, ok, now_ms, &mut self.rng, &mut self.out);
        }
        results.clear();
        self.results = results;
    }

    fn publish(&mut self, now: Instant) {
        self.metrics.proto = *self.core.stats();
        self.metrics.batch.verifier = self.verifier.stats();
        self.metrics.batch.cap_shrinks = self.adapt.shrinks();
        self.metrics.batch.cap_grows = self.adapt.grows();
        self.metrics.batch.cap = self.adapt.cap() as u64;
        self.metrics.connections = self.core.connections() as u64;
        self.metrics.cookies = self.core.cookies() as u64;
        *self.published.lock() = self.metrics.clone();
        self.next_publish = now + PUBLISH;
    }

    fn maybe_publish(&mut self, now: Instant) {
        if now >= self.next_publish {
            self.publish(now);
        }
    }
}

impl Drop for NodeShard {
    fn drop(&mut self) {
        self.publish(Instant::now());
    }
}

impl Handler for NodeShard {
    type Command = ShardCommand;

    fn screen_inbound(&mut self, io: &mut Io, peer: std::net::SocketAddr, full: bool) -> Screen {
        let now_ms = self.ms(io.now());
        // The I/O boundary: the socket address becomes an endpoint here, once.
        match self.core.screen_inbound(Endpoint::from(peer), full, now_ms) {
            Screening::Accept => Screen::Accept,
            Screening::Refuse => Screen::Refuse,
            Screening::Evict(victim) => Screen::Evict(io::ConnId::from_u64(victim.0)),
        }
    }

    fn on_accept(&mut self, io: &mut Io, conn: io::ConnId, peer: std::net::SocketAddr) -> bool {
        let now_ms = self.ms(io.now());
        self.core.on_connected(
            ConnId(conn.to_u64()),
            Endpoint::from(peer),
            false,
            now_ms,
            &mut self.rng,
            &mut self.out,
        );
        self.drain(io);
        true
    }

    fn on_connected(
        &mut self,
        io: &mut Io,
        conn: io::ConnId,
        peer: std::net::SocketAddr,
        token: u64,
    ) {
        self.dial_tokens.remove(&token);
        let now_ms = self.ms(io.now());
        self.core.on_connected(
            ConnId(conn.to_u64()),
            Endpoint::from(peer),
            true,
            now_ms,
            &mut self.rng,
            &mut self.out,
        );
        self.drain(io);
    }

    fn on_connect_failed(
        &mut self,
        io: &mut Io,
        _conn: io::ConnId,
        token: u64,
        err: std::io::Error,
    ) {
        if let Some(endpoint) = self.dial_tokens.remove(&token) {
            tracing::debug!(%endpoint, error = %err, "connect failed");
            let now_ms = self.ms(io.now());
            self.core.on_dial_failed(endpoint, now_ms, &mut self.out);
            self.drain(io);
        }
    }

    fn on_data(&mut self, io: &mut Io, conn: io::ConnId, data: &[u8]) {
        let now_ms = self.ms(io.now());
        self.core.on_bytes(
            ConnId(conn.to_u64()),
            data,
            now_ms,
            &mut self.rng,
            &mut self.out,
        );
        self.drain(io);
    }

    fn on_closed(&mut self, io: &mut Io, conn: io::ConnId, reason: CloseReason) {
        let now_ms = self.ms(io.now());
        self.core
            .on_closed(ConnId(conn.to_u64()), now_ms, &mut self.out);
        self.drain(io);
        if reason == CloseReason::Shutdown {
            self.publish(io.now());
        }
    }

    fn on_command(&mut self, io: &mut Io, cmd: ShardCommand) {
        let now_ms = self.ms(io.now());
        self.core
            .on_command(cmd, now_ms, &mut self.rng, &mut self.out);
        self.drain(io);
    }

    fn on_timer(&mut self, io: &mut Io, now: Instant) {
        if self
            .batch_started
            .is_some_and(|t| now >= t + self.batch_delay)
        {
            self.flush(now, FlushCause::Delay);
        }
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            let now_ms = self.ms(now);
            self.core.on_tick(now_ms, &mut self.out);
        }
        self.drain(io);
        self.maybe_publish(now);
    }

    fn before_sleep(&mut self, io: &mut Io) {
        let now = io.now();
        if self.pending() {
            self.flush(now, FlushCause::Sleep);
        }
        self.drain(io);
        if !self.backlog.is_empty() {
            self.retry_backlog();
        }
        self.maybe_publish(now);
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let mut t = self.next_tick;
        if let Some(s) = self.batch_started {
            t = t.min(s + self.batch_delay);
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_buckets_are_log2() {
        assert_eq!(batch_bucket(1), 0);
        assert_eq!(batch_bucket(2), 1);
        assert_eq!(batch_bucket(3), 1);
        assert_eq!(batch_bucket(4), 2);
        assert_eq!(batch_bucket(64), 6);
        assert_eq!(batch_bucket(127), 6);
        assert_eq!(batch_bucket(128), 7);
        assert_eq!(batch_bucket(4096), 7);
        assert_eq!(batch_bucket(0), 0);
    }

    #[test]
    fn adaptive_cap_halves_on_bad_and_regrows_when_clean() {
        let mut a = AdaptiveBatch::new(64);
        for _ in 0..100 {
            a.on_flush(64, 0);
        }
        assert_eq!((a.cap(), a.shrinks(), a.grows()), (64, 0, 0));
        for want in [32, 16, 8, 4, 2, 1, 1, 1] {
            let n = a.cap();
            a.on_flush(n, n);
            assert_eq!(a.cap(), want);
        }
        assert_eq!(a.shrinks(), 6);
        // three clean flushes are not enough, the fourth doubles
        for _ in 0..3 {
            a.on_flush(1, 0);
        }
        assert_eq!(a.cap(), 1);
        a.on_flush(1, 0);
        assert_eq!(a.cap(), 2);
        // an invalid one resets the streak
        for _ in 0..3 {
            a.on_flush(2, 0);
        }
        a.on_flush(2, 1);
        assert_eq!(a.cap(), 1);
        for _ in 0..(AdaptiveBatch::GROW_AFTER as usize * 10) {
            let n = a.cap();
            a.on_flush(n, 0);
        }
        assert_eq!(a.cap(), 64);
        // an empty flush (only rejected keys) changes nothing
        a.on_flush(0, 0);
        assert_eq!(a.cap(), 64);
        assert_eq!(AdaptiveBatch::new(0).cap(), 1);
    }
}
