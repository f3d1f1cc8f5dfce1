//! The crawler thread: drives the [`CrawlerCore`] with real time, routes its commands to the
//! shards (bounded queues, never blocking), and does the slow work itself: peer-store writes,
//! online-weight samples, DNS for the preconfigured peers (on a helper thread). It publishes a
//! status snapshot for the RPC and metrics.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{Receiver, Sender, never, select};
use parking_lot::RwLock;
use rand_chacha::ChaCha20Rng;

use crate::channels::{ChannelId, ChannelMap};
use crate::endpoint::Endpoint;
use crate::io::ShardHandle;
use crate::proto::crawler::{CrawlerCore, CrawlerStats};
use crate::proto::events::{CrawlerEvent, CrawlerOutput, NodeAction, ShardCommand};
use crate::proto::reachout::{MergeRefusal, ReachoutStats};
use crate::proto::repcrawler::{RepCrawlerStats, RepStatus};
use crate::store::PeerStore;
use crate::types::PublicKey;
use crate::wire::TelemetryData;

/// Longest the crawler thread sleeps (so the status snapshot stays fresh).
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Events handled per loop turn at most before the timers get a look.
const EVENTS_PER_TURN: usize = 4096;
/// After a turn that handled events, the thread lets the next ones gather this long before
/// it looks again. A busy shard then finds the crawler awake-but-not-waiting and skips the
/// futex wake it would otherwise pay per event (two per handshake: up and down); an idle
/// node still blocks as before. Far below every protocol timer, and the queue holds it.
const EVENT_LINGER: Duration = Duration::from_millis(1);

/// Milliseconds since the Unix epoch (the peer store's clock).
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Requests from the node handle and helper threads.
pub(crate) enum Control {
    /// `merge_peer(ep)`; the answer is the shard picked or the refusal.
    MergePeer(Endpoint, Sender<Result<u16, MergeRefusal>>),
    /// The preconfigured peers resolved to these addresses.
    Resolved(Vec<Endpoint>),
    /// Flush live channels to the peer store and exit; answered when done.
    Stop(Sender<()>),
}

crate::counter_set! {
    /// Counters of the crawler thread itself (the core's are in [`CrawlerStatus::stats`]).
    pub struct CrawlerThreadStats {
        groups {}
        /// Events received from the shards.
        events,
        /// Commands queued to shards.
        commands_sent,
        /// Commands dropped because a shard's queue was full (or the shard stopped).
        commands_dropped,
        /// Peer-store flushes written.
        flushes ["peer_history", "flush", "out"],
        /// Online-weight samples written.
        samples_saved ["peer_history", "online_weight_sample", "out"],
        /// Peer-store writes that failed.
        store_errors ["peer_history", "store_error", "out"] @ "nanopeer_peer_store_errors_total",
        /// Preconfigured-peer resolutions started.
        resolves,
        /// Preconfigured peer names that did not resolve.
        resolve_failures,
    }
}

/// Cached telemetry of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTelemetry {
    /// The channel it came on.
    pub channel: ChannelId,
    /// The channel's remote endpoint.
    pub endpoint: SocketAddr,
    /// The channel's node id.
    pub node_id: PublicKey,
    /// The data.
    pub data: TelemetryData,
}

/// The crawler's state as last published (every ~100 ms).
#[derive(Debug, Clone)]
pub struct CrawlerStatus {
    /// Representatives, online weight, trended weight, quorum delta.
    pub rep_status: RepStatus,
    /// Telemetry of the peers (not stale), by channel.
    pub telemetry: Vec<PeerTelemetry>,
    /// The core's counters.
    pub stats: CrawlerStats,
    /// Reachout counters.
    pub reachout: ReachoutStats,
    /// Rep crawler counters.
    pub rep_crawler: RepCrawlerStats,
    /// The thread's own counters.
    pub thread: CrawlerThreadStats,
    /// False after a failed peer-store write, until a write succeeds again.
    pub store_ok: bool,
}

