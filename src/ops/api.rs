//! The running node as the RPC and metrics servers see it: [`SharedNode`] implements
//! [`NodeApi`].
//!
//! [`Node::stop`] takes the node by value, while the HTTP threads need shared access. A
//! [`SharedNode`] holds the node behind a read-write lock: every API call takes the read lock
//! for the time of one snapshot, and [`SharedNode::stop`] takes the node out under the write
//! lock (waiting for calls in flight), then stops it outside the lock. After the stop, calls
//! answer from what does not change (node id, version, port) and with empty lists elsewhere;
//! `keepalive` is refused.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;

use super::metrics::{Histogram, MetricsSnapshot, ThreadMetrics};
use super::process::{BuildInfo, ProcessMetrics};
use super::rpc::{
    NodeApi, PeerInfo as RpcPeer, QuorumInfo, RepPeer, StatEntry, StatsInfo, VersionInfo,
};
use crate::counters::{Row, Rows, Samples};
use crate::crypto::genesis_hash;
use crate::io::Counters;
use crate::types::{Network, PublicKey};
use crate::wire::{TelemetryData, VERSION_USING};

use crate::node::{BATCH_BUCKETS, Node, NodeError, NodeStats};

/// Schema version of the data directory's store, as `version` reports it.
pub const STORE_VERSION: u32 = 1;

/// Quorum percentage of the online weight (§8, `online_weight_quorum`).
const QUORUM_PERCENT: u8 = 67;

struct Inner {
    node: RwLock<Option<Node>>,
    node_id: PublicKey,
    network: Network,
    peering_port: u16,
    online_weight_minimum: u128,
}

