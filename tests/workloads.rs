//! The realtime workloads of `nanopeer bench --workload votes|publish` count what the node
//! counted: short streams of known mixes (valid messages, wrong signatures, duplicates, too
//! little work) against an in-process node, its counters read directly, through the bench's
//! in-process run and through the node's RPC. Counting, not speed: every figure asserted is a
//! count.
//!
//! One shard, dev network, loopback; the streaming peers bind 127.x.y.47 addresses. Tests run
//! one at a time (a global lock); every stream ends by itself once its pool is sent.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nanopeer::bench::Progress;
use nanopeer::bench::inprocess::Ceiling;
use nanopeer::bench::setup::BenchPlan;
use nanopeer::bench::stream::{BlockPool, MessagePool, RepTurns, StreamMix, VotePool};
use nanopeer::bench::workload::{
    NodeView, PUBLISH, Spec, StreamPlan, StreamReport, StreamRun, StreamSettings, StreamSetup,
    VOTES, Workload, bench_stream_in_process, rpc_stats, run_stream, stream_outcome_json,
};
use nanopeer::crypto::KeyPair;
use nanopeer::node::{Node, NodeOptions};
use nanopeer::ops::api::SharedNode;
use nanopeer::ops::http::{HttpServer, ServerOptions};
use nanopeer::types::Network;
use nanopeer::wire::MessageType;

mod common;
use common::serial;

fn opts(dir: &Path) -> NodeOptions {
    let mut o = common::small_node(dir, 1, 256);
    // a duplicate must still find its original in the filter
    o.filter_slots = 1 << 18;
    o.event_queue = 1 << 16;
    o.batch_max = 16;
    o
}

fn settings(target: SocketAddr) -> StreamSettings {
    StreamSettings {
        target,
        network: Network::Dev,
        rate: 0,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(10),
        ramp_timeout: Duration::from_secs(5),
        load_cores: Vec::new(),
    }
}

fn vote_pool(channels: usize, mix: StreamMix) -> MessagePool {
    let reps: Vec<KeyPair> = (1..=4).map(|i| KeyPair::from_private([i; 32])).collect();
    MessagePool::Votes(VotePool::sign(&reps, RepTurns::Random, channels, mix, 2, 2))
}

/// The whole run's counts: what was sent, received, verified and dropped by reason.
fn assert_counts(run: &StreamRun, mix: &StreamMix, spec: &Spec) {
    let t = &run.total;
    assert!(run.drained, "not every message reached the node: {t:?}");
    assert_eq!(run.peers.messages_sent, mix.total() as u64, "sent");
    assert_eq!(t.received, mix.total() as u64, "received");
    assert_eq!(t.verified, mix.valid as u64, "verified: {t:?}");
    assert_eq!(t.drop_of("duplicate"), mix.duplicates as u64, "{t:?}");
    assert_eq!(t.drop_of("invalid_signature"), mix.bad_sigs as u64, "{t:?}");
    if spec.drops.iter().any(|(n, _)| *n == "insufficient_work") {
        assert_eq!(t.drop_of("insufficient_work"), mix.bad_work as u64, "{t:?}");
    }
    assert_eq!(t.drop_of("overload"), 0, "{t:?}");
    assert_eq!(
        t.verified + t.dropped(),
        t.received,
        "every message accounted for"
    );
    assert!(run.in_window.verified <= t.verified);
}

fn setup(workload: Workload, pool: &MessagePool, target: SocketAddr) -> StreamSetup {
    StreamSetup {
        workload,
        shards: 1,
        batch_max: 16,
        reps: 4,
        hashes: 2,
        rate: 0,
        target: target.to_string(),
        network: "dev".into(),
        pool: (pool.mix(), pool.bytes(), Duration::ZERO),
        duration: Duration::from_secs(10),
    }
}

const CEILING: Ceiling = Ceiling {
    per_sec: 50_000.0,
    per_cpu_sec: 60_000.0,
};

#[test]
fn votes_stream_counts_equal_the_nodes_counters_and_what_was_sent() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(opts(dir.path())).unwrap();
    let mix = StreamMix {
        valid: 1500,
        bad_sigs: 5,
        duplicates: 7,
        bad_work: 0,
    };
    let pool = vote_pool(3, mix);
    let target = node.local_addr();
    let s = setup(Workload::Votes, &pool, target);
    let run = run_stream(
        &settings(target),
        Arc::new(pool),
        &VOTES,
        &NodeView::in_process(&node),
        &Progress::hidden(),
    )
    .unwrap();
    assert_counts(&run, &mix, &VOTES);
    // the report's counts are the node's own counters (a fresh node: they started at 0)
    let n = node.stats().proto;
    let t = &run.total;
    assert_eq!(t.verified, n.votes_valid);
    assert_eq!(t.received, n.received(MessageType::ConfirmAck));
    assert_eq!(t.drop_of("duplicate"), n.duplicate_confirm_ack);
    assert_eq!(t.drop_of("invalid_signature"), n.invalid_vote_signature);
    assert_eq!(t.drop_of("overload"), n.verify_overflow);
    assert_eq!(run.peers.handshakes, 3, "one channel per peer");
    assert_eq!(run.peers.channels_cut, 0, "every channel stayed up");
    let report = StreamReport::new(&s, &run, CEILING);
    let v = report.json();
    assert_eq!(v["workload"], "votes");
    assert_eq!(v["sent"], 1512);
    assert_eq!(v["received"], 1512);
    assert_eq!(v["verified"], 1500);
    assert_eq!(v["drops"]["duplicate"], 7);
    assert_eq!(v["drops"]["invalid_signature"], 5);
    assert_eq!(v["drops"]["overload"], 0);
    assert_eq!(v["verified_in_window"], run.in_window.verified);
    let rate = v["votes_per_sec"].as_f64().unwrap();
    assert_eq!(v["efficiency"].as_f64().unwrap(), rate / CEILING.per_sec);
    assert!(v.get("server_cpu_us_per_vote").is_some());
    assert!(v.get("blocks_per_sec").is_none());
    node.stop().unwrap();
}

