//! Adversarial tests against a real node on loopback (short versions of `nanopeer bench
//! --attack KIND`): silent, query-only and dripping connections, malformed traffic,
//! bad-signature floods, keepalive poisoning, store faults and stop under load.
//!
//! One shard, dev network, handshake timeout shortened to 1 s so that cut connections are seen
//! within the test. Tests run one at a time (a global lock); every wait polls with a deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use nanopeer::bench::attack::{AttackConfig, AttackKind, process_fds};
use nanopeer::bench::{LoadConfig, run_attack};
use nanopeer::crypto::{BatchVerifier, KeyPair};
use nanopeer::node::{AdaptiveBatch, Node, NodeError, NodeOptions, NodeStats};
use nanopeer::store::PeerStore;
use rand::SeedableRng;

mod common;
use common::{serial, wait_until};

/// The node's connection cap in these tests.
const MAX_CONNECTIONS: usize = 512;

fn opts(dir: &Path) -> NodeOptions {
    let mut o = common::small_node(dir, 1, MAX_CONNECTIONS);
    o.proto.handshake_timeout_ms = 1_000;
    o.proto.idle_timeout_ms = 2_000;
    o
}

fn honest(target: SocketAddr, connections: usize) -> LoadConfig {
    let mut l = LoadConfig::new(target);
    l.connections = connections;
    l.key_pool = 64;
    l.source_ips = 1024;
    l.progress_interval = Duration::from_millis(50);
    l.handshake_timeout = Duration::from_secs(3);
    l
}

fn attack(target: SocketAddr, kind: AttackKind, connections: usize, secs: f64) -> AttackConfig {
    let mut a = AttackConfig::new(target, kind);
    a.connections = connections;
    a.duration = Duration::from_secs_f64(secs);
    a.sample_interval = Duration::from_millis(50);
    a.honest = None;
    a
}

fn live(n: &Node) -> u64 {
    n.stats().io.live_connections
}

/// 300 silent connections held open (reopened when cut) plus garbage and a 50 % bad-signature
/// mix: honest peers still complete verified handshakes, the silent ones are cut by the
/// handshake timeout, descriptors and connections stay bounded and return to baseline.
#[test]
fn honest_peer_served_under_300_silent_connections_and_hostile_traffic() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(opts(dir.path())).unwrap();
    let addr = node.local_addr();
    std::thread::sleep(Duration::from_millis(100));
    let fds_before = process_fds().unwrap();

    let garbage = std::thread::spawn(move || {
        let mut g = attack(addr, AttackKind::Garbage, 30, 2.0);
        g.source_offset = 2_000_000;
        run_attack(&g, None).unwrap()
    });
    let mut silent = attack(addr, AttackKind::Silent, 300, 2.0);
    let mut load = honest(addr, 4);
    load.bad_sig_pct = 50;
    silent.honest = Some(load);
    let r = run_attack(&silent, Some(&node)).unwrap();
    let g = garbage.join().unwrap();
    eprintln!("{}", r.summary());
    eprintln!("{}", g.summary());

    let h = r.honest.as_ref().unwrap();
    assert!(h.handshakes >= 1, "no honest handshake completed: {h:?}");
    assert_eq!(h.failures_total(), 0, "honest failures: {:?}", h.failures);
    assert!(r.held_peak >= 300, "only {} silent held", r.held_peak);
    // the silent ones were cut by the handshake timeout (§7.3) during the 2 s run
    assert!(r.cut_by_node >= 250, "silent cut: {}", r.cut_by_node);
    assert!(g.cut_by_node >= 30, "garbage cut: {}", g.cut_by_node);
    let after = node.stats();
    let before = r.node_before.as_ref().unwrap();
    let timeouts = |s: &NodeStats| s.io.closed_deadline + s.proto.closes.timeout;
    assert!(
        timeouts(&after) - timeouts(before) >= 250,
        "timeouts {}",
        timeouts(&after) - timeouts(before)
    );
    assert!(after.proto.closes.header_error - before.proto.closes.header_error >= 5);
    // bounded: node connections ≤ its cap; descriptors ≤ baseline + node cap + our own sockets
    assert!(r.connections_peak() <= MAX_CONNECTIONS as u64);
    let ours = 300 + 30 + 4 + 64;
    assert!(
        r.fds_peak() <= fds_before + MAX_CONNECTIONS + ours,
        "fds peak {} baseline {fds_before}",
        r.fds_peak()
    );
    // back to baseline: every attack connection closed, the node alive and serving
    assert!(
        wait_until(Duration::from_secs(4), || live(&node) == 0),
        "connections left: {}",
        live(&node)
    );
    assert!(wait_until(Duration::from_secs(2), || process_fds()
        .unwrap()
        <= fds_before + 4));
    let peer_dir = tempfile::tempdir().unwrap();
    let mut po = opts(peer_dir.path());
    po.preconfigured_peers = Some(vec![addr.to_string()]);
    let peer = Node::start(po).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || node
            .peers()
            .iter()
            .any(|p| p.node_id == peer.node_id())),
        "the node no longer admits an honest node"
    );
    peer.stop().unwrap();
    node.stop().unwrap();
}