/// A running [`Node`] shared between its owner and the HTTP servers; cheap to clone. See the
/// module docs of `node::api`.
#[derive(Clone)]
pub struct SharedNode {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SharedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedNode")
            .field("network", &self.inner.network)
            .field("peering_port", &self.inner.peering_port)
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl SharedNode {
    /// Wraps a started node.
    pub fn new(node: Node) -> SharedNode {
        let inner = Inner {
            node_id: node.node_id(),
            network: node.network(),
            peering_port: node.local_addr().port(),
            online_weight_minimum: node.proto_config().online_weight_minimum,
            node: RwLock::new(Some(node)),
        };
        SharedNode {
            inner: Arc::new(inner),
        }
    }

    /// Runs `f` on the node unless it has been stopped.
    pub fn with<R>(&self, f: impl FnOnce(&Node) -> R) -> Option<R> {
        self.inner.node.read().as_ref().map(f)
    }

    /// False once [`SharedNode::stop`] has run.
    pub fn is_running(&self) -> bool {
        self.inner.node.read().is_some()
    }

    /// Stops the node ([`Node::stop`]: final peer-store flush, connections closed, threads
    /// joined). Waits for API calls in flight; later calls see a stopped node. A second call
    /// does nothing and returns `Ok`.
    pub fn stop(&self) -> Result<(), NodeError> {
        let node = self.inner.node.write().take();
        match node {
            Some(n) => n.stop(),
            None => Ok(()),
        }
    }
}

fn stat(rows: &mut Rows, stat_type: &str, detail: &str, dir: &str, value: u64) {
    rows.add(
        Row {
            stat_type,
            detail,
            dir,
        },
        value,
    );
}

/// The `stats` counters (nano-node's `type`/`detail`/`dir` layout) of a node's counters.
pub(crate) fn stat_entries(s: &NodeStats) -> Vec<StatEntry> {
    let mut e = Rows::default();
    // Every declared counter names its own rows; only what is not a counter (each thread's
    // health, the open-files limits) is written out here.
    e.add_set(&s.proto);
    e.add_set(&s.io);
    e.add_set(&s.batch);
    e.add_set(&s.queue);
    let cr = &s.crawler;
    e.add_set(&cr.stats);
    e.add_set(&cr.reachout);
    e.add_set(&cr.rep_crawler);
    e.add_set(&cr.thread);
    // Thread health: one row per thread (`shard-0`, …, `crawler`) and measure.
    for t in &s.threads {
        let age_ms = u64::try_from(t.progress_age.as_millis()).unwrap_or(u64::MAX);
        stat(&mut e, "thread_progress_age_ms", &t.name, "in", age_ms);
        stat(&mut e, "thread_alive", &t.name, "in", u64::from(t.alive));
        stat(&mut e, "thread_stall", &t.name, "in", t.stalls);
    }
    let f = &s.open_files;
    for (detail, v) in [
        ("limit", f.soft),
        ("hard_limit", f.hard),
        ("needed", f.needed),
        ("connections_per_shard", f.per_shard as u64),
    ] {
        stat(&mut e, "open_files", detail, "in", v);
    }
    e.into_vec()
        .into_iter()
        .map(|(stat_type, detail, dir, value)| StatEntry {
            stat_type,
            detail,
            dir,
            value,
        })
        .collect()
}

/// The `/metrics` snapshot of a node's counters; `shard_io` are the per-shard io counters.
pub(crate) fn metrics_snapshot(
    s: &NodeStats,
    shard_io: Vec<Counters>,
    uptime_seconds: u64,
) -> MetricsSnapshot {
    // Batch-size bucket i holds sizes 2^i ..= 2^(i+1) − 1 (the last one everything above),
    // so the upper bounds are 1, 3, 7, …, 127 and +Inf.
    let bounds: Vec<f64> = (1..BATCH_BUCKETS)
        .map(|i| ((1u64 << i) - 1) as f64)
        .collect();
    let mut hist = Histogram::with_bounds(&bounds);
    hist.counts = s.batch.sizes.to_vec();
    hist.sum = s.batch.requests as f64;
    let mut counters = Samples::default();
    counters.add_set(&s.proto, &[]);
    counters.add_set(&s.batch, &[]);
    counters.add_set(&s.queue, &[]);
    counters.add_set(&s.crawler.thread, &[]);
    for (shard, io) in shard_io.iter().enumerate() {
        counters.add_set(io, &[("shard", &shard.to_string())]);
    }
    MetricsSnapshot {
        counters,
        verify_batch_sizes: hist,
        channels: s.channels as u64,
        cookies: s.shards.iter().map(|m| m.cookies).sum(),
        uptime_seconds,
        store_ok: s.crawler.store_ok,
        threads: s
            .threads
            .iter()
            .map(|t| ThreadMetrics {
                name: t.name.clone(),
                alive: t.alive,
                progress_age_seconds: t.progress_age.as_secs_f64(),
                stalls: t.stalls,
            })
            .collect(),
        open_files_limit: s.open_files.soft,
        open_files_needed: s.open_files.needed,
        connection_cap_per_shard: s.open_files.per_shard as u64,
        ..MetricsSnapshot::default()
    }
}

impl NodeApi for SharedNode {
    fn peers(&self) -> Vec<RpcPeer> {
        self.with(|n| {
            n.peers()
                .into_iter()
                .map(|p| RpcPeer {
                    endpoint: p.endpoint,
                    protocol_version: p.protocol_version,
                    node_id: Some(p.node_id),
                    peering: p.peering_endpoint,
                })
                .collect()
        })
        .unwrap_or_default()
    }

    fn node_id(&self) -> PublicKey {
        self.inner.node_id
    }

    fn keepalive(&self, addr: SocketAddr) -> Result<(), String> {
        self.with(|n| n.keepalive(addr).map_err(|e| e.to_string()))
            .unwrap_or_else(|| Err("the node is stopping".into()))
    }

    fn stats(&self) -> StatsInfo {
        self.with(|n| StatsInfo {
            entries: stat_entries(&n.stats()),
            duration_seconds: n.uptime().as_secs(),
        })
        .unwrap_or_default()
    }

    fn version(&self) -> VersionInfo {
        let network = self.inner.network;
        VersionInfo {
            store_version: STORE_VERSION,
            protocol_version: VERSION_USING,
            node_vendor: format!("nanopeer {}", env!("CARGO_PKG_VERSION")),
            store_vendor: "redb 4".into(),
            network,
            network_identifier: genesis_hash(network),
            build_info: format!(
                "nanopeer {} ({} build)",
                env!("CARGO_PKG_VERSION"),
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                }
            ),
        }
    }

    fn representatives_online(&self) -> Vec<(PublicKey, u128)> {
        self.with(|n| {
            n.rep_status()
                .representatives
                .into_iter()
                .map(|r| (r.account, r.weight))
                .collect()
        })
        .unwrap_or_default()
    }

