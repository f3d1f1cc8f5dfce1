//! Thread health and file-descriptor limits, shown with real threads, sockets and limits:
//! a shard or crawler thread that panics (library `Node` and the `nanopeer run` binary), a
//! stalled shard found by the watchdog, and a node started under a small `RLIMIT_NOFILE`
//! (lowered caps, or a refusal).
//!
//! Nodes run on loopback (dev network, ephemeral ports, data in temporary folders). Tests run
//! one at a time (a global lock); every wait polls with a deadline. The open-file limit is
//! process-wide, so the tests that lower it do so in a child process (this test binary run
//! again with an env var, or the `nanopeer` binary under `sh -c 'ulimit -n …'`).

use std::fs::File;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nanopeer::io::Fault;
use nanopeer::node::fds::{FD_RESERVE, FDS_PER_SHARD, MIN_CONNECTIONS_PER_SHARD};
use nanopeer::node::{FdFit, Node, NodeError, NodeOptions, fit_connections};
use nanopeer::ops::api::SharedNode;
use nanopeer::ops::metrics::parse_text;
use nanopeer::ops::rpc::NodeApi;
use nanopeer::types::PublicKey;

mod common;
use common::{serial, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_nanopeer");

fn opts(dir: &Path, shards: usize) -> NodeOptions {
    common::small_node(dir, shards, 256)
}

fn shard_of(node: &Node, id: &PublicKey) -> Option<u16> {
    node.peers()
        .iter()
        .find(|p| p.node_id == *id)
        .map(|p| p.shard)
}

/// Library `Node`: a shard that panics takes its channels out of the map at once (within
/// 1 s; it is done on the dying thread), its peers see their connection closed and can
/// connect again through the other shard (no `DuplicateNodeId`), the other shard's channel
/// stays, and the node reports the dead thread.
#[test]
fn shard_panic_takes_its_channels_out_of_the_map_at_once() {
    let _g = serial();
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let b = Node::start(opts(db.path(), 1)).unwrap();
    let c = Node::start(opts(dc.path(), 1)).unwrap();
    let a = Node::start(opts(da.path(), 2)).unwrap();
    // A's dials go to its shards in turn: B's channel on one shard, C's on the other.
    a.keepalive(b.local_addr()).unwrap();
    a.keepalive(c.local_addr()).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || a.peers().len() == 2),
        "{:?}",
        a.peers()
    );
    let sb = shard_of(&a, &b.node_id()).unwrap();
    let sc = shard_of(&a, &c.node_id()).unwrap();
    assert_ne!(sb, sc, "dials are spread over the shards: {:?}", a.peers());
    let victim = format!("shard-{sb}");
    // A's connection to B, as B sees it.
    let a_to_b = b
        .peers()
        .iter()
        .find(|p| p.node_id == a.node_id())
        .map(|p| p.endpoint)
        .unwrap();
    assert!(a.threads().iter().all(|t| t.alive), "{:?}", a.threads());
    assert_eq!(a.failed_thread(), None);

    let t0 = Instant::now();
    a.inject_fault(&victim, Fault::Panic).unwrap();
    assert!(
        wait_until(Duration::from_secs(1), || shard_of(&a, &b.node_id())
            .is_none()),
        "B's channel is still in A's map after 1 s: {:?}",
        a.peers()
    );
    let gone_after = t0.elapsed();
    // The other shard's channel is untouched.
    assert_eq!(shard_of(&a, &c.node_id()), Some(sc));
    let failure = a.failed_thread().expect("the dead shard is reported");
    assert_eq!(failure.thread, victim);
    assert_eq!(failure.cause, "panicked: injected fault: panic");
    let threads = a.threads();
    let dead = threads.iter().find(|t| t.name == victim).unwrap();
    assert!(!dead.alive, "{threads:?}");
    assert!(
        threads.iter().filter(|t| t.name != victim).all(|t| t.alive),
        "{threads:?}"
    );

    // B sees that connection closed, and connects again (by itself, from what it learned in
    // keepalives, or asked here): A's surviving shard takes it, and B's node id is not refused
    // as a duplicate of the dead channel.
    assert!(
        wait_until(Duration::from_secs(5), || !b
            .peers()
            .iter()
            .any(|p| p.endpoint == a_to_b)),
        "{:?}",
        b.peers()
    );
    if shard_of(&a, &b.node_id()).is_none() {
        match b.keepalive(a.local_addr()) {
            Ok(()) | Err(NodeError::Refused { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        wait_until(Duration::from_secs(10), || shard_of(&a, &b.node_id())
            == Some(sc)),
        "B did not reconnect through the surviving shard: {:?} (duplicate node id refusals: {})",
        a.peers(),
        a.stats().proto.handshake.duplicate_node_id
    );
    assert_eq!(a.stats().proto.handshake.duplicate_node_id, 0);

    // The stop reports the dead shard.
    match a.stop() {
        Err(NodeError::ShardFailed { index, .. }) => assert_eq!(index, usize::from(sb)),
        other => panic!("stop should report the dead shard: {other:?}"),
    }
    println!("{victim}: channels gone {gone_after:?} after the panic");
    b.stop().unwrap();
    c.stop().unwrap();
}

/// Library `Node`: a crawler panic is reported (and by `stop`), the shards keep running.
#[test]
fn crawler_panic_is_reported() {
    let _g = serial();
    let da = tempfile::tempdir().unwrap();
    let a = Node::start(opts(da.path(), 1)).unwrap();
    a.inject_fault("crawler", Fault::Panic).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || a.failed_thread().is_some()),
        "{:?}",
        a.threads()
    );
    let f = a.failed_thread().unwrap();
    assert_eq!(
        (f.thread.as_str(), f.cause.as_str()),
        ("crawler", "panicked: injected fault: panic")
    );
    let t = a.threads();
    assert_eq!(
        t.iter()
            .map(|t| (t.name.as_str(), t.alive))
            .collect::<Vec<_>>(),
        vec![("shard-0", true), ("crawler", false)]
    );
    assert!(matches!(
        a.inject_fault("shard-7", Fault::Panic),
        Err(NodeError::NoSuchThread(_))
    ));
    assert!(matches!(a.stop(), Err(NodeError::CrawlerPanicked)));
}