/// Query-only sources (cookie exhaustion): per-IP and total cookie caps hold; honest peers
/// from other addresses are admitted while the per-IP cap is what binds; once the attackers
/// are cut, their cookies die with their connections.
#[test]
fn query_only_sources_hit_the_cookie_caps_and_honest_peers_are_admitted() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.proto.max_cookies_per_ip = 4;
    o.proto.max_cookies = 64;
    let node = Node::start(o).unwrap();
    let addr = node.local_addr();

    // 200 connections from 2 addresses: at most 2 × 4 cookies assigned
    let mut a = attack(addr, AttackKind::QueryOnly, 200, 0.8);
    a.source_ips = 2;
    a.honest = Some(honest(addr, 2));
    let r = run_attack(&a, Some(&node)).unwrap();
    eprintln!("{}", r.summary());
    let (b, s) = (
        r.node_before.as_ref().unwrap(),
        r.node_after.as_ref().unwrap(),
    );
    let refused = s.proto.handshake.cookie_limit - b.proto.handshake.cookie_limit;
    assert!(r.opened >= 200, "opened {}", r.opened);
    // each opened connection got one of the 8 cookies, was refused, or was not yet read
    assert!(
        refused + 2 * 4 + r.held_end >= r.opened,
        "cookies beyond the per-IP cap: opened {} refused {refused}",
        r.opened
    );
    let h = r.honest.as_ref().unwrap();
    assert!(h.handshakes >= 1 && h.failures_total() == 0, "{h:?}");

    // 300 connections from 300 addresses: the total cap (64) binds
    let mut a = attack(addr, AttackKind::QueryOnly, 300, 0.5);
    a.source_ips = 300;
    let r = run_attack(&a, Some(&node)).unwrap();
    let (b, s) = (
        r.node_before.as_ref().unwrap(),
        r.node_after.as_ref().unwrap(),
    );
    let refused = s.proto.handshake.cookie_limit - b.proto.handshake.cookie_limit;
    assert!(
        refused + 64 + r.held_end >= r.opened,
        "cookies beyond the total cap: opened {} refused {refused}",
        r.opened
    );
    // the attackers are gone (closed at the end of the run): honest peers are admitted again
    let mut l = honest(addr, 2);
    l.duration = Duration::from_millis(500);
    let h = nanopeer::bench::run(&l, |_| {}).unwrap();
    assert!(h.handshakes >= 1 && h.failures_total() == 0, "{h:?}");
    node.stop().unwrap();
}