impl CrawlerStatus {
    pub(crate) fn of(core: &CrawlerCore, now_ms: u64) -> CrawlerStatus {
        CrawlerStatus {
            rep_status: core.rep_status(now_ms),
            telemetry: Vec::new(),
            stats: *core.stats(),
            reachout: *core.reachout_stats(),
            rep_crawler: *core.rep_stats(),
            thread: CrawlerThreadStats::default(),
            store_ok: true,
        }
    }
}

/// Parses `host[:port]` (a name, an IPv4 address, an IPv6 address with or without brackets)
/// and resolves it; port 0 or no port means `default_port`.
pub fn resolve_peer(text: &str, default_port: u16) -> std::io::Result<Vec<Endpoint>> {
    let s = text.trim();
    let fix = |sa: SocketAddr| {
        let ep = Endpoint::from(sa);
        if ep.port() == 0 {
            ep.with_port(default_port)
        } else {
            ep
        }
    };
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(vec![fix(sa)]);
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(vec![fix(SocketAddr::new(ip, default_port))]);
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p.parse::<u16>().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("bad port in peer address {text:?}"),
                )
            })?;
            (h, port)
        }
        _ => (s, default_port),
    };
    if host.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("empty host in peer address {text:?}"),
        ));
    }
    let mut seen = HashSet::new();
    Ok((host, port)
        .to_socket_addrs()?
        .map(fix)
        .filter(|e| seen.insert(*e))
        .collect())
}

/// Everything the crawler thread owns.
pub(crate) struct CrawlerThread {
    pub(crate) core: CrawlerCore,
    pub(crate) events: Receiver<CrawlerEvent>,
    pub(crate) control: Receiver<Control>,
    pub(crate) control_tx: Sender<Control>,
    pub(crate) shards: Vec<ShardHandle<ShardCommand>>,
    pub(crate) channels: Arc<ChannelMap>,
    pub(crate) store: PeerStore,
    pub(crate) status: Arc<RwLock<CrawlerStatus>>,
    pub(crate) epoch: Instant,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) preconfigured: Arc<Vec<String>>,
    pub(crate) default_port: u16,
    pub(crate) max_samples: usize,
    pub(crate) resolving: Arc<AtomicBool>,
    pub(crate) out: Vec<CrawlerOutput>,
    pub(crate) stats: CrawlerThreadStats,
    pub(crate) store_failed: bool,
    /// Beats once per loop turn (thread health).
    pub(crate) heartbeat: Arc<crate::io::Heartbeat>,
}

impl CrawlerThread {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs until a [`Control::Stop`] (or until every sender is gone).
    pub(crate) fn run(mut self) {
        let now = self.now_ms();
        self.core.start(now, &mut self.rng, &mut self.out);
        self.route();
        // add_initial_peers: stored peers were merged by `start`, preconfigured ones follow.
        self.resolve_preconfigured();
        let mut events = self.events.clone();
        let control = self.control.clone();
        let mut next_publish = Instant::now();
        loop {
            self.heartbeat.beat(Instant::now());
            let now = self.now_ms();
            let wait = Duration::from_millis(self.core.next_wakeup_ms().saturating_sub(now))
                .min(MAX_SLEEP);
            let mut handled = false;
            select! {
                recv(events) -> ev => match ev {
                    Ok(ev) => {
                        handled = true;
                        self.event(ev);
                        for _ in 1..EVENTS_PER_TURN {
                            match events.try_recv() {
                                Ok(ev) => self.event(ev),
                                Err(_) => break,
                            }
                        }
                    }
                    // every shard is gone: only timers and control remain
                    Err(_) => events = never(),
                },
                recv(control) -> c => match c {
                    Ok(Control::Stop(reply)) => {
                        self.drain_queued(&events);
                        self.final_flush();
                        self.publish();
                        let _ = reply.send(());
                        return;
                    }
                    Ok(c) => self.control(c),
                    Err(_) => {
                        self.drain_queued(&events);
                        self.final_flush();
                        return;
                    }
                },
                default(wait) => {}
            }
            let now = self.now_ms();
            if now >= self.core.next_wakeup_ms() {
                self.core.tick(now, &mut self.rng, &mut self.out);
            }
            self.route();
            if Instant::now() >= next_publish {
                self.publish();
                next_publish = Instant::now() + MAX_SLEEP;
            }
            if handled {
                std::thread::sleep(EVENT_LINGER);
            }
        }
    }