/// Library `Node`: a shard with a connection that stops making progress is found by the
/// watchdog (stalled, counted once, age on `stats` and `/metrics`), and found to recover.
#[test]
fn stalled_shard_is_reported_by_the_watchdog_and_recovers() {
    let _g = serial();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut oa = opts(da.path(), 1);
    oa.stall_warning = Duration::from_millis(400);
    let a = Node::start(oa).unwrap();
    let b = Node::start(opts(db.path(), 1)).unwrap();
    b.keepalive(a.local_addr()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || a.peers().len() == 1));
    let shared = SharedNode::new(a);
    let age_stat = |s: &SharedNode| {
        s.stats()
            .entries
            .iter()
            .find(|e| e.stat_type == "thread_progress_age_ms" && e.detail == "shard-0")
            .map(|e| e.value)
    };
    // Healthy: a shard turns its loop at least every 100 ms (its timer).
    assert!(age_stat(&shared).unwrap() < 400);
    shared
        .with(|n| n.inject_fault("shard-0", Fault::Stall(Duration::from_millis(1500))))
        .unwrap()
        .unwrap();
    let stalled = |s: &SharedNode| s.with(|n| n.threads()[0].clone()).unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || stalled(&shared).stalled),
        "{:?}",
        stalled(&shared)
    );
    let t = stalled(&shared);
    assert_eq!((t.name.as_str(), t.alive, t.stalls), ("shard-0", true, 1));
    assert!(t.progress_age >= Duration::from_millis(400), "{t:?}");
    assert!(age_stat(&shared).unwrap() >= 400);
    let samples = parse_text(&nanopeer::ops::metrics::render(&shared.metrics())).unwrap();
    let metric = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.label("thread") == Some("shard-0"))
            .map(|s| s.value)
    };
    assert_eq!(metric("nanopeer_thread_stalls_total"), Some(1.0));
    assert_eq!(metric("nanopeer_thread_alive"), Some(1.0));
    assert!(metric("nanopeer_thread_progress_age_seconds").unwrap() >= 0.4);
    // The stall ends: recovered, counted once, the channel still there.
    assert!(
        wait_until(Duration::from_secs(3), || !stalled(&shared).stalled),
        "{:?}",
        stalled(&shared)
    );
    let t = stalled(&shared);
    assert_eq!(t.stalls, 1);
    assert!(t.progress_age < Duration::from_millis(400), "{t:?}");
    assert_eq!(shared.with(|n| n.peers().len()), Some(1));
    assert_eq!(shared.with(Node::failed_thread), Some(None));
    shared.stop().unwrap();
    b.stop().unwrap();
}