/// One byte per 100 ms: cut by the 1 s handshake timeout, not served forever.
#[test]
fn drip_connections_are_cut_by_the_handshake_timeout() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(opts(dir.path())).unwrap();
    let mut a = attack(node.local_addr(), AttackKind::Drip, 20, 1.8);
    a.drip_interval = Duration::from_millis(100);
    let r = run_attack(&a, Some(&node)).unwrap();
    eprintln!("{}", r.summary());
    let (b, s) = (
        r.node_before.as_ref().unwrap(),
        r.node_after.as_ref().unwrap(),
    );
    assert!(r.cut_by_node >= 20, "cut {}", r.cut_by_node);
    let timeouts = |s: &NodeStats| s.io.closed_deadline + s.proto.closes.timeout;
    assert!(
        timeouts(s) - timeouts(b) >= 20,
        "timeouts {}",
        timeouts(s) - timeouts(b)
    );
    assert_eq!(s.proto.handshake.ok, b.proto.handshake.ok);
    assert!(wait_until(Duration::from_secs(3), || live(&node) == 0));
    node.stop().unwrap();
}

/// Bad-signature mixes of 10, 50 and 100 %: every bad response rejected (the node's counter
/// equals what was sent), every good one accepted; under 100 % the adaptive cap falls to 1.
#[test]
fn bad_signature_mixes_reject_every_bad_and_accept_every_good() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(opts(dir.path())).unwrap();
    let addr = node.local_addr();
    for pct in [10u8, 50, 100] {
        let mut a = attack(addr, AttackKind::BadSig(pct), 1, 0.8);
        a.honest = Some(honest(addr, 8));
        let r = run_attack(&a, Some(&node)).unwrap();
        eprintln!("{}", r.summary());
        let bad = r.bad_sig.unwrap();
        let b = r.node_before.clone().unwrap();
        let inv = |s: &NodeStats| {
            s.proto.handshake.invalid_signature - b.proto.handshake.invalid_signature
        };
        let ok = |s: &NodeStats| s.proto.handshake.ok - b.proto.handshake.ok;
        assert!(bad.bad_sent > 0);
        assert_eq!(bad.bad_accepted, 0, "{pct}%: a bad signature was accepted");
        // Every bad response the node read was rejected (counted), and the peers saw the
        // closes; only responses in flight when the load stopped (at most one per connection)
        // may be unread or their close unseen: the load closed those connections first.
        let in_range = |n: u64, lo: u64, hi: u64| lo <= n && n <= hi;
        assert!(
            wait_until(Duration::from_secs(3), || in_range(
                inv(&node.stats()),
                bad.bad_rejected,
                bad.bad_sent
            )),
            "{pct}%: node rejected {}, {bad:?}",
            inv(&node.stats())
        );
        assert!(bad.bad_sent - bad.bad_rejected <= 8, "{pct}%: {bad:?}");
        let h = r.honest.as_ref().unwrap();
        assert_eq!(h.failures_total(), 0, "{pct}%: {:?}", h.failures);
        assert!(
            wait_until(Duration::from_secs(3), || in_range(
                ok(&node.stats()),
                h.handshakes,
                bad.good_sent
            )),
            "{pct}%: accepted {}, {bad:?}",
            ok(&node.stats())
        );
        assert!(bad.good_sent - ok(&node.stats()) <= 8, "{pct}%: {bad:?}");
        if pct < 100 {
            assert!(h.handshakes > 0);
            // the share is exact per 100 dials
            let total = bad.bad_sent + bad.good_sent;
            let share = bad.bad_sent as f64 / total as f64;
            assert!(
                (share - f64::from(pct) / 100.0).abs() < 0.1,
                "{pct}%: share {share}"
            );
        } else {
            assert_eq!(bad.good_sent, 0);
            assert_eq!(
                node.stats().batch.cap,
                1,
                "cap did not fall to single verification"
            );
        }
    }
    assert!(wait_until(Duration::from_secs(3), || live(&node) == 0));
    node.stop().unwrap();
}

fn bad_items(n: usize) -> Vec<(KeyPair, Vec<u8>, nanopeer::types::Signature)> {
    (0..n)
        .map(|i| {
            let k = KeyPair::from_private([(i % 251) as u8 + 1; 32]);
            let msg = (i as u64).to_le_bytes().to_vec();
            let sig = k.sign(b"other bytes");
            (k, msg, sig)
        })
        .collect()
}