    fn event(&mut self, ev: CrawlerEvent) {
        self.stats.events += 1;
        match &ev {
            // Per peer: debug, so that a busy node's info log stays readable.
            CrawlerEvent::ChannelUp(ch, _) => tracing::debug!(
                endpoint = %ch.remote(),
                node_id = %ch.node_id().to_node_id(),
                direction = ?ch.direction(),
                version = ch.protocol_version(),
                "peer connected"
            ),
            CrawlerEvent::ChannelDown(ch) => tracing::debug!(
                endpoint = %ch.remote(),
                node_id = %ch.node_id().to_node_id(),
                "peer disconnected"
            ),
            _ => {}
        }
        let now = self.now_ms();
        self.core.on_event(ev, now, &mut self.rng, &mut self.out);
        if self.out.len() > 1024 {
            self.route();
        }
    }

    fn control(&mut self, c: Control) {
        let now = self.now_ms();
        match c {
            Control::MergePeer(ep, reply) => {
                let r = self.core.merge_peer(ep, now, &mut self.out);
                let _ = reply.send(r);
            }
            Control::Resolved(addrs) => {
                self.core
                    .on_preconfigured_resolved(addrs, now, &mut self.out);
            }
            Control::Stop(_) => {}
        }
        self.route();
    }

    /// Carries out the core's outputs.
    fn route(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        for o in out.drain(..) {
            match o {
                CrawlerOutput::Shard { shard, command } => {
                    let Some(h) = self.shards.get(usize::from(shard)) else {
                        self.stats.commands_dropped += 1;
                        continue;
                    };
                    match h.send_command(command) {
                        Ok(()) => self.stats.commands_sent += 1,
                        Err(crate::io::Full(cmd)) => {
                            self.stats.commands_dropped += 1;
                            if let ShardCommand::Dial { endpoint } = cmd {
                                self.channels.end_attempt(&endpoint);
                            }
                        }
                    }
                }
                CrawlerOutput::Node(NodeAction::FlushPeers(peers)) => {
                    let r = self.store.flush(&peers, wall_ms()).map(|_| ());
                    if r.is_ok() {
                        self.stats.flushes += 1;
                    }
                    self.store_result(r);
                }
                CrawlerOutput::Node(NodeAction::SaveOnlineSample(w)) => {
                    let r = self.store.put_sample(wall_ms(), w, self.max_samples);
                    if r.is_ok() {
                        self.stats.samples_saved += 1;
                    }
                    self.store_result(r);
                }
                CrawlerOutput::Node(NodeAction::ResolvePreconfigured) => {
                    self.resolve_preconfigured();
                }
            }
        }
        if self.out.is_empty() {
            self.out = out;
        }
    }

    fn store_result(&mut self, r: Result<(), crate::store::StoreError>) {
        match r {
            Ok(()) => {
                if self.store_failed {
                    tracing::info!(path = %self.store.path().display(), "peer store writable again");
                    self.store_failed = false;
                }
            }
            Err(e) => {
                self.stats.store_errors += 1;
                if !self.store_failed {
                    tracing::warn!(
                        error = %e,
                        "peer store write failed; peering continues without persistence"
                    );
                    self.store_failed = true;
                }
            }
        }
    }

