//! The shared channel map: admission limits under concurrent inserts, node-id rules, IPv6
//! grouping, attempts, purge and sampling (§7.1–7.4).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Barrier};

use nanopeer::channels::{ChannelError, ChannelLimits, ChannelMap, Direction, NewChannel, Usage};
use nanopeer::endpoint::{Endpoint, IpKey, SubnetKey};
use nanopeer::types::{Network, PublicKey};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn ep(s: &str) -> Endpoint {
    Endpoint::from(s.parse::<SocketAddr>().unwrap())
}

fn at(ip: &str, port: u16) -> Endpoint {
    Endpoint::from(SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port))
}

fn node(n: u32) -> PublicKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_le_bytes());
    b[31] = 0xaa;
    PublicKey(b)
}

fn new_ch(remote: Endpoint, node_id: PublicKey, direction: Direction, now_ms: u64) -> NewChannel {
    NewChannel {
        node_id,
        protocol_version: 0x15,
        remote,
        shard: 0,
        direction,
        now_ms,
    }
}

fn inbound(remote: Endpoint, n: u32) -> NewChannel {
    new_ch(remote, node(n), Direction::Inbound, 0)
}

fn live() -> ChannelMap {
    ChannelMap::new(ChannelLimits::for_network(Network::Live))
}

/// Runs `per_thread` inserts on each of `threads` threads, all released at once by a barrier;
/// returns the outcomes.
fn race(
    map: &Arc<ChannelMap>,
    threads: usize,
    per_thread: usize,
    make: impl Fn(usize) -> NewChannel + Send + Sync + 'static,
) -> Vec<Result<(), ChannelError>> {
    let barrier = Arc::new(Barrier::new(threads));
    let make = Arc::new(make);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let map = map.clone();
            let barrier = barrier.clone();
            let make = make.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..per_thread)
                    .map(|i| map.try_insert(make(t * per_thread + i)).map(|_| ()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn fifty_racing_connections_from_one_ip_admit_exactly_the_limit() {
    for round in 0..20 {
        let map = Arc::new(live());
        let out = race(&map, 5, 10, |i| {
            inbound(at("8.8.8.8", 10_000 + i as u16), i as u32)
        });
        let ok = out.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 4, "round {round}");
        assert!(
            out.iter()
                .filter_map(|r| r.err())
                .all(|e| e == ChannelError::IpLimit)
        );
        assert_eq!(map.len(), 4);
        assert_eq!(
            map.ip_usage(IpKey::of(at("8.8.8.8", 1).ip().to_owned()))
                .channels,
            4
        );
        assert_eq!(map.snapshot().len(), 4);
    }
}

#[test]
fn racing_dev_limits_admit_all_fifty() {
    let map = Arc::new(ChannelMap::new(ChannelLimits::for_network(Network::Dev)));
    let out = race(&map, 5, 10, |i| {
        inbound(at("127.0.0.1", 20_000 + i as u16), i as u32)
    });
    assert!(out.iter().all(|r| r.is_ok()));
    assert_eq!(map.len(), 50);
}

#[test]
fn racing_subnet_limit() {
    for _ in 0..10 {
        let map = Arc::new(live());
        // 50 different IPs in one /24: at most 16 channels.
        let out = race(&map, 5, 10, |i| {
            inbound(at(&format!("81.2.3.{}", i + 1), 7075), i as u32)
        });
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 16);
        assert!(
            out.iter()
                .filter_map(|r| r.err())
                .all(|e| e == ChannelError::SubnetLimit)
        );
        assert_eq!(
            map.subnet_usage(SubnetKey::of(*at("81.2.3.200", 1).ip()))
                .channels,
            16
        );
    }
}

#[test]
fn racing_same_node_id_from_one_ip_admits_one() {
    for _ in 0..10 {
        let map = Arc::new(ChannelMap::new(ChannelLimits::for_network(Network::Dev)));
        let out = race(&map, 5, 4, |i| inbound(at("9.9.9.9", 30_000 + i as u16), 7));
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(
            out.iter()
                .filter_map(|r| r.err())
                .all(|e| e == ChannelError::DuplicateNodeId)
        );
    }
}

#[test]
fn racing_same_endpoint_admits_one() {
    let map = Arc::new(ChannelMap::new(ChannelLimits::for_network(Network::Dev)));
    let out = race(&map, 5, 4, |i| inbound(at("9.9.9.9", 7075), i as u32));
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        out.iter()
            .filter_map(|r| r.err())
            .all(|e| e == ChannelError::EndpointExists)
    );
}