/// Drives a verifier the way a shard does: flush at the cap, adapt (or not) after each flush.
/// Returns (items checked inside multiscalar batches, single verifications, time).
fn drive(
    items: &[(KeyPair, Vec<u8>, nanopeer::types::Signature)],
    good: bool,
    adaptive: bool,
) -> (usize, u64, Duration) {
    let mut v = BatchVerifier::new(64);
    let mut a = AdaptiveBatch::new(64);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let mut batched = 0;
    let t = Instant::now();
    let mut flush = |v: &mut BatchVerifier, a: &mut AdaptiveBatch, batched: &mut usize| {
        let n = v.len();
        if n >= 2 {
            *batched += n;
        }
        let invalid = v.verify(&mut rng).iter().filter(|ok| !**ok).count();
        assert_eq!(invalid == 0, good);
        if adaptive {
            a.on_flush(n, invalid);
        }
    };
    for (k, msg, sig) in items {
        let sig = if good { k.sign(msg) } else { *sig };
        v.push(&k.public(), msg, &sig).unwrap();
        if v.len() >= a.cap() {
            flush(&mut v, &mut a, &mut batched);
        }
    }
    if !v.is_empty() {
        flush(&mut v, &mut a, &mut batched);
    }
    (batched, v.stats().single, t.elapsed())
}

/// Under 100 % bad signatures the adaptive cap stops paying for batch checks that fail (cost
/// per item → one single verification instead of ≈ 2×); with none bad it keeps full batches.
#[test]
fn adaptive_batching_bounds_the_cost_of_bad_signatures() {
    let items = bad_items(1024);
    let (fixed_batched, fixed_single, t_fixed) = drive(&items, false, false);
    let (ad_batched, ad_single, t_ad) = drive(&items, false, true);
    eprintln!(
        "1024 bad: fixed 64 → {fixed_batched} in batches + {fixed_single} single ({t_fixed:?}); \
         adaptive → {ad_batched} in batches + {ad_single} single ({t_ad:?})"
    );
    assert_eq!(fixed_batched, 1024);
    assert_eq!(fixed_single, 1024);
    // 64 + 32 + 16 + 8 + 4 + 2 before the cap reaches 1, then single only
    assert!(ad_batched <= 126, "{ad_batched}");
    assert_eq!(ad_single, 1024);
    let (good_batched, good_single, _) = drive(&items, true, true);
    assert_eq!(
        (good_batched, good_single),
        (1024, 0),
        "clean traffic left full batches"
    );
}

/// Keepalives advertising reserved, unspecified, our own and thousands of bogus addresses:
/// the reserved/unspecified/own ones are refused by the rules, only loopback bogus ones are
/// dialed (each fails at once: nothing listens), dials are paced and bounded.
#[test]
fn keepalive_poisoning_dials_nothing_outside_the_rules() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(opts(dir.path())).unwrap();
    let mut a = attack(node.local_addr(), AttackKind::Poison, 16, 1.2);
    a.drip_interval = Duration::from_millis(20);
    a.poison_bogus = 3000;
    let r = run_attack(&a, Some(&node)).unwrap();
    eprintln!("{}", r.summary());
    assert!(r.poison_handshakes >= 16, "{}", r.poison_handshakes);
    assert!(r.poison_addresses >= 1000, "{}", r.poison_addresses);
    // let the crawler finish what it queued
    std::thread::sleep(Duration::from_millis(300));
    let s = node.stats();
    let ro = &s.crawler.reachout;
    eprintln!(
        "reachout: {ro:?}\nio: connects_ok {} failed {}",
        s.io.connects_ok, s.io.connects_failed
    );
    assert!(ro.not_a_peer > 0, "reserved/unspecified never seen: {ro:?}");
    assert!(ro.own_endpoint > 0, "own endpoint never seen: {ro:?}");
    assert!(ro.dials > 0, "no bogus loopback address dialed: {ro:?}");
    assert!(
        ro.dials <= 3000,
        "more dials than dialable addresses: {}",
        ro.dials
    );
    // every dial completed at once, refused: none went to an address that would hang
    assert!(
        wait_until(Duration::from_secs(3), || {
            let s = node.stats();
            s.io.connects_failed + s.io.connects_ok >= s.proto.dials
        }),
        "a dial is still pending (to a non-loopback address?)"
    );
    assert_eq!(node.stats().io.connects_ok, 0);
    node.stop().unwrap();
}