    /// Resolves the preconfigured peers on a helper thread (DNS may block); the addresses come
    /// back as [`Control::Resolved`]. At most one resolution runs at a time.
    fn resolve_preconfigured(&mut self) {
        if self.preconfigured.is_empty() || self.resolving.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stats.resolves += 1;
        let names = Arc::clone(&self.preconfigured);
        let tx = self.control_tx.clone();
        let flag = Arc::clone(&self.resolving);
        let port = self.default_port;
        let spawned = std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let mut addrs = Vec::new();
                let mut failures = 0u64;
                for name in names.iter() {
                    match resolve_peer(name, port) {
                        Ok(v) if !v.is_empty() => addrs.extend(v),
                        Ok(_) => {
                            failures += 1;
                            tracing::warn!(peer = %name, "preconfigured peer resolved to no address");
                        }
                        Err(e) => {
                            failures += 1;
                            tracing::warn!(peer = %name, error = %e, "cannot resolve preconfigured peer");
                        }
                    }
                }
                if failures > 0 {
                    tracing::debug!(failures, "preconfigured resolution had failures");
                }
                let _ = tx.send(Control::Resolved(addrs));
                flag.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.resolving.store(false, Ordering::Release);
            self.stats.resolve_failures += 1;
            tracing::warn!(error = %e, "cannot spawn the resolver thread");
        }
    }

    /// Takes in the events already queued when the stop came (`select!` may pick the stop
    /// first): a channel that came up just before it is then in the table the stop-time flush
    /// writes. Bounded by the queue's length at the call, so shards still running cannot keep
    /// the stop waiting.
    fn drain_queued(&mut self, events: &Receiver<CrawlerEvent>) {
        for _ in 0..events.len() {
            match events.try_recv() {
                Ok(ev) => self.event(ev),
                Err(_) => break,
            }
        }
    }

    /// Writes the peering endpoints of the live channels (the stop-time flush).
    fn final_flush(&mut self) {
        let mut seen = HashSet::new();
        let peers: Vec<Endpoint> = self
            .core
            .table()
            .list()
            .iter()
            .filter(|c| c.is_alive())
            .map(|c| c.peering_endpoint())
            .filter(|e| seen.insert(*e))
            .collect();
        let r = self.store.flush(&peers, wall_ms()).map(|_| ());
        if r.is_ok() {
            self.stats.flushes += 1;
        }
        self.store_result(r);
    }

    fn publish(&self) {
        let now = self.now_ms();
        let table = self.core.table();
        let telemetry = self
            .core
            .telemetry(now)
            .into_iter()
            .filter_map(|(id, data)| {
                table.get(id).map(|c| PeerTelemetry {
                    channel: id,
                    endpoint: c.remote().to_socket_addr(),
                    node_id: *c.node_id(),
                    data: data.clone(),
                })
            })
            .collect();
        let status = CrawlerStatus {
            rep_status: self.core.rep_status(now),
            telemetry,
            stats: *self.core.stats(),
            reachout: *self.core.reachout_stats(),
            rep_crawler: *self.core.rep_stats(),
            thread: self.stats,
            store_ok: !self.store_failed,
        };
        *self.status.write() = status;
    }
}

/// Waits on a receiver with a timeout, mapping the outcome to an option.
pub(crate) fn recv_within<T>(rx: &Receiver<T>, timeout: Duration) -> Option<T> {
    rx.recv_timeout(timeout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_peer_forms() {
        let v = resolve_peer("127.0.0.1:7075", 1).unwrap();
        assert_eq!(
            v,
            vec![Endpoint::from(
                "127.0.0.1:7075".parse::<SocketAddr>().unwrap()
            )]
        );
        let v = resolve_peer("127.0.0.1", 54000).unwrap();
        assert_eq!(v[0].port(), 54000);
        let v = resolve_peer("[::1]", 17075).unwrap();
        assert_eq!(v[0].port(), 17075);
        assert_eq!(*v[0].ip(), std::net::Ipv6Addr::LOCALHOST);
        let v = resolve_peer("::1", 17075).unwrap();
        assert_eq!(v[0].port(), 17075);
        let v = resolve_peer("[::1]:9", 17075).unwrap();
        assert_eq!(v[0].port(), 9);
        let v = resolve_peer("127.0.0.1:0", 44000).unwrap();
        assert_eq!(v[0].port(), 44000);
        let v = resolve_peer("localhost:7000", 1).unwrap();
        assert!(!v.is_empty());
        assert!(v.iter().all(|e| e.port() == 7000));
        assert!(resolve_peer("localhost:notaport", 1).is_err());
        assert!(resolve_peer(":7075", 1).is_err());
    }
}
