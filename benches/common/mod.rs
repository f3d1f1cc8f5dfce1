//! Helpers shared by the benches that drive a sans-IO shard core without I/O.

use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use nanopeer::channels::{ChannelLimits, ChannelMap};
use nanopeer::crypto::genesis_hash;
use nanopeer::io::cpu::current_thread_cpu_time;
use nanopeer::proto::config::ProtoConfig;
use nanopeer::proto::events::{ConnId, IoAction};
use nanopeer::proto::exclusion::PeerExclusion;
use nanopeer::proto::filter::DuplicateFilter;
use nanopeer::proto::identity::NodeIdentity;
use nanopeer::proto::repcrawler::QueryBoard;
use nanopeer::proto::shard::{ShardCore, ShardOutput, ShardShared};
use nanopeer::types::{Cookie, Network};
use nanopeer::wire::{Message, NodeIdHandshake, decode_message};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The connection [`realtime_core`] brings to a channel.
pub const CONN: ConnId = ConnId(1);

/// A shard core on `net` with one inbound connection ([`CONN`], from 10.0.0.1) whose v2
/// handshake has completed (the peer's signature answered `true`), and the core's RNG. The
/// channel's verification budget is unlimited: a bench measures the path, not the limit (with
/// the default 10 000 checks per second of virtual time the channel would be cut).
pub fn realtime_core(net: Network) -> (ShardCore, ChaCha8Rng) {
    let mut config = ProtoConfig::for_network(net);
    config.allow_local_peers = true;
    config.verify_per_sec = u32::MAX;
    let shared = ShardShared {
        channels: Arc::new(ChannelMap::new(ChannelLimits::for_network(net))),
        filter: Arc::new(DuplicateFilter::new(1 << 20, [1; 16], 60_000)),
        config: Arc::new(config),
        identity: Arc::new(NodeIdentity::from_private([2; 32])),
        exclusion: Arc::new(Mutex::new(PeerExclusion::new())),
        query_board: Arc::new(QueryBoard::new(net)),
    };
    let mut core = ShardCore::new(0, shared);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut out = ShardOutput::default();
    let remote = "10.0.0.1:5000".parse().unwrap();
    core.on_connected(CONN, remote, false, 0, &mut rng, &mut out);
    let q = Message::NodeIdHandshake(NodeIdHandshake::query(Cookie([1; 32]))).encode(net);
    core.on_bytes(CONN, &q, 0, &mut rng, &mut out);
    let reply = out
        .io
        .iter()
        .find_map(|a| match a {
            IoAction::Send { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .unwrap();
    let Message::NodeIdHandshake(h) = decode_message(&reply, net).unwrap().1 else {
        unreachable!()
    };
    let peer = NodeIdentity::from_private([9; 32]);
    let r = peer.handshake_response(
        &h.query.unwrap().cookie,
        Some((Cookie([3; 32]), genesis_hash(net))),
    );
    let bytes = Message::NodeIdHandshake(NodeIdHandshake::response(r)).encode(net);
    out.clear();
    core.on_bytes(CONN, &bytes, 0, &mut rng, &mut out);
    let v = out.verify.pop().unwrap();
    core.on_verified(v.id, true, 0, &mut rng, &mut out);
    assert!(core.channel_of(CONN).is_some());
    (core, rng)
}

/// A criterion measurement of the bench thread's own CPU time instead of wall time: on a
/// machine whose cores are shared with other work, time spent waiting for a CPU does not count
/// (caches and a busy sibling still do). Reported like wall time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadCpu;

/// Lends its formatter to [`ThreadCpu`] (criterion's duration formatter is private).
static WALL: WallTime = WallTime;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        current_thread_cpu_time().expect("the thread CPU-time clock")
    }

    fn end(&self, start: Duration) -> Duration {
        self.start().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}