/// An unopenable store is a clear start error naming the file.
#[test]
fn unopenable_store_is_an_error_naming_the_file() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("peers.redb")).unwrap();
    let err = Node::start(opts(dir.path())).unwrap_err();
    assert!(matches!(err, NodeError::Store(_)), "{err:?}");
    assert!(err.to_string().contains("peers.redb"), "{err}");
}

/// Stop while an honest load holds channels: the peers known before the stop are in the store.
#[test]
fn peers_known_before_stop_under_load_are_stored() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(opts(dir.path())).unwrap();
    let addr = node.local_addr();
    let mut l = honest(addr, 16);
    l.hold = true;
    l.duration = Duration::from_secs(3);
    let load = std::thread::spawn(move || nanopeer::bench::run(&l, |_| {}).unwrap());
    assert!(wait_until(Duration::from_secs(3), || node.peers().len() >= 16));
    let known: Vec<SocketAddr> = node.peers().iter().map(|p| p.peering_endpoint).collect();
    node.stop().unwrap();
    let _ = load.join().unwrap();
    let store = PeerStore::open(dir.path()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let stored: Vec<SocketAddr> = store
        .load(now)
        .into_iter()
        .map(|(e, _)| e.to_socket_addr())
        .collect();
    for k in &known {
        assert!(
            stored.contains(k),
            "{k} known before stop, not stored ({} stored)",
            stored.len()
        );
    }
}

/// Env var that turns [`full_disk_child_entry`] into the child of
/// [`full_data_directory_keeps_peering_without_persistence`].
const FULL_DISK_CHILD: &str = "NANOPEER_HOSTILE_FULL_DISK_CHILD";

/// Child process: a node whose peer-store writes start failing (file-size limit, as a full disk
/// does) must keep peering, report `store_ok() == false`, count the errors and show them in the
/// metrics. Runs only when the parent test sets [`FULL_DISK_CHILD`] (the limit is process-wide,
/// so it must not touch the other tests).
#[test]
fn full_disk_child_entry() {
    if std::env::var(FULL_DISK_CHILD).is_err() {
        return;
    }
    use nanopeer::ops::rpc::NodeApi;
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = Node::start(opts(da.path())).unwrap();
    let mut ob = opts(db.path());
    ob.preconfigured_peers = Some(vec![a.local_addr().to_string()]);
    let b = Node::start(ob).unwrap();
    // A third node, started before the disk fills (it needs to create its own store), dials A
    // later.
    let c = Node::start(opts(dc.path())).unwrap();
    assert!(wait_until(Duration::from_secs(10), || a.peers().len() == 1));
    assert!(wait_until(Duration::from_secs(5), || a
        .stats()
        .crawler
        .thread
        .flushes
        > 0));
    assert!(a.store_ok());
    // The disk is "full" from now on: no write past the first byte of any file.
    nanopeer::io::set_file_size_limit(Some(1)).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !a.store_ok()),
        "the failed flush is not reported"
    );
    assert!(a.stats().crawler.thread.store_errors > 0);
    // Peering goes on: the existing channel stays, a new peer is admitted.
    c.keepalive(a.local_addr()).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || a.peers().len() == 2),
        "{:?}",
        a.peers()
    );
    let shared = nanopeer::ops::api::SharedNode::new(a);
    let text = nanopeer::ops::metrics::render(&shared.metrics());
    assert!(text.contains("\nnanopeer_peer_store_ok 0\n"), "{text}");
    std::fs::write(da.path().join("child-ok"), b"").ok();
    println!("CHILD-OK");
    shared.stop().unwrap();
    b.stop().unwrap();
    c.stop().unwrap();
}

#[test]
fn full_data_directory_keeps_peering_without_persistence() {
    let _g = serial();
    common::run_child("full_disk_child_entry", FULL_DISK_CHILD);
}