/// Waits (bounded) for a child to exit.
fn wait_exit(child: &mut std::process::Child, within: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(within, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

fn run_args(data: &Path) -> Vec<String> {
    vec![
        "run".into(),
        "--network".into(),
        "dev".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--shards".into(),
        "1".into(),
        "--data-path".into(),
        data.display().to_string(),
    ]
}

/// `nanopeer run`: a shard thread that panics is logged at error level with the thread's name,
/// the node stops, and the process exits with status 70 (for `Restart=on-failure`).
#[test]
fn run_exits_with_status_70_when_a_shard_panics() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("run.log");
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .args(run_args(&data))
        .args(["--inject-fault", "shard-0:panic@300"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("no exit within 15 s:\n{text}"));
    assert_eq!(status.code(), Some(70), "{status}\n{text}");
    let panic_line = text
        .lines()
        .find(|l| l.contains("thread shard-0 panicked: injected fault: panic"))
        .unwrap_or_else(|| panic!("no panic line:\n{text}"));
    assert!(panic_line.contains("ERROR"), "{panic_line}");
    assert!(
        text.lines().any(|l| l.contains("ERROR")
            && l.contains("thread shard-0 panicked")
            && l.contains("stopping the node (exit status 70")),
        "{text}"
    );
    println!(
        "exit {status} after {:?}; log line: {panic_line}",
        t0.elapsed()
    );
}

/// `nanopeer run` under `ulimit -n N` (soft = hard = N), through `sh`.
fn run_under_limit(limit: u64, data: &Path, log: &Path) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(run_args(data))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// `nanopeer run` under a small open-file limit: caps that do not fit are lowered with a
/// warning naming the numbers and the node runs; a limit below the minimal configuration is
/// refused with a clear message and exit status 1.
#[test]
fn run_lowers_the_caps_or_refuses_under_a_small_open_file_limit() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    // 1 shard of the default 2048 inbound + 2048 outbound connections does not fit 200
    // descriptors: 133 do.
    let FdFit::Lowered { per_shard, .. } = fit_connections(200, 1, 4096) else {
        panic!("4096 connections fit 200 descriptors?")
    };
    assert_eq!(
        per_shard,
        200 - FD_RESERVE as usize - FDS_PER_SHARD as usize
    );
    let log = dir.path().join("lowered.log");
    let mut child = run_under_limit(200, &dir.path().join("a"), &log);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let up = wait_until(Duration::from_secs(10), || {
        text().contains("nanopeer running") || matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(up, "not up within 10 s:\n{}", text());
    let warning = format!(
        "Reducing the connections per shard (limits.max_connections_per_shard + limits.max_outbound_per_shard) from 4096 to {per_shard}, because of system limitations: the open-file limit is 200"
    );
    assert!(
        text()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&warning)),
        "no {warning:?} warning:\n{}",
        text()
    );
    assert!(
        text().contains("open-file limit: soft 200 (hard 200)"),
        "{}",
        text()
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", text());

    // The minimal configuration (8 connections) of 1 shard needs 64 + 11 = 75.
    let minimum = FD_RESERVE + FDS_PER_SHARD + MIN_CONNECTIONS_PER_SHARD as u64;
    assert_eq!(minimum, 75);
    let log = dir.path().join("refused.log");
    let mut child = run_under_limit(minimum - 1, &dir.path().join("b"), &log);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "nanopeer: cannot start the node: the open-file limit (74, hard 74) is below the 75 \
         descriptors that 1 shard(s) need at the least (1 × (8 connections + 3) + 64 reserved); \
         raise it (ulimit -n, systemd LimitNOFILE=) or use fewer shards",
        "{text}"
    );
}

/// Env var that turns [`fd_limit_child_entry`] into the child of
/// [`small_open_file_limit_is_raised_then_fitted`].
const FD_LIMIT_CHILD: &str = "NANOPEER_HEALTH_FD_LIMIT_CHILD";

/// Child process: with soft 250 / hard 300, a node raises the soft limit to 300, lowers its
/// per-shard cap to what fits (2 shards: 115), still peers, and a configuration that cannot fit
/// even minimally (40 shards) is refused. Runs only when the parent sets [`FD_LIMIT_CHILD`]
/// (the limit is process-wide).
#[test]
fn fd_limit_child_entry() {
    if std::env::var(FD_LIMIT_CHILD).is_err() {
        return;
    }
    nanopeer::io::set_open_file_limit(250, 300).unwrap();
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut oa = opts(da.path(), 2);
    oa.io.max_connections = 2048;
    let a = Node::start(oa).unwrap();
    let f = a.open_files();
    assert_eq!((f.soft_at_start, f.soft, f.hard), (250, 300, 300), "{f:?}");
    assert_eq!(nanopeer::io::open_file_limit().unwrap(), (300, 300));
    // 2048 inbound + 2048 outbound configured per shard.
    assert_eq!((f.configured_per_shard, f.per_shard), (4096, 115), "{f:?}");
    assert_eq!(f.needed, 2 * (115 + 3) + 64);
    assert!(f.needed <= 300);
    // A second node (1 shard of 256 inbound + 2048 outbound) is lowered too: the budget is
    // per node.
    let b = Node::start(opts(db.path(), 1)).unwrap();
    assert_eq!(b.open_files().per_shard, 300 - 64 - 3);
    b.keepalive(a.local_addr()).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || a.peers().len() == 1),
        "the nodes do not peer under the lowered caps"
    );
    // 40 shards × (8 + 3) + 64 = 504 > 300.
    let mut oc = opts(dc.path(), 40);
    oc.io.max_connections = 2048;
    match Node::start(oc) {
        Err(e @ NodeError::OpenFileLimit { minimum: 504, .. }) => {
            let text = e.to_string();
            assert!(text.contains("(300, hard 300)"), "{text}");
            assert!(text.contains("504 descriptors"), "{text}");
        }
        other => panic!("40 shards should not start under 300 descriptors: {other:?}"),
    }
    a.stop().unwrap();
    b.stop().unwrap();
    println!("CHILD-OK");
}

/// Runs [`fd_limit_child_entry`] in a child process with a real, lowered `RLIMIT_NOFILE`.
#[test]
fn small_open_file_limit_is_raised_then_fitted() {
    let _g = serial();
    common::run_child("fd_limit_child_entry", FD_LIMIT_CHILD);
}