    fn quorum(&self) -> QuorumInfo {
        let minimum = self.inner.online_weight_minimum;
        let Some(rs) = self.with(|n| n.rep_status()) else {
            return QuorumInfo {
                online_weight_quorum_percent: QUORUM_PERCENT,
                online_weight_minimum: minimum,
                ..QuorumInfo::default()
            };
        };
        QuorumInfo {
            quorum_delta: rs.delta,
            online_weight_quorum_percent: QUORUM_PERCENT,
            online_weight_minimum: minimum,
            online_stake_total: rs.online_weight,
            trended_stake_total: rs.trended,
            peers_stake_total: rs.known_weight,
            peers: rs
                .representatives
                .into_iter()
                .map(|r| RepPeer {
                    account: r.account,
                    endpoint: r.endpoint.to_socket_addr(),
                    weight: r.weight,
                })
                .collect(),
        }
    }

    fn local_telemetry(&self) -> TelemetryData {
        self.with(Node::local_telemetry).unwrap_or_default()
    }

    fn telemetry(&self) -> Vec<(SocketAddr, TelemetryData)> {
        self.with(|n| {
            n.telemetry()
                .into_iter()
                .map(|t| (t.endpoint, t.data))
                .collect()
        })
        .unwrap_or_default()
    }

    fn peering_port(&self) -> u16 {
        self.inner.peering_port
    }