#[test]
fn racing_attempts_and_channels_share_the_per_ip_limit() {
    for _ in 0..10 {
        let map = Arc::new(live());
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4u16)
            .map(|t| {
                let map = map.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut ok = 0;
                    for i in 0..10u16 {
                        let e = at("5.5.5.5", 1000 + t * 100 + i);
                        let r = if (t + i) % 2 == 0 {
                            map.try_attempt(&e, 0, 300_000)
                        } else {
                            map.try_insert(inbound(e, u32::from(t * 100 + i)))
                                .map(|_| ())
                        };
                        if r.is_ok() {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(ok, 4);
        let usage = map.ip_usage(IpKey::of(*at("5.5.5.5", 1).ip()));
        assert_eq!(usage.total(), 4);
        assert_eq!(usage.channels, map.len());
    }
}

#[test]
fn node_id_rules() {
    let map = ChannelMap::new(ChannelLimits::for_network(Network::Dev));
    let a = map.try_insert(inbound(ep("1.2.3.4:1000"), 1)).unwrap();
    // Same node id, same IP, other port: refused.
    assert_eq!(
        map.try_insert(inbound(ep("1.2.3.4:1001"), 1)).unwrap_err(),
        ChannelError::DuplicateNodeId
    );
    // Same node id, different IP (even in the same /24): accepted.
    let b = map.try_insert(inbound(ep("1.2.3.5:1000"), 1)).unwrap();
    // IPv6: same /48 counts as the same IP.
    let c = map
        .try_insert(inbound(ep("[2a01:1:2::1]:1000"), 1))
        .unwrap();
    assert_eq!(
        map.try_insert(inbound(ep("[2a01:1:2:ffff::9]:1000"), 1))
            .unwrap_err(),
        ChannelError::DuplicateNodeId
    );
    let d = map
        .try_insert(inbound(ep("[2a01:1:3::1]:1000"), 1))
        .unwrap();
    // IPv4 and its v4-mapped spelling are one IP.
    assert_eq!(
        map.try_insert(inbound(ep("[::ffff:1.2.3.4]:1002"), 1))
            .unwrap_err(),
        ChannelError::DuplicateNodeId
    );
    let ids: HashSet<_> = map
        .channels_of_node(&node(1))
        .iter()
        .map(|c| c.id())
        .collect();
    assert_eq!(ids, [a.id(), b.id(), c.id(), d.id()].into_iter().collect());
    assert_eq!(
        map.find_node_id(&node(1)).map(|c| c.node_id().to_owned()),
        Some(node(1))
    );
    assert!(map.find_node_id(&node(2)).is_none());
    // After removal the node id may come back on that IP.
    assert!(map.remove(&ep("1.2.3.4:1000")).is_some());
    map.try_insert(inbound(ep("1.2.3.4:1001"), 1)).unwrap();
    assert_eq!(map.channels_of_node(&node(1)).len(), 4);
}

#[test]
fn ipv6_48_and_32_grouping() {
    let map = live();
    // Four per /48.
    for i in 1..=4 {
        map.try_insert(inbound(at(&format!("2a02:10:1::{i}"), 7075), i))
            .unwrap();
    }
    assert_eq!(
        map.try_insert(inbound(at("2a02:10:1:ffff::5", 7075), 5))
            .unwrap_err(),
        ChannelError::IpLimit
    );
    // Other /48s of the same /32 until the /32 holds 16.
    for s in 2..=4u32 {
        for i in 1..=4u32 {
            map.try_insert(inbound(at(&format!("2a02:10:{s}::{i}"), 7075), s * 10 + i))
                .unwrap();
        }
    }
    assert_eq!(
        map.try_insert(inbound(at("2a02:10:5::1", 7075), 99))
            .unwrap_err(),
        ChannelError::SubnetLimit
    );
    // Another /32 is independent.
    map.try_insert(inbound(at("2a02:11::1", 7075), 100))
        .unwrap();
    assert_eq!(
        map.subnet_usage(SubnetKey::of(*at("2a02:10:ffff::", 1).ip())),
        Usage {
            channels: 16,
            attempts: 0,
            inbound: 0
        }
    );
    assert_eq!(
        map.ip_usage(IpKey::of(*at("2a02:10:3::77", 1).ip()))
            .channels,
        4
    );
    assert_eq!(map.len(), 17);
}

#[test]
fn ipv4_subnet_limit_and_endpoint_and_total_cap() {
    let map = live();
    for i in 1..=16u32 {
        map.try_insert(inbound(at(&format!("60.1.1.{i}"), 7075), i))
            .unwrap();
    }
    assert_eq!(
        map.try_insert(inbound(at("60.1.1.200", 7075), 50))
            .unwrap_err(),
        ChannelError::SubnetLimit
    );
    map.try_insert(inbound(at("60.1.2.1", 7075), 51)).unwrap();

    let dev = ChannelMap::new(ChannelLimits {
        max_channels: 3,
        max_outbound: 3,
        ..ChannelLimits::for_network(Network::Dev)
    });
    dev.try_insert(inbound(ep("7.7.7.7:1"), 1)).unwrap();
    assert_eq!(
        dev.try_insert(inbound(ep("7.7.7.7:1"), 2)).unwrap_err(),
        ChannelError::EndpointExists
    );
    dev.try_insert(inbound(ep("7.7.7.7:2"), 2)).unwrap();
    dev.try_insert(inbound(ep("7.7.7.8:2"), 3)).unwrap();
    assert_eq!(
        dev.try_insert(inbound(ep("7.7.7.9:2"), 4)).unwrap_err(),
        ChannelError::ChannelLimit
    );
    dev.remove(&ep("7.7.7.7:1")).unwrap();
    dev.try_insert(inbound(ep("7.7.7.9:2"), 4)).unwrap();
    assert_eq!(dev.len(), 3);
}

#[test]
fn lookups_and_timestamps() {
    let map = live();
    let e = ep("9.8.7.6:7075");
    let ch = map
        .try_insert(NewChannel {
            node_id: node(3),
            protocol_version: 0x14,
            remote: e,
            shard: 2,
            direction: Direction::Outbound,
            now_ms: 1_000,
        })
        .unwrap();
    // Lookup accepts any spelling of the endpoint.
    let scoped = std::net::SocketAddrV6::new(*e.ip(), 7075, 5, 0);
    assert_eq!(map.get(&Endpoint::from(scoped)).unwrap().id(), ch.id());
    assert!(map.contains(&e));
    assert!(!map.contains(&ep("9.8.7.6:7076")));
    assert_eq!(
        (
            ch.shard(),
            ch.direction(),
            ch.protocol_version(),
            ch.created_ms()
        ),
        (2, Direction::Outbound, 0x14, 1_000)
    );
    assert_eq!((ch.last_sent_ms(), ch.last_received_ms()), (1_000, 1_000));
    assert!(map.touch_received(&e, 2_000));
    assert!(map.touch_sent(&e, 3_000));
    assert!(!map.touch_sent(&ep("9.8.7.6:1"), 3_000));
    assert_eq!((ch.last_sent_ms(), ch.last_received_ms()), (3_000, 2_000));
    ch.touch_sent(2_500); // never backwards
    assert_eq!(ch.last_sent_ms(), 3_000);
    assert_eq!(map.with_channel(&e, |c| c.last_received_ms()), Some(2_000));
    // Peering endpoint: remote until keepalive slot 0 tells the port.
    assert_eq!(ch.peering_endpoint(), e);
    ch.set_peering_port(44000);
    assert_eq!(ch.peering_endpoint(), ep("9.8.7.6:44000"));
}

#[test]
fn remove_channel_ignores_stale_handles() {
    let map = live();
    let e = ep("9.8.7.6:7075");
    let old = map.try_insert(inbound(e, 1)).unwrap();
    assert!(map.remove_channel(&old));
    assert!(!old.is_alive());
    let new = map.try_insert(inbound(e, 1)).unwrap();
    assert_ne!(old.id(), new.id());
    assert!(
        !map.remove_channel(&old),
        "stale handle must not remove the new channel"
    );
    assert!(map.contains(&e));
    assert!(map.remove(&e).is_some());
    assert!(map.remove(&e).is_none());
    assert!(map.is_empty());
    assert_eq!(map.ip_usage(IpKey::of(*e.ip())), Usage::default());
    assert!(map.find_node_id(&node(1)).is_none());
}

#[test]
fn attempts_count_in_limits() {
    let map = live();
    let w = 300_000;
    for p in 1..=3 {
        map.try_attempt(&at("4.4.4.4", p), 0, w).unwrap();
    }
    assert_eq!(
        map.ip_usage(IpKey::of(*at("4.4.4.4", 1).ip())),
        Usage {
            channels: 0,
            attempts: 3,
            inbound: 0
        }
    );
    map.try_insert(inbound(at("4.4.4.4", 999), 1)).unwrap();
    // 3 attempts + 1 channel = 4: full for inbound channels and new attempts.
    assert_eq!(
        map.try_insert(inbound(at("4.4.4.4", 998), 2)).unwrap_err(),
        ChannelError::IpLimit
    );
    assert_eq!(
        map.try_attempt(&at("4.4.4.4", 4), 0, w).unwrap_err(),
        ChannelError::IpLimit
    );
    // An outbound channel to an attempted endpoint takes over its attempt.
    let out = map
        .try_insert(new_ch(at("4.4.4.4", 1), node(3), Direction::Outbound, 10))
        .unwrap();
    assert_eq!(out.direction(), Direction::Outbound);
    assert_eq!(
        map.ip_usage(IpKey::of(*at("4.4.4.4", 1).ip())),
        Usage {
            channels: 2,
            attempts: 2,
            inbound: 0
        }
    );
    // Ending a failed dial frees its slot, but it stays "attempted recently".
    assert!(map.end_attempt(&at("4.4.4.4", 2)));
    assert!(!map.end_attempt(&at("4.4.4.4", 2)));
    assert!(map.attempted_recently(&at("4.4.4.4", 2), 1_000, w));
    assert_eq!(
        map.try_attempt(&at("4.4.4.4", 2), 1_000, w).unwrap_err(),
        ChannelError::AttemptedRecently
    );
    map.try_insert(inbound(at("4.4.4.4", 998), 2)).unwrap();
    // A connected endpoint is not attempted.
    assert_eq!(
        map.try_attempt(&at("4.4.4.4", 1), w + 1, w).unwrap_err(),
        ChannelError::EndpointExists
    );
    // Outside the window the same endpoint may be attempted again (if the IP has room).
    assert!(!map.attempted_recently(&at("4.4.4.4", 2), w, w));
    map.remove(&at("4.4.4.4", 998)).unwrap();
    map.try_attempt(&at("4.4.4.4", 2), w, w).unwrap();
    assert_eq!(map.attempt_count(), 3);
}

#[test]
fn attempts_subnet_limit_and_table_cap() {
    let map = ChannelMap::new(ChannelLimits {
        max_attempts: 20,
        ..ChannelLimits::for_network(Network::Live)
    });
    for i in 1..=16 {
        map.try_attempt(&at(&format!("70.0.0.{i}"), 7075), 0, 1000)
            .unwrap();
    }
    assert_eq!(
        map.try_attempt(&at("70.0.0.100", 7075), 0, 1000)
            .unwrap_err(),
        ChannelError::SubnetLimit
    );
    assert_eq!(
        map.try_insert(inbound(at("70.0.0.100", 7075), 1))
            .unwrap_err(),
        ChannelError::SubnetLimit
    );
    for i in 1..=4 {
        map.try_attempt(&at(&format!("71.0.0.{i}"), 7075), 0, 1000)
            .unwrap();
    }
    assert_eq!(
        map.try_attempt(&at("72.0.0.1", 7075), 0, 1000).unwrap_err(),
        ChannelError::AttemptsFull
    );
    assert_eq!(map.attempt_count(), 20);
    // Ended attempts still occupy the table until purged.
    assert!(map.end_attempt(&at("71.0.0.1", 7075)));
    assert_eq!(
        map.try_attempt(&at("72.0.0.1", 7075), 0, 1000).unwrap_err(),
        ChannelError::AttemptsFull
    );
    assert!(map.purge(5_000, 1_000, 0).is_empty());
    assert_eq!(map.attempt_count(), 0);
    assert_eq!(
        map.subnet_usage(SubnetKey::of(*at("70.0.0.1", 1).ip())),
        Usage::default()
    );
    map.try_attempt(&at("72.0.0.1", 7075), 5_000, 1000).unwrap();
}

#[test]
fn purge_idle_old_version_and_dead() {
    let map = ChannelMap::new(ChannelLimits::for_network(Network::Dev));
    let mk = |s: &str, n: u32, v: u8, t: u64| {
        map.try_insert(NewChannel {
            node_id: node(n),
            protocol_version: v,
            remote: ep(s),
            shard: 0,
            direction: Direction::Inbound,
            now_ms: t,
        })
        .unwrap()
    };
    let idle = mk("10.0.0.1:1", 1, 0x15, 0);
    let fresh = mk("10.0.0.2:1", 2, 0x15, 0);
    let old_version = mk("10.0.0.3:1", 3, 0x13, 0);
    let dead = mk("10.0.0.4:1", 4, 0x15, 0);
    let receiving_only = mk("10.0.0.5:1", 5, 0x15, 0);
    fresh.touch_sent(9_000);
    old_version.touch_sent(9_000);
    dead.touch_sent(9_000);
    dead.close();
    receiving_only.touch_received(9_000); // purge looks at last_sent only
    map.try_attempt(&ep("10.0.1.1:1"), 1_000, 1_000).unwrap();
    map.try_attempt(&ep("10.0.1.2:1"), 6_000, 1_000).unwrap();

    // Dev cutoff: 5 s.
    let purged: HashSet<_> = map
        .purge(10_000, 5_000, 0x14)
        .iter()
        .map(|c| c.id())
        .collect();
    let expect: HashSet<_> = [&idle, &old_version, &dead, &receiving_only]
        .iter()
        .map(|c| c.id())
        .collect();
    assert_eq!(purged, expect);
    assert!(!idle.is_alive() && !old_version.is_alive() && !receiving_only.is_alive());
    assert!(fresh.is_alive());
    assert_eq!(map.len(), 1);
    assert_eq!(map.snapshot().len(), 1);
    assert!(map.get(&ep("10.0.0.1:1")).is_none());
    assert!(!map.attempted_recently(&ep("10.0.1.1:1"), 10_000, u64::MAX));
    assert!(map.attempted_recently(&ep("10.0.1.2:1"), 10_000, u64::MAX));
    assert_eq!(map.attempt_count(), 1);
    // The exact cutoff is kept (strictly older is purged).
    fresh.touch_sent(10_000);
    assert!(map.purge(15_000, 5_000, 0x14).is_empty());
    assert_eq!(map.purge(15_001, 5_000, 0x14).len(), 1);
    assert!(map.is_empty());
    assert_eq!(
        map.ip_usage(IpKey::of(*ep("10.0.0.2:1").ip())),
        Usage::default()
    );
}

#[test]
fn random_set_returns_distinct_alive_channels() {
    let map = ChannelMap::new(ChannelLimits::for_network(Network::Dev));
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    assert!(map.random_set(8, &mut rng).is_empty());
    let mut all = Vec::new();
    for i in 0..200u32 {
        let ip = format!("{}.{}.{}.1", 20 + i / 50, i % 50, i % 7);
        all.push(map.try_insert(inbound(at(&ip, 7075), i)).unwrap());
    }
    // Close every other channel (still in the map until purged).
    for c in all.iter().step_by(2) {
        c.close();
    }
    let mut sizes = 0;
    for _ in 0..200 {
        let set = map.random_set(8, &mut rng);
        assert!(set.len() <= 8);
        assert!(set.iter().all(|c| c.is_alive()));
        let ids: HashSet<_> = set.iter().map(|c| c.id()).collect();
        assert_eq!(ids.len(), set.len(), "distinct");
        sizes += set.len();
    }
    // With half the channels alive, 16 draws usually find 8.
    assert!(sizes > 200 * 6, "average too small: {sizes}");
    // Every alive channel can be drawn (uniform over stripes, not only one stripe).
    let mut seen = HashSet::new();
    for _ in 0..2000 {
        seen.extend(map.random_set(8, &mut rng).iter().map(|c| c.id()));
    }
    assert_eq!(seen.len(), 100);
}

#[test]
fn random_set_small_map_returns_all_alive() {
    let map = live();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let a = map.try_insert(inbound(ep("30.0.0.1:1"), 1)).unwrap();
    let b = map.try_insert(inbound(ep("31.0.0.1:1"), 2)).unwrap();
    let c = map.try_insert(inbound(ep("32.0.0.1:1"), 3)).unwrap();
    b.close();
    let ids: HashSet<_> = map.random_set(8, &mut rng).iter().map(|c| c.id()).collect();
    assert_eq!(ids, [a.id(), c.id()].into_iter().collect());
    assert_eq!(map.random_set(0, &mut rng).len(), 0);
}

#[test]
fn concurrent_churn_keeps_counts_consistent() {
    let map = Arc::new(ChannelMap::new(ChannelLimits {
        max_peers_per_ip: 3,
        max_peers_per_subnetwork: 5,
        max_channels: 40,
        max_outbound: 40,
        max_attempts: 30,
    }));
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let map = map.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                use rand::Rng;
                let mut rng = ChaCha8Rng::seed_from_u64(t);
                barrier.wait();
                for step in 0..3000u64 {
                    let e = at(
                        &format!("40.0.{}.{}", rng.random_range(0..3), rng.random_range(0..4)),
                        rng.random_range(1..5),
                    );
                    match rng.random_range(0..10) {
                        0..=3 => {
                            let _ = map.try_insert(new_ch(
                                e,
                                node(rng.random_range(0..6)),
                                if rng.random() {
                                    Direction::Inbound
                                } else {
                                    Direction::Outbound
                                },
                                step,
                            ));
                        }
                        4..=5 => {
                            map.remove(&e);
                        }
                        6 => {
                            let _ = map.try_attempt(&e, step, 50);
                        }
                        7 => {
                            map.end_attempt(&e);
                        }
                        8 => {
                            map.touch_sent(&e, step);
                        }
                        _ => {
                            let _ = map.random_set(4, &mut rng);
                            if step % 500 == 0 {
                                map.purge(step, 200, 0);
                            }
                        }
                    }
                    // Limits hold at every instant a reader looks.
                    let u = map.ip_usage(IpKey::of(*e.ip()));
                    assert!(u.total() <= 3, "{u:?}");
                    let s = map.subnet_usage(SubnetKey::of(*e.ip()));
                    assert!(s.total() <= 5, "{s:?}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Quiescent: every index agrees with the snapshot.
    let snap = map.snapshot();
    assert_eq!(snap.len(), map.len());
    let mut per_ip: HashMap<IpKey, usize> = HashMap::new();
    let mut per_node_ip = HashSet::new();
    for c in &snap {
        assert!(map.get(&c.remote()).is_some_and(|g| g.id() == c.id()));
        assert!(
            map.channels_of_node(c.node_id())
                .iter()
                .any(|g| g.id() == c.id())
        );
        *per_ip.entry(IpKey::of(*c.remote().ip())).or_default() += 1;
        assert!(per_node_ip.insert((*c.node_id(), IpKey::of(*c.remote().ip()))));
    }
    for (k, n) in per_ip {
        assert_eq!(map.ip_usage(k).channels, n);
    }
    // Removing everything empties every count.
    for c in &snap {
        assert!(map.remove_channel(c));
    }
    map.purge(u64::MAX, 0, 0);
    assert!(map.is_empty());
    assert_eq!(map.attempt_count(), 0);
    for i in 0..3 {
        assert_eq!(
            map.subnet_usage(SubnetKey::of(*at(&format!("40.0.{i}.0"), 1).ip())),
            Usage::default()
        );
    }
}

// ---- model-based property test ----

#[derive(Clone, Debug)]
enum Op {
    Insert {
        addr: usize,
        port: u16,
        node: u32,
        outbound: bool,
        version: u8,
    },
    Remove {
        addr: usize,
        port: u16,
    },
    Attempt {
        addr: usize,
        port: u16,
    },
    End {
        addr: usize,
        port: u16,
    },
    Touch {
        addr: usize,
        port: u16,
    },
    Close {
        addr: usize,
        port: u16,
    },
    Purge,
    Wait(u64),
}

const ADDRS: [&str; 8] = [
    "50.0.0.1",
    "50.0.0.2",
    "::ffff:50.0.0.3",
    "50.0.1.1",
    "2a03:1:1::1",
    "2a03:1:1:8::2",
    "2a03:1:2::1",
    "2a03:2::1",
];

fn op() -> impl Strategy<Value = Op> {
    let a = 0..ADDRS.len();
    let p = 1u16..4;
    prop_oneof![
        4 => (a.clone(), p.clone(), 0u32..4, any::<bool>(), 0x13u8..0x16)
            .prop_map(|(addr, port, node, outbound, version)| Op::Insert { addr, port, node, outbound, version }),
        2 => (a.clone(), p.clone()).prop_map(|(addr, port)| Op::Remove { addr, port }),
        2 => (a.clone(), p.clone()).prop_map(|(addr, port)| Op::Attempt { addr, port }),
        1 => (a.clone(), p.clone()).prop_map(|(addr, port)| Op::End { addr, port }),
        1 => (a.clone(), p.clone()).prop_map(|(addr, port)| Op::Touch { addr, port }),
        1 => (a, p).prop_map(|(addr, port)| Op::Close { addr, port }),
        1 => Just(Op::Purge),
        2 => (0u64..400).prop_map(Op::Wait),
    ]
}

const LIMITS: ChannelLimits = ChannelLimits {
    max_peers_per_ip: 2,
    max_peers_per_subnetwork: 3,
    max_channels: 5,
    max_outbound: 5,
    max_attempts: 4,
};
const WINDOW: u64 = 300;
const IDLE: u64 = 500;

#[derive(Default)]
struct Model {
    /// endpoint → (node, last_sent, version, alive)
    channels: HashMap<Endpoint, (u32, u64, u8, bool)>,
    /// endpoint → (at, pending)
    attempts: HashMap<Endpoint, (u64, bool)>,
    /// endpoints whose channel (if any) is outbound
    outbound: std::collections::HashSet<Endpoint>,
}

impl Model {
    fn usage_ip(&self, k: IpKey) -> usize {
        self.channels
            .keys()
            .filter(|e| IpKey::of(*e.ip()) == k)
            .count()
            + self
                .attempts
                .iter()
                .filter(|(e, a)| a.1 && IpKey::of(*e.ip()) == k)
                .count()
    }
    fn usage_sub(&self, k: SubnetKey) -> usize {
        self.channels
            .keys()
            .filter(|e| SubnetKey::of(*e.ip()) == k)
            .count()
            + self
                .attempts
                .iter()
                .filter(|(e, a)| a.1 && SubnetKey::of(*e.ip()) == k)
                .count()
    }

    fn insert(
        &mut self,
        e: Endpoint,
        n: u32,
        out: bool,
        v: u8,
        now: u64,
    ) -> Result<(), ChannelError> {
        let ip = IpKey::of(*e.ip());
        if self.channels.contains_key(&e) {
            return Err(ChannelError::EndpointExists);
        }
        if self
            .channels
            .iter()
            .any(|(o, c)| IpKey::of(*o.ip()) == ip && c.0 == n)
        {
            return Err(ChannelError::DuplicateNodeId);
        }
        let credit = usize::from(out && self.attempts.get(&e).is_some_and(|a| a.1));
        if self.usage_ip(ip) - credit >= LIMITS.max_peers_per_ip {
            return Err(ChannelError::IpLimit);
        }
        if self.usage_sub(SubnetKey::of(*e.ip())) - credit >= LIMITS.max_peers_per_subnetwork {
            return Err(ChannelError::SubnetLimit);
        }
        // Inbound and outbound channels have caps of their own.
        let outs = self
            .channels
            .keys()
            .filter(|c| self.outbound.contains(c))
            .count();
        let (count, cap) = if out {
            (outs, LIMITS.max_outbound)
        } else {
            (self.channels.len() - outs, LIMITS.max_channels)
        };
        if count >= cap {
            return Err(ChannelError::ChannelLimit);
        }
        if credit == 1 {
            self.attempts.get_mut(&e).unwrap().1 = false;
        }
        if out {
            self.outbound.insert(e);
        } else {
            self.outbound.remove(&e);
        }
        self.channels.insert(e, (n, now, v, true));
        Ok(())
    }

    fn attempt(&mut self, e: Endpoint, now: u64) -> Result<(), ChannelError> {
        if self.channels.contains_key(&e) {
            return Err(ChannelError::EndpointExists);
        }
        let existing = self.attempts.get(&e).copied();
        if existing.is_some_and(|a| now - a.0 < WINDOW) {
            return Err(ChannelError::AttemptedRecently);
        }
        let credit = usize::from(existing.is_some_and(|a| a.1));
        if self.usage_ip(IpKey::of(*e.ip())) - credit >= LIMITS.max_peers_per_ip {
            return Err(ChannelError::IpLimit);
        }
        if self.usage_sub(SubnetKey::of(*e.ip())) - credit >= LIMITS.max_peers_per_subnetwork {
            return Err(ChannelError::SubnetLimit);
        }
        if existing.is_none() && self.attempts.len() >= LIMITS.max_attempts {
            return Err(ChannelError::AttemptsFull);
        }
        self.attempts.insert(e, (now, true));
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn map_matches_sequential_model(ops in proptest::collection::vec(op(), 1..80)) {
        let map = ChannelMap::new(LIMITS);
        let mut model = Model::default();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Insert { addr, port, node: n, outbound, version } => {
                    let e = at(ADDRS[addr], port);
                    let dir = if outbound { Direction::Outbound } else { Direction::Inbound };
                    let got = map
                        .try_insert(NewChannel { node_id: node(n), protocol_version: version, remote: e, shard: 0, direction: dir, now_ms: now })
                        .map(|_| ());
                    prop_assert_eq!(got, model.insert(e, n, outbound, version, now));
                }
                Op::Remove { addr, port } => {
                    let e = at(ADDRS[addr], port);
                    prop_assert_eq!(map.remove(&e).is_some(), model.channels.remove(&e).is_some());
                }
                Op::Attempt { addr, port } => {
                    let e = at(ADDRS[addr], port);
                    prop_assert_eq!(map.try_attempt(&e, now, WINDOW), model.attempt(e, now));
                }
                Op::End { addr, port } => {
                    let e = at(ADDRS[addr], port);
                    let m = match model.attempts.get_mut(&e) {
                        Some(a) if a.1 => { a.1 = false; true }
                        _ => false,
                    };
                    prop_assert_eq!(map.end_attempt(&e), m);
                }
                Op::Touch { addr, port } => {
                    let e = at(ADDRS[addr], port);
                    let m = match model.channels.get_mut(&e) {
                        Some(c) => { c.1 = c.1.max(now); true }
                        None => false,
                    };
                    prop_assert_eq!(map.touch_sent(&e, now), m);
                }
                Op::Close { addr, port } => {
                    let e = at(ADDRS[addr], port);
                    if let Some(c) = map.get(&e) { c.close(); }
                    if let Some(c) = model.channels.get_mut(&e) { c.3 = false; }
                }
                Op::Purge => {
                    let cutoff = now.saturating_sub(IDLE);
                    let mut got: Vec<_> = map.purge(now, IDLE, 0x14).iter().map(|c| c.remote()).collect();
                    let mut want: Vec<_> = model
                        .channels
                        .iter()
                        .filter(|(_, c)| !c.3 || c.1 < cutoff || c.2 < 0x14)
                        .map(|(e, _)| *e)
                        .collect();
                    model.channels.retain(|_, c| !(!c.3 || c.1 < cutoff || c.2 < 0x14));
                    model.attempts.retain(|_, a| a.0 >= cutoff);
                    got.sort();
                    want.sort();
                    prop_assert_eq!(got, want);
                }
                Op::Wait(ms) => now += ms,
            }
            prop_assert_eq!(map.len(), model.channels.len());
            prop_assert_eq!(map.attempt_count(), model.attempts.len());
            for a in ADDRS {
                let ip = *at(a, 1).ip();
                prop_assert_eq!(map.ip_usage(IpKey::of(ip)).total(), model.usage_ip(IpKey::of(ip)));
                prop_assert_eq!(map.subnet_usage(SubnetKey::of(ip)).total(), model.usage_sub(SubnetKey::of(ip)));
            }
        }
        let mut snap: Vec<_> = map.snapshot().iter().map(|c| c.remote()).collect();
        let mut want: Vec<_> = model.channels.keys().copied().collect();
        snap.sort();
        want.sort();
        prop_assert_eq!(snap, want);
    }
}

/// Unverified inbound connections are limited per IP group and per subnet in a count of their
/// own; ending one, or a channel coming and going in the same subnet, leaves the others counted.
#[test]
fn unverified_counts_survive_other_changes_in_their_subnet() {
    let map = ChannelMap::new(ChannelLimits {
        max_peers_per_ip: 2,
        max_peers_per_subnetwork: 3,
        ..ChannelLimits::for_network(Network::Live)
    });
    let sub = SubnetKey::of(*at("10.1.1.1", 1).ip());
    for ip in ["10.1.1.1", "10.1.1.2", "10.1.1.3"] {
        map.add_inbound(&at(ip, 1)).unwrap();
    }
    assert_eq!(
        map.add_inbound(&at("10.1.1.4", 1)),
        Err(ChannelError::SubnetLimit)
    );
    // A channel of the subnet comes and goes: the three unverified stay counted.
    let ch = map.try_insert(inbound(at("10.1.1.9", 1), 1)).unwrap();
    assert!(map.remove_channel(&ch));
    assert_eq!(map.subnet_usage(sub).inbound, 3);
    assert_eq!(
        map.check_inbound(&at("10.1.1.4", 1)),
        Err(ChannelError::SubnetLimit)
    );
    // One ends: exactly one place is free again, the others still count.
    assert!(map.end_inbound(&at("10.1.1.1", 1)));
    assert_eq!(map.subnet_usage(sub).inbound, 2);
    map.add_inbound(&at("10.1.1.4", 1)).unwrap();
    assert_eq!(
        map.add_inbound(&at("10.1.1.5", 1)),
        Err(ChannelError::SubnetLimit)
    );
    // Per IP likewise: two from one address, a third refused.
    assert!(map.end_inbound(&at("10.1.1.4", 1)));
    map.add_inbound(&at("10.1.1.2", 2)).unwrap();
    assert_eq!(
        map.add_inbound(&at("10.1.1.2", 3)),
        Err(ChannelError::IpLimit)
    );
    // All end: nothing left behind.
    for e in [at("10.1.1.2", 1), at("10.1.1.2", 2), at("10.1.1.3", 1)] {
        assert!(map.end_inbound(&e));
    }
    assert!(!map.end_inbound(&at("10.1.1.3", 1)));
    assert_eq!(map.subnet_usage(sub), Usage::default());
}