#[test]
fn publish_run_reports_checked_blocks_and_drops_by_reason() {
    let _g = serial();
    let plan = StreamPlan {
        base: BenchPlan {
            shards: 1,
            batch_max: 16,
            batch_delay_us: 200,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            connections: 2,
            load_threads: None,
            network: Network::Dev,
            verify_node: true,
            hold: false,
            hold_limit: 0,
            pin: false,
        },
        workload: Workload::Publish,
        channels: 2,
        reps: 0,
        rep_keys: Vec::new(),
        hashes: 1,
        rate: 0,
        pool: Some(400),
        bad_sigs: 3,
        duplicates: 4,
        bad_work: 5,
    };
    let mix = plan.mix(400);
    let pool = BlockPool::build(Network::Dev, 2, mix, 2).unwrap();
    let o = bench_stream_in_process(
        &plan,
        CEILING,
        Arc::new(MessagePool::Blocks(pool)),
        Duration::ZERO,
        &Progress::hidden(),
    )
    .unwrap();
    let r = &o.report;
    assert_eq!(r.sent, 412);
    assert_eq!(r.total.received, 412);
    assert_eq!(r.total.verified, 400);
    assert_eq!(r.total.drop_of("duplicate"), 4);
    assert_eq!(r.total.drop_of("insufficient_work"), 5);
    assert_eq!(r.total.drop_of("invalid_signature"), 3);
    assert_eq!(r.total.dropped(), 12);
    assert!(r.drained);
    let v = stream_outcome_json(&o, 2);
    assert_eq!(v["workload"], "publish");
    assert!(v.get("blocks_per_sec").is_some() && v.get("votes_per_sec").is_none());
    assert!(v.get("server_cpu_us_per_block").is_some());
    assert_eq!(v["drops"]["insufficient_work"], 5);
    assert_eq!(v["pool"]["bad_work"], 5);
    assert_eq!(v["bench_limits"]["verify_per_sec"], 100_000_000);
    assert_eq!(v["channels_per_shard"][0], 2);
    assert!(v.get("placement").is_some() && v.get("load_average").is_some());
}

#[test]
fn a_targets_counters_through_its_rpc_give_the_same_counts() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(opts(dir.path())).unwrap();
    let target = node.local_addr();
    let shared = SharedNode::new(node);
    let api: Arc<dyn nanopeer::ops::rpc::NodeApi> = Arc::new(shared.clone());
    let server = HttpServer::start(
        "127.0.0.1:0".parse().unwrap(),
        api,
        ServerOptions::default(),
    )
    .unwrap();
    let mix = StreamMix {
        valid: 600,
        bad_sigs: 2,
        duplicates: 3,
        bad_work: 0,
    };
    let run = run_stream(
        &settings(target),
        Arc::new(vote_pool(2, mix)),
        &VOTES,
        &NodeView::Rpc(server.local_addr()),
        &Progress::hidden(),
    )
    .unwrap();
    assert_counts(&run, &mix, &VOTES);
    assert!(run.server_cpu.is_none(), "no CPU figure for a target");
    let valid = shared.with(|n| n.stats().proto.votes_valid).unwrap();
    assert_eq!(run.total.verified, valid);
    // the publish rows of the same node count nothing of a vote stream
    let p = PUBLISH.tally(&rpc_stats(server.local_addr()).unwrap());
    assert_eq!((p.verified, p.received, p.dropped()), (0, 0, 0));
    server.stop();
    shared.stop().unwrap();
}

#[test]
fn tune_sweeps_the_votes_workload_into_its_files() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tune-votes");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_nanopeer"))
        .args([
            "tune",
            "--workload",
            "votes",
            "--shards-list",
            "1",
            "--batch-list",
            "1,16",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--ceiling-secs",
            "0.05",
            "--channels",
            "2",
            "--reps",
            "8",
            // more than the node verifies in the 0.3 s window even when the machine is idle, so
            // each point's window is full however busy the machine (a pool of 3 000 was all
            // verified before the window opened on a loaded one)
            "--pool",
            "30000",
            "--no-pin",
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let csv = std::fs::read_to_string(out.join("tune.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("shards,batch_max,votes_per_sec,"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with("1,1,") && lines[2].starts_with("1,16,"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tune.json")).unwrap()).unwrap();
    assert_eq!(json["workload"], "votes");
    assert_eq!(json["complete"], true);
    assert_eq!(json["points"].as_array().unwrap().len(), 2);
    assert_eq!(json["recommendation"]["unit"], "votes");
    for p in json["points"].as_array().unwrap() {
        assert_eq!(p["drops"]["duplicate"], 0);
        assert!(p["verified"].as_u64().unwrap() > 0, "{p}");
    }
    let svg = std::fs::read_to_string(out.join("tune.svg")).unwrap();
    assert!(svg.contains("votes/s by batch size"), "{svg}");
    assert!(stdout.contains("recommended: --shards 1"), "{stdout}");
}