    fn metrics(&self) -> MetricsSnapshot {
        let mut m = self
            .with(|n| metrics_snapshot(&n.stats(), n.shard_counters(), n.uptime().as_secs()))
            .unwrap_or_default();
        // The process and the build outlive a stopped node.
        m.process = ProcessMetrics::read();
        m.build = Some(BuildInfo::current(self.inner.network));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{BatchMetrics, CrawlerStatus, OpenFiles, ShardMetrics, ThreadHealth};
    use crate::ops::metrics::{assert_samples, parse_text, render};
    use crate::proto::crawler::CrawlerStats;
    use crate::proto::reachout::ReachoutStats;
    use crate::proto::repcrawler::RepCrawlerStats;
    use crate::proto::stats::ShardStats;
    use std::time::Duration;

    fn stats() -> NodeStats {
        let mut proto = ShardStats::default();
        proto.messages_in[0x02] = 7;
        proto.messages_out[0x0a] = 3;
        proto.handshake.ok = 2;
        proto.handshake.own_node_id = 1;
        proto.handshake.max_per_subnet = 4;
        proto.duplicate_publish = 5;
        proto.invalid_vote_signature = 6;
        proto.handshake.invalid_signature = 1;
        let mut batch = BatchMetrics::default();
        batch.sizes[0] = 2; // two batches of 1
        batch.sizes[6] = 1; // one of 64..=127 (here 64)
        batch.requests = 66;
        batch.verifier.failed_batches = 1;
        let shard = ShardMetrics {
            cookies: 3,
            ..ShardMetrics::default()
        };
        NodeStats {
            proto,
            io: Counters {
                rejected_cap: 9,
                ..Counters::default()
            },
            batch,
            queue: Default::default(),
            channels: 2,
            shards: vec![shard.clone(), shard],
            crawler: CrawlerStatus {
                rep_status: crate::proto::repcrawler::RepStatus {
                    representatives: Vec::new(),
                    online_weight: 0,
                    trended: 0,
                    delta: 0,
                    known_weight: 0,
                    sufficient: false,
                },
                telemetry: Vec::new(),
                stats: CrawlerStats {
                    telemetry_received: 11,
                    ..CrawlerStats::default()
                },
                reachout: ReachoutStats {
                    ip_limit: 12,
                    ..ReachoutStats::default()
                },
                rep_crawler: RepCrawlerStats {
                    queries_sent: 13,
                    ..RepCrawlerStats::default()
                },
                thread: Default::default(),
                store_ok: true,
            },
            threads: vec![
                ThreadHealth {
                    name: "shard-0".into(),
                    alive: true,
                    progress_age: Duration::from_millis(40),
                    stalled: false,
                    stalls: 0,
                },
                ThreadHealth {
                    name: "shard-1".into(),
                    alive: false,
                    progress_age: Duration::from_millis(9000),
                    stalled: false,
                    stalls: 2,
                },
                ThreadHealth {
                    name: "crawler".into(),
                    alive: true,
                    progress_age: Duration::from_millis(12),
                    stalled: false,
                    stalls: 0,
                },
            ],
            open_files: OpenFiles {
                soft_at_start: 1024,
                soft: 20_000,
                hard: 20_000,
                needed: 4166,
                configured_per_shard: 2048,
                per_shard: 2048,
            },
        }
    }

    fn entry(e: &[StatEntry], t: &str, d: &str, dir: &str) -> Option<u64> {
        e.iter()
            .find(|x| x.stat_type == t && x.detail == d && x.dir == dir)
            .map(|x| x.value)
    }

    #[test]
    fn stat_entries_map_counters_to_nano_names() {
        let e = stat_entries(&stats());
        assert_eq!(entry(&e, "message", "keepalive", "in"), Some(7));
        assert_eq!(entry(&e, "message", "node_id_handshake", "out"), Some(3));
        assert_eq!(entry(&e, "message", "keepalive", "out"), Some(0));
        assert_eq!(entry(&e, "handshake", "ok", "in"), Some(2));
        assert_eq!(entry(&e, "handshake", "invalid_node_id", "in"), Some(1));
        assert_eq!(
            entry(&e, "tcp_listener_rejected", "max_per_subnetwork", "in"),
            Some(4)
        );
        assert_eq!(
            entry(&e, "tcp_listener_rejected", "max_connections", "in"),
            Some(9)
        );
        assert_eq!(
            entry(&e, "filter", "duplicate_publish_message", "in"),
            Some(5)
        );
        assert_eq!(entry(&e, "vote", "invalid_signature", "in"), Some(6));
        // the crawler's three sets, under their nano-node names
        assert_eq!(entry(&e, "telemetry", "process", "in"), Some(11));
        assert_eq!(entry(&e, "reachout", "max_per_ip", "out"), Some(12));
        assert_eq!(entry(&e, "rep_crawler", "query_sent", "in"), Some(13));
        // reachout's ten rows only: its counters without a row (empty slots, …) add none
        assert_eq!(e.iter().filter(|x| x.stat_type == "reachout").count(), 10);
        assert_eq!(
            entry(&e, "thread_progress_age_ms", "shard-1", "in"),
            Some(9000)
        );
        assert_eq!(entry(&e, "thread_alive", "shard-1", "in"), Some(0));
        assert_eq!(entry(&e, "thread_alive", "crawler", "in"), Some(1));
        assert_eq!(entry(&e, "thread_stall", "shard-1", "in"), Some(2));
        assert_eq!(entry(&e, "open_files", "limit", "in"), Some(20_000));
        assert_eq!(entry(&e, "open_files", "needed", "in"), Some(4166));
        // no (type, detail, dir) twice
        let mut keys: Vec<_> = e
            .iter()
            .map(|x| (&x.stat_type, &x.detail, &x.dir))
            .collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }

    #[test]
    fn metrics_snapshot_renders_batches_cookies_and_shards() {
        let io0 = Counters {
            buf_ring_exhausted: 4,
            ..Counters::default()
        };
        let m = metrics_snapshot(&stats(), vec![io0, Counters::default()], 11);
        assert_eq!(m.cookies, 6);
        assert_eq!(m.channels, 2);
        assert_eq!(
            m.counters.get("nanopeer_verify_fallbacks_total", &[]),
            Some(1)
        );
        assert_eq!(m.counters.get("nanopeer_verify_failed_total", &[]), Some(7));
        let samples = parse_text(&render(&m)).unwrap();
        assert_samples(
            &samples,
            &[
                ("nanopeer_verify_batch_size_bucket", &[("le", "1")], 2.0),
                ("nanopeer_verify_batch_size_bucket", &[("le", "63")], 2.0),
                ("nanopeer_verify_batch_size_bucket", &[("le", "127")], 3.0),
                ("nanopeer_verify_batch_size_sum", &[], 66.0),
                ("nanopeer_handshakes_total", &[("outcome", "ok")], 2.0),
                (
                    "nanopeer_messages_total",
                    &[("direction", "in"), ("type", "keepalive")],
                    7.0,
                ),
                (
                    "nanopeer_buffer_ring_exhausted_total",
                    &[("shard", "0")],
                    4.0,
                ),
                (
                    "nanopeer_buffer_ring_exhausted_total",
                    &[("shard", "1")],
                    0.0,
                ),
                ("nanopeer_uptime_seconds", &[], 11.0),
                (
                    "nanopeer_thread_progress_age_seconds",
                    &[("thread", "shard-1")],
                    9.0,
                ),
                ("nanopeer_thread_alive", &[("thread", "shard-1")], 0.0),
                ("nanopeer_shard_connection_cap", &[], 2048.0),
            ],
        );
    }
}
