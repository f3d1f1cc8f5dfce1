//! The crawler core driven with a real channel map filled by hand and synthetic events.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use nanopeer::channels::{Channel, ChannelId, ChannelLimits, ChannelMap, Direction, NewChannel};
use nanopeer::crypto::{genesis_account, genesis_block, genesis_hash};
use nanopeer::endpoint::Endpoint;
use nanopeer::proto::config::ProtoConfig;
use nanopeer::proto::crawler::{CrawlerCore, CrawlerSetup};
use nanopeer::proto::events::{CloseReason, CrawlerEvent, CrawlerOutput, NodeAction, ShardCommand};
use nanopeer::proto::exclusion::PeerExclusion;
use nanopeer::proto::reachout::MergeRefusal;
use nanopeer::proto::repcrawler::{QueryBoard, RepCrawlerConfig, SEEN_HASHES_MAX, genesis_query};
use nanopeer::proto::weights::{LIVE_WEIGHTS, RepWeights};
use nanopeer::types::{BlockHash, Network, PublicKey};
use nanopeer::wire::{HashRoot, Message, TelemetryData, decode_message};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn ep(s: &str) -> Endpoint {
    Endpoint::from(s.parse::<SocketAddr>().unwrap())
}

/// An endpoint in its own IPv6 /32 (so live per-IP and per-subnet limits never bite).
fn public_ep(i: u32, port: u16) -> Endpoint {
    Endpoint::new(
        Ipv6Addr::new(0x2a00, i as u16, (i >> 16) as u16, 0, 0, 0, 0, 1).into(),
        port,
    )
}

struct Rig {
    network: Network,
    map: Arc<ChannelMap>,
    exclusion: Arc<Mutex<PeerExclusion>>,
    core: CrawlerCore,
    rng: ChaCha8Rng,
    chans: Vec<Arc<Channel>>,
}

fn rig_with(network: Network, n: u32, seed: u64, tweak: impl FnOnce(&mut CrawlerSetup)) -> Rig {
    let map = Arc::new(ChannelMap::new(ChannelLimits::for_network(network)));
    let chans = (0..n)
        .map(|i| add_channel(&map, public_ep(i, 40_000), (i % 3) as u16, 0))
        .collect();
    let exclusion = Arc::new(Mutex::new(PeerExclusion::new()));
    let mut setup = CrawlerSetup::new(
        ProtoConfig::for_network(network),
        map.clone(),
        exclusion.clone(),
        RepWeights::defaults(network),
        3,
    );
    tweak(&mut setup);
    Rig {
        network,
        map,
        exclusion,
        core: CrawlerCore::new(setup),
        rng: ChaCha8Rng::seed_from_u64(seed),
        chans,
    }
}

fn rig(network: Network, n: u32) -> Rig {
    rig_with(network, n, 7, |_| {})
}

fn add_channel(map: &ChannelMap, remote: Endpoint, shard: u16, now_ms: u64) -> Arc<Channel> {
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(&remote.ip().octets());
    id[16..18].copy_from_slice(&remote.port().to_le_bytes());
    map.try_insert(NewChannel {
        node_id: PublicKey(id),
        protocol_version: 0x15,
        remote,
        shard,
        direction: Direction::Inbound,
        now_ms,
    })
    .unwrap()
}

impl Rig {
    fn start(&mut self, now: u64) -> Vec<CrawlerOutput> {
        let mut out = Vec::new();
        self.core.start(now, &mut self.rng, &mut out);
        out
    }
    fn tick(&mut self, now: u64) -> Vec<CrawlerOutput> {
        let mut out = Vec::new();
        self.core.tick(now, &mut self.rng, &mut out);
        out
    }
    fn event(&mut self, e: CrawlerEvent, now: u64) -> Vec<CrawlerOutput> {
        let mut out = Vec::new();
        self.core.on_event(e, now, &mut self.rng, &mut out);
        out
    }
    fn merge(&mut self, e: Endpoint, now: u64) -> Result<u16, MergeRefusal> {
        let mut out = Vec::new();
        let r = self.core.merge_peer(e, now, &mut out);
        assert_eq!(out.len(), usize::from(r.is_ok()));
        r
    }
    fn touch_all(&self, now: u64) {
        for c in &self.chans {
            c.touch_sent(now);
        }
    }
}

/// (shard, channel, decoded message) of every Send.
fn sends(out: &[CrawlerOutput], network: Network) -> Vec<(u16, ChannelId, Message)> {
    out.iter()
        .filter_map(|o| match o {
            CrawlerOutput::Shard {
                shard,
                command: ShardCommand::Send { channel, bytes },
            } => Some((*shard, *channel, decode_message(bytes, network).unwrap().1)),
            _ => None,
        })
        .collect()
}

fn dials(out: &[CrawlerOutput]) -> Vec<Endpoint> {
    out.iter()
        .filter_map(|o| match o {
            CrawlerOutput::Shard {
                command: ShardCommand::Dial { endpoint },
                ..
            } => Some(*endpoint),
            _ => None,
        })
        .collect()
}

fn keepalives(out: &[CrawlerOutput], network: Network) -> Vec<(ChannelId, [Endpoint; 8])> {
    sends(out, network)
        .into_iter()
        .filter_map(|(_, c, m)| match m {
            Message::Keepalive(k) => Some((c, k.peers.map(Endpoint::from))),
            _ => None,
        })
        .collect()
}

fn is_self(peers: &[Endpoint; 8], port: u16) -> bool {
    peers[0] == Endpoint::new(std::net::IpAddr::from(Ipv6Addr::UNSPECIFIED), port)
}

#[test]
fn keepalive_fanout_counts_self_layout_and_idle() {
    let mut r = rig(Network::Live, 100);
    r.start(0);
    let period = 15_000;
    // five channels went quiet since their creation at 0, the others sent at `period`
    let idle: BTreeSet<ChannelId> = [3usize, 17, 42, 77, 99]
        .iter()
        .map(|&i| r.chans[i].id())
        .collect();
    for c in r.chans.iter().filter(|c| !idle.contains(&c.id())) {
        c.touch_sent(period);
    }
    let t1 = period + 1_000;
    let out = r.tick(t1);
    let ka = keepalives(&out, r.network);
    let (selfs, normal): (Vec<_>, Vec<_>) = ka.iter().partition(|(_, p)| is_self(p, 7075));
    // ⌈0.25·√100⌉ = 3 distinct keepalive_self
    let self_ids: BTreeSet<ChannelId> = selfs.iter().map(|(c, _)| *c).collect();
    assert_eq!((selfs.len(), self_ids.len()), (3, 3));
    // ⌈0.75·√100⌉ = 8 distinct random keepalives, plus one to each idle channel not reached
    // by the flood or the keepalive_self; nobody gets two random keepalives
    let normal_ids: BTreeSet<ChannelId> = normal.iter().map(|(c, _)| *c).collect();
    assert_eq!(normal_ids.len(), normal.len());
    let st = *r.core.stats();
    assert_eq!(st.keepalive_flood, 8);
    assert_eq!(st.keepalive_self, 3);
    assert_eq!(normal.len() as u64, 8 + st.keepalive_idle);
    assert!(
        st.keepalive_idle >= 5 - 3,
        "at most 3 idle ones got the self keepalive"
    );
    for c in &idle {
        assert!(
            normal_ids.contains(c) || self_ids.contains(c),
            "idle channel {c} got no keepalive"
        );
    }
    assert!(normal_ids.difference(&idle).count() <= 8);
    // layout of keepalive_self: [::]:7075, [::]:0, then peers; random fill: peering endpoints
    let peers_of_map: BTreeSet<Endpoint> = r.chans.iter().map(|c| c.peering_endpoint()).collect();
    let s = &selfs[0].1;
    assert_eq!(s[1], Endpoint::UNSPECIFIED);
    assert!(s[2..].iter().all(|p| peers_of_map.contains(p)));
    let n = &normal[0].1;
    assert_eq!(
        n.iter().filter(|p| peers_of_map.contains(p)).count(),
        8,
        "8 random peers"
    );
    // one shared buffer per fan-out
    let bufs: BTreeSet<*const u8> = out
        .iter()
        .filter_map(|o| match o {
            CrawlerOutput::Shard {
                command: ShardCommand::Send { bytes, .. },
                ..
            } if bytes.len() == 152 => Some(bytes.as_ptr()),
            _ => None,
        })
        .collect();
    assert_eq!(
        bufs.len(),
        2,
        "one buffer for random keepalives, one for keepalive_self"
    );
    // the next round is one period later, not before
    r.touch_all(t1);
    assert!(keepalives(&r.tick(t1 + period - 1), r.network).is_empty());
    assert_eq!(keepalives(&r.tick(t1 + period), r.network).len(), 8 + 3);
    assert_eq!(r.core.stats().keepalive_flood, 16);
}

#[test]
fn keepalive_sends_go_to_the_owning_shard() {
    let mut r = rig(Network::Live, 30);
    r.start(0);
    let out = r.tick(15_000 + 20_000);
    let by_id: BTreeMap<ChannelId, u16> = r.chans.iter().map(|c| (c.id(), c.shard())).collect();
    let s = sends(&out, r.network);
    let k = keepalives(&out, r.network);
    assert_eq!(k.len(), 30, "all idle: every channel once");
    let ids: BTreeSet<ChannelId> = k.iter().map(|(c, _)| *c).collect();
    assert_eq!(ids.len(), 30);
    for (shard, ch, _) in s {
        assert_eq!(by_id[&ch], shard);
    }
}

#[test]
fn merge_peer_refusal_rules() {
    let mut r = rig(Network::Live, 0);
    r.start(0);
    let t = 1_000;
    // reserved and non-peers
    assert_eq!(
        r.merge(ep("192.0.2.1:7075"), t),
        Err(MergeRefusal::NotAPeer)
    );
    assert_eq!(r.merge(ep("10.0.0.1:7075"), t), Err(MergeRefusal::NotAPeer));
    assert_eq!(r.merge(ep("1.2.3.4:0"), t), Err(MergeRefusal::NotAPeer));
    assert_eq!(r.merge(ep("[::]:7000"), t), Err(MergeRefusal::NotAPeer));
    assert_eq!(r.merge(Endpoint::UNSPECIFIED, t), Err(MergeRefusal::Empty));
    // ourselves
    assert_eq!(r.merge(ep("[::1]:7075"), t), Err(MergeRefusal::OwnEndpoint));
    assert_eq!(
        r.merge(ep("127.0.0.1:7075"), t),
        Err(MergeRefusal::OwnEndpoint)
    );
    assert_eq!(r.merge(ep("[::]:7075"), t), Err(MergeRefusal::OwnEndpoint));
    // per-IP limit (4 on live): channels + attempts
    add_channel(&r.map, ep("1.2.3.4:5000"), 0, t);
    for p in 7001..=7003 {
        assert!(r.merge(ep(&format!("1.2.3.4:{p}")), t).is_ok());
    }
    assert_eq!(r.merge(ep("1.2.3.4:7004"), t), Err(MergeRefusal::IpLimit));
    // per-subnet limit (16 per /24)
    for i in 1..=16 {
        assert!(r.merge(ep(&format!("5.5.5.{i}:7075")), t).is_ok());
    }
    assert_eq!(
        r.merge(ep("5.5.5.200:7075"), t),
        Err(MergeRefusal::SubnetLimit)
    );
    // excluded (the first offence does not block, the second does)
    r.exclusion.lock().add(ep("6.6.6.6:1").ip().to_owned(), t);
    assert!(r.merge(ep("6.6.6.6:7075"), t).is_ok());
    r.exclusion.lock().add(*ep("6.6.6.7:1").ip(), t);
    r.exclusion.lock().add(*ep("6.6.6.7:1").ip(), t);
    assert_eq!(r.merge(ep("6.6.6.7:7075"), t), Err(MergeRefusal::Excluded));
    // connected: by remote endpoint, and by peering endpoint (after the table learned it)
    add_channel(&r.map, ep("7.7.7.7:7075"), 0, t);
    assert_eq!(r.merge(ep("7.7.7.7:7075"), t), Err(MergeRefusal::Connected));
    let inbound = add_channel(&r.map, ep("8.8.8.8:51234"), 1, t);
    inbound.set_peering_port(7075);
    r.event(CrawlerEvent::ChannelUp(inbound, None), t);
    assert_eq!(r.merge(ep("8.8.8.8:7075"), t), Err(MergeRefusal::Connected));
    // attempted within the cutoff, even after the dial failed; allowed after it
    assert!(r.merge(ep("9.9.9.9:7075"), t).is_ok());
    assert_eq!(
        r.merge(ep("9.9.9.9:7075"), t + 1),
        Err(MergeRefusal::AttemptedRecently)
    );
    r.event(
        CrawlerEvent::DialFailed {
            endpoint: ep("9.9.9.9:7075"),
        },
        t + 2,
    );
    assert_eq!(
        r.merge(ep("9.9.9.9:7075"), t + 3),
        Err(MergeRefusal::AttemptedRecently)
    );
    assert!(r.merge(ep("9.9.9.9:7075"), t + 300_000).is_ok());

    let s = r.core.reachout_stats();
    assert_eq!(s.not_a_peer, 4);
    assert_eq!(s.empty, 1);
    assert_eq!(s.own_endpoint, 3);
    assert_eq!(s.ip_limit, 1);
    assert_eq!(s.subnet_limit, 1);
    assert_eq!(s.excluded, 1);
    assert_eq!(s.connected, 2);
    assert_eq!(s.attempted_recently, 2);
    assert_eq!(s.dials, 3 + 16 + 1 + 2);
}

#[test]
fn dials_round_robin_over_shards() {
    let mut r = rig(Network::Live, 0);
    r.start(0);
    let shards: Vec<u16> = (0..6)
        .map(|i| r.merge(public_ep(1000 + i, 7075), 10).unwrap())
        .collect();
    assert_eq!(shards, vec![0, 1, 2, 0, 1, 2]);
}

#[test]
fn reachout_is_paced_one_merge_per_period() {
    let mut r = rig(Network::Live, 2);
    r.start(0);
    let a: [Endpoint; 8] = std::array::from_fn(|i| public_ep(500 + i as u32, 7075));
    let mut b: [Endpoint; 8] = std::array::from_fn(|i| public_ep(600 + i as u32, 7075));
    b[5] = Endpoint::UNSPECIFIED;
    for (c, peers) in [(r.chans[0].id(), a), (r.chans[1].id(), b)] {
        assert!(dials(&r.event(CrawlerEvent::Keepalive { channel: c, peers }, 1)).is_empty());
    }
    let mut dial_times = Vec::new();
    let mut all = BTreeSet::new();
    let mut now = 1;
    while now < 10_000 {
        r.touch_all(now);
        for d in dials(&r.tick(now)) {
            dial_times.push(now);
            all.insert(d);
        }
        now += 50;
    }
    assert_eq!(all.len(), 15, "every advertised peer dialed once");
    assert!(all.iter().all(|d| a.contains(d) || b.contains(d)));
    for w in dial_times.windows(2) {
        assert!(w[1] - w[0] >= 250, "dials at {} and {}", w[0], w[1]);
    }
}

#[test]
fn stored_peers_are_merged_first_then_preconfigured() {
    let stored = vec![public_ep(1, 7075), public_ep(2, 7075)];
    let mut r = rig_with(Network::Live, 0, 1, |s| {
        s.stored_peers = stored.clone();
        s.preconfigured = vec![ep("3.3.3.3:0")];
    });
    let out = r.start(0);
    assert_eq!(dials(&out), vec![stored[0], stored[1], ep("3.3.3.3:7075")]);
    // the known-peer walk retries them only after the reachout cutoff
    let mut later = Vec::new();
    for t in (250..300_000).step_by(250) {
        later.extend(dials(&r.tick(t)));
    }
    assert!(later.is_empty(), "{later:?}");
    let walked = r.core.reachout_stats().known_walked;
    assert!(walked > 0);
    assert_eq!(r.core.reachout_stats().attempted_recently, walked);
    // past the cutoff (and with the failed dials ended) the walk dials them again
    for e in [stored[0], stored[1]] {
        r.event(CrawlerEvent::DialFailed { endpoint: e }, 300_000);
    }
    let mut again = BTreeSet::new();
    for t in (300_250..340_000).step_by(250) {
        again.extend(dials(&r.tick(t)));
    }
    assert_eq!(again, stored.iter().copied().collect());
}

#[test]
fn attempt_table_stays_bounded_under_bogus_peers() {
    let mut r = rig(Network::Dev, 50);
    r.start(0);
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut given = 0;
    let mut dialed = 0;
    let mut max_attempts = 0;
    let mut now = 0;
    while now < 60_000 {
        r.touch_all(now);
        if given < 10_000 {
            for _ in 0..10 {
                let peers: [Endpoint; 8] = std::array::from_fn(|_| {
                    let ip = Ipv4Addr::new(45, rng.random(), rng.random(), rng.random());
                    Endpoint::new(
                        std::net::IpAddr::from(ip.to_ipv6_mapped()),
                        rng.random_range(1..u16::MAX),
                    )
                });
                given += 8;
                let c = r.chans[rng.random_range(0..r.chans.len())].id();
                r.event(CrawlerEvent::Keepalive { channel: c, peers }, now);
            }
        }
        dialed += dials(&r.tick(now)).len();
        max_attempts = max_attempts.max(r.map.attempt_count());
        assert!(r.core.reachout().stored_keepalives() <= 128);
        now += 10;
    }
    assert!(given >= 10_000);
    // dev: one merge per 10 ms, attempts purged after 5 s, cleanup every 1 s
    // the walker dials one peer per merge period while it has work; the rest were replaced
    let st = *r.core.reachout_stats();
    assert!(dialed > 400, "dialed {dialed}");
    assert_eq!(st.dials as usize, dialed);
    assert!(st.keepalives_replaced > 0);
    assert!(
        max_attempts <= 2 * 6_000 / 10 + 1,
        "attempts {max_attempts}"
    );
    assert!(max_attempts <= r.map.limits().max_attempts);
}

#[test]
fn dev_genesis_rep_reaches_quorum() {
    let mut r = rig(Network::Dev, 3);
    let out = r.start(0);
    assert!(out.contains(&CrawlerOutput::Node(NodeAction::ResolvePreconfigured)));
    let queries: Vec<_> = sends(&out, r.network)
        .into_iter()
        .filter_map(|(_, c, m)| match m {
            Message::ConfirmReq(q) => Some((c, q)),
            _ => None,
        })
        .collect();
    assert_eq!(queries.len(), 3, "every channel queried while insufficient");
    let q = &queries[0].1.pairs[0];
    assert_eq!(q.hash, genesis_hash(Network::Dev));
    assert_eq!(q.root.0, genesis_account(Network::Dev).0);
    assert!(!r.core.rep_status(10).sufficient);
    let ch = r.chans[1].clone();
    r.event(
        CrawlerEvent::Vote {
            channel: ch.id(),
            account: genesis_account(Network::Dev),
            hashes: vec![genesis_hash(Network::Dev)],
            timestamp: u64::MAX,
            rebroadcasted: false,
        },
        20,
    );
    let st = r.core.rep_status(30);
    assert!(st.sufficient);
    assert_eq!(st.representatives.len(), 1);
    assert_eq!(st.representatives[0].account, genesis_account(Network::Dev));
    assert_eq!(st.representatives[0].endpoint, ch.remote());
    assert_eq!(st.representatives[0].weight, u128::MAX);
    assert_eq!(st.online_weight, u128::MAX);
    assert_eq!(st.known_weight, u128::MAX);
    assert!(st.delta < st.known_weight);
    assert!(r.core.rep_crawler().is_pr(ch.id()));
    // sufficient: no more ResolvePreconfigured
    r.touch_all(5_000);
    for t in (500..5_000).step_by(500) {
        let out = r.tick(t);
        assert!(!out.contains(&CrawlerOutput::Node(NodeAction::ResolvePreconfigured)));
    }
    // the rep's channel closes: evicted, insufficient again
    ch.close();
    r.event(CrawlerEvent::ChannelDown(ch), 5_000);
    assert!(!r.core.rep_status(5_000).sufficient);
    assert!(r.core.rep_status(5_000).representatives.is_empty());
}

#[test]
fn unsolicited_votes_never_count() {
    let mut r = rig_with(Network::Dev, 3, 5, |s| {
        let mut c = RepCrawlerConfig::from_proto(&s.config);
        c.max_targets = 1;
        s.rep_crawler = Some(c);
    });
    let out = r.start(0);
    let asked: Vec<ChannelId> = sends(&out, r.network)
        .into_iter()
        .filter(|(_, _, m)| matches!(m, Message::ConfirmReq(_)))
        .map(|(_, c, _)| c)
        .collect();
    assert_eq!(asked.len(), 1);
    let asked = asked[0];
    let other = r.chans.iter().find(|c| c.id() != asked).unwrap().id();
    let g = genesis_hash(Network::Dev);
    let acc = genesis_account(Network::Dev);
    let vote = |channel, account, hashes: Vec<BlockHash>, rebroadcasted| CrawlerEvent::Vote {
        channel,
        account,
        hashes,
        timestamp: 1,
        rebroadcasted,
    };
    // another channel, the queried hash
    r.event(vote(other, acc, vec![g], false), 10);
    // the queried channel, a hash it was not asked for
    r.event(vote(asked, acc, vec![BlockHash([9; 32])], false), 10);
    // rebroadcasted
    r.event(vote(asked, acc, vec![g], true), 10);
    // zero account
    r.event(vote(asked, PublicKey([0; 32]), vec![g], false), 10);
    // expired (dev query timeout 1 s)
    r.event(vote(asked, acc, vec![g], false), 1_000);
    let s = r.core.rep_stats();
    assert_eq!(s.responses, 0);
    assert_eq!(s.votes_unsolicited, 3);
    assert_eq!(s.votes_rebroadcasted, 1);
    assert_eq!(s.votes_zero_account, 1);
    assert!(r.core.rep_status(1_000).representatives.is_empty());

    // in time, on the queried channel: counted
    let mut r2 = rig_with(Network::Dev, 3, 5, |s| {
        let mut c = RepCrawlerConfig::from_proto(&s.config);
        c.max_targets = 1;
        s.rep_crawler = Some(c);
    });
    r2.start(0);
    // no weight: a non-genesis account on dev weighs nothing (the query stays open)
    r2.event(vote(asked, PublicKey([5; 32]), vec![g], false), 999);
    assert_eq!(r2.core.rep_stats().votes_no_weight, 1);
    r2.event(vote(asked, acc, vec![BlockHash([9; 32]), g], false), 999);
    assert_eq!(r2.core.rep_stats().responses, 1);
    // the query is used up: the same answer again does not count
    r2.event(vote(asked, acc, vec![g], false), 999);
    let s = r2.core.rep_stats();
    assert_eq!((s.responses, s.votes_query_used), (1, 1));
}

#[test]
fn new_channels_are_queried_once() {
    let mut r = rig(Network::Live, 0);
    r.start(0);
    let ch = add_channel(&r.map, public_ep(5, 7075), 2, 10);
    let out = r.event(CrawlerEvent::ChannelUp(ch.clone(), None), 10);
    let s = sends(&out, r.network);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].0, s[0].1), (2, ch.id()));
    assert!(matches!(s[0].2, Message::ConfirmReq(_)));
}

fn dev_vote(channel: ChannelId, hashes: Vec<BlockHash>) -> CrawlerEvent {
    CrawlerEvent::Vote {
        channel,
        account: genesis_account(Network::Dev),
        hashes,
        timestamp: 1,
        rebroadcasted: false,
    }
}

#[test]
fn a_query_the_shard_sent_is_recorded_not_sent_again() {
    let mut r = rig(Network::Dev, 0);
    r.start(0);
    let g = genesis_hash(Network::Dev);
    let sent_before = r.core.rep_stats().queries_sent;
    // the shard sent confirm_req(genesis) with its keepalive_self
    let ch = add_channel(&r.map, public_ep(5, 44_000), 2, 10);
    let out = r.event(
        CrawlerEvent::ChannelUp(ch.clone(), Some(genesis_query(Network::Dev))),
        10,
    );
    assert!(sends(&out, r.network).is_empty(), "{out:?}");
    assert_eq!(r.core.rep_stats().queries_sent, sent_before + 1);
    assert_eq!(r.core.rep_crawler().outstanding_queries(), 1);
    // another shard-sent query, for another hash: a genesis vote there is unsolicited
    let x = BlockHash([7; 32]);
    let other = add_channel(&r.map, public_ep(6, 44_000), 1, 10);
    let q = HashRoot { hash: x, root: x };
    assert!(
        r.event(CrawlerEvent::ChannelUp(other.clone(), Some(q)), 10)
            .is_empty()
    );
    r.event(dev_vote(other.id(), vec![g]), 20);
    assert_eq!(r.core.rep_stats().votes_unsolicited, 1);
    assert_eq!(r.core.rep_stats().responses, 0);
    // the answer to what was asked counts and registers the representative on its node
    r.event(dev_vote(ch.id(), vec![g]), 20);
    // the same rep's vote answering `other`'s query is a replay by another node (another
    // node id): it does not move the rep
    r.event(dev_vote(other.id(), vec![x]), 20);
    let s = r.core.rep_stats();
    assert_eq!((s.responses, s.reps_added, s.reps_moved), (1, 1, 0));
    assert_eq!(s.reps_rebind_refused, 1);
    let reps: Vec<_> = r.core.rep_crawler().reps().collect();
    assert_eq!(reps.len(), 1);
    assert_eq!(reps[0].account, genesis_account(Network::Dev));
    assert_eq!(reps[0].channel.id(), ch.id());
    assert_eq!(reps[0].node_id(), ch.node_id());
    // it was recorded as a request now: the rep channel is not queried again within the
    // re-query interval (dev: 500 ms), only after it
    ch.touch_sent(500);
    other.touch_sent(500);
    let asked = |out: &[CrawlerOutput]| -> Vec<ChannelId> {
        sends(out, Network::Dev)
            .into_iter()
            .filter(|(_, _, m)| matches!(m, Message::ConfirmReq(_)))
            .map(|(_, c, _)| c)
            .collect()
    };
    assert_eq!(asked(&r.tick(500)), vec![other.id()]);
    ch.touch_sent(1_000);
    assert!(asked(&r.tick(1_000)).contains(&ch.id()));
}

#[test]
fn the_query_board_holds_seen_hashes_with_roots_and_genesis() {
    let mut r = rig(Network::Dev, 1);
    r.start(0);
    let board = r.core.rep_crawler().board().clone();
    let genesis = genesis_query(Network::Dev);
    assert_eq!(&board.pairs()[..], &[genesis]);
    let ch = r.chans[0].id();
    let (a, b) = (BlockHash([1; 32]), BlockHash([2; 32]));
    // a vote's hashes appear at once; without a known block the hash is its own root
    r.event(dev_vote(ch, vec![a, b]), 10);
    let ha = HashRoot { hash: a, root: a };
    let hb = HashRoot { hash: b, root: b };
    assert_eq!(&board.pairs()[..], &[ha, hb, genesis]);
    // a relayed block's root replaces it (any block: its root is the genesis account)
    let root = BlockHash(genesis_account(Network::Dev).0);
    r.event(
        CrawlerEvent::Block {
            channel: ch,
            hash: b,
            block: Arc::new(genesis_block(Network::Dev)),
        },
        11,
    );
    let hb = HashRoot { hash: b, root };
    assert_eq!(&board.pairs()[..], &[ha, hb, genesis]);
    // a repeated hash changes nothing; the board is bounded, genesis stays last
    r.event(dev_vote(ch, vec![a]), 12);
    assert_eq!(board.pairs().len(), 3);
    for i in 0..SEEN_HASHES_MAX as u32 {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&(i + 100).to_le_bytes());
        r.event(dev_vote(ch, vec![BlockHash(h)]), 13);
    }
    let pairs = board.pairs();
    assert_eq!(pairs.len(), SEEN_HASHES_MAX + 1);
    assert_eq!(pairs.last(), Some(&genesis));
    assert!(!pairs.iter().any(|p| p.hash == a || p.hash == b));
}

#[test]
fn a_board_pick_is_the_crawlers_own_query_choice() {
    // A board given through the setup is the one the crawler publishes to.
    let board = Arc::new(QueryBoard::new(Network::Dev));
    let mut r = rig_with(Network::Dev, 1, 3, |s| s.query_board = board.clone());
    r.start(0);
    let hashes: Vec<BlockHash> = (1..=5).map(|i| BlockHash([i; 32])).collect();
    r.event(dev_vote(r.chans[0].id(), hashes), 1);
    assert_eq!(board.pairs().len(), 6);
    // Same RNG state: the shard's pick from the board and the crawler's query agree.
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        let ch = add_channel(&r.map, public_ep(10 + i, 44_000), 0, 2);
        let mut twin = r.rng.clone();
        let expect = board.pick(&mut twin);
        let out = r.event(CrawlerEvent::ChannelUp(ch.clone(), None), 2);
        let s = sends(&out, r.network);
        let [(_, c, Message::ConfirmReq(req))] = s.as_slice() else {
            panic!("{s:?}")
        };
        assert_eq!(*c, ch.id());
        assert_eq!(req.pairs, vec![expect]);
        seen.insert(expect);
    }
    assert!(seen.len() >= 4, "{seen:?}");
}

#[test]
fn insufficient_weight_resolves_preconfigured_rate_limited() {
    // live with the built-in weights but no rep answering yet: never sufficient
    let mut r = rig(Network::Live, 2);
    let out = r.start(0);
    let resolves = |o: &[CrawlerOutput]| {
        o.iter()
            .filter(|x| **x == CrawlerOutput::Node(NodeAction::ResolvePreconfigured))
            .count()
    };
    assert_eq!(resolves(&out), 1);
    // warm-up rounds every 3 s, resolves at most once per 15 s
    let mut n = 0;
    let rounds_before = r.core.rep_stats().rounds;
    for t in (1_000..=30_000).step_by(1_000) {
        r.touch_all(t);
        n += resolves(&r.tick(t));
    }
    assert_eq!(n, 2);
    assert!(r.core.rep_stats().rounds - rounds_before >= 9);
    // a responder that weighs nothing is refused, not tracked; a rep of the built-in live
    // weights answering the same query counts with its weight, still short of quorum
    let asked = r.chans[0].clone();
    r.event(CrawlerEvent::ChannelUp(asked.clone(), None), 30_001);
    let live_vote = |account| CrawlerEvent::Vote {
        channel: asked.id(),
        account,
        hashes: vec![genesis_hash(Network::Live)],
        timestamp: 1,
        rebroadcasted: false,
    };
    r.event(live_vote(PublicKey([3; 32])), 30_002);
    let st = r.core.rep_status(30_002);
    assert!(st.representatives.is_empty());
    assert_eq!(r.core.rep_stats().votes_no_weight, 1);
    let weights = RepWeights::defaults(Network::Live);
    let top = nanopeer::crypto::decode_account(
        LIVE_WEIGHTS
            .lines()
            .find(|l| l.starts_with("nano_"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap(),
    )
    .unwrap();
    r.event(live_vote(top), 30_002);
    let st = r.core.rep_status(30_002);
    assert_eq!(st.representatives.len(), 1);
    assert_eq!(st.representatives[0].weight, weights.get(&top));
    assert!(weights.get(&top) > 10_000_000 * 10u128.pow(30));
    assert!(!st.sufficient);
    // the resolved addresses are dialed on the default port
    let mut out = Vec::new();
    r.core
        .on_preconfigured_resolved(vec![ep("4.4.4.4:0"), ep("4.4.4.5:7076")], 30_003, &mut out);
    assert_eq!(dials(&out), vec![ep("4.4.4.4:7075"), ep("4.4.4.5:7076")]);
}

#[test]
fn purge_closes_idle_channels_on_their_shard() {
    let mut r = rig(Network::Dev, 4);
    r.start(0);
    r.chans[0].touch_sent(5_500);
    r.chans[2].touch_sent(5_500);
    let out = r.tick(6_000);
    let closes: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            CrawlerOutput::Shard {
                shard,
                command: ShardCommand::Close { channel, reason },
            } => Some((*shard, *channel, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        closes,
        vec![
            (r.chans[1].shard(), r.chans[1].id(), CloseReason::Purged),
            (r.chans[3].shard(), r.chans[3].id(), CloseReason::Purged),
        ]
    );
    assert_eq!(r.map.len(), 2);
    assert_eq!(r.core.table().len(), 2);
    assert_eq!(r.core.stats().purged, 2);
}

#[test]
fn flush_peers_lists_peering_endpoints() {
    let mut r = rig(Network::Dev, 3);
    r.chans[1].set_peering_port(44000);
    r.start(0);
    r.touch_all(1_000);
    let out = r.tick(1_000);
    let flushed: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            CrawlerOutput::Node(NodeAction::FlushPeers(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        flushed,
        vec![vec![
            r.chans[0].remote(),
            Endpoint::new(std::net::IpAddr::from(*r.chans[1].remote().ip()), 44000),
            r.chans[2].remote(),
        ]]
    );
}

#[test]
fn relay_skips_the_sender_and_goes_to_sqrt_n() {
    for n in [1u32, 2, 10, 16, 50] {
        let mut r = rig(Network::Dev, n);
        r.start(0);
        let from = r.chans[0].id();
        let block = Arc::new(genesis_block(Network::Dev));
        let out = r.event(
            CrawlerEvent::Block {
                channel: from,
                hash: genesis_hash(Network::Dev),
                block: block.clone(),
            },
            5,
        );
        let s = sends(&out, r.network);
        let want = ((n as f64).sqrt().ceil() as usize).min(n as usize - 1);
        assert_eq!(s.len(), want, "n = {n}");
        let ids: BTreeSet<ChannelId> = s.iter().map(|(_, c, _)| *c).collect();
        assert_eq!(ids.len(), want);
        assert!(!ids.contains(&from));
        for (_, _, m) in s {
            match m {
                Message::Publish(p) => assert_eq!(p.block, *block),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn genesis_mismatch_excludes_and_closes() {
    let mut r = rig(Network::Live, 2);
    r.start(0);
    let ch = r.chans[0].clone();
    let out = r.event(
        CrawlerEvent::GenesisMismatch {
            channel: ch.clone(),
        },
        100,
    );
    assert_eq!(
        out,
        vec![CrawlerOutput::Shard {
            shard: ch.shard(),
            command: ShardCommand::Close {
                channel: ch.id(),
                reason: CloseReason::Excluded
            }
        }]
    );
    assert_eq!(r.exclusion.lock().score(*ch.remote().ip()), 1);
    assert!(!r.map.contains(&ch.remote()));
    // a second offence from the same IP blocks reachout to it
    let again = add_channel(
        &r.map,
        Endpoint::new(std::net::IpAddr::from(*ch.remote().ip()), 1),
        0,
        200,
    );
    r.event(CrawlerEvent::GenesisMismatch { channel: again }, 200);
    let peer = Endpoint::new(std::net::IpAddr::from(*ch.remote().ip()), 7075);
    assert_eq!(r.merge(peer, 300), Err(MergeRefusal::Excluded));
}

#[test]
fn telemetry_is_broadcast_and_cached_until_stale() {
    let mut r = rig_with(Network::Dev, 4, 1, |s| {
        s.telemetry = Some(Box::new(|now, peers| {
            let mut m = Message::TelemetryReq.encode(Network::Dev);
            m.push(0); // not a real ack: the test only checks it is fanned out as given
            let _ = (now, peers);
            m.truncate(8);
            m
        }));
    });
    r.start(0);
    r.touch_all(500);
    let out = r.tick(500);
    let tel: Vec<_> = sends(&out, r.network)
        .into_iter()
        .filter(|(_, _, m)| matches!(m, Message::TelemetryReq))
        .collect();
    assert_eq!(tel.len(), 4);
    let data = TelemetryData {
        peer_count: 7,
        ..Default::default()
    };
    r.event(
        CrawlerEvent::Telemetry {
            channel: r.chans[2].id(),
            data: Box::new(data),
        },
        600,
    );
    assert_eq!(r.core.telemetry(600).len(), 1);
    assert_eq!(r.core.telemetry(600)[0].1.peer_count, 7);
    assert_eq!(r.core.telemetry(2_600).len(), 1);
    assert!(r.core.telemetry(2_601).is_empty());
}

fn scenario(seed: u64) -> Vec<CrawlerOutput> {
    let mut r = rig_with(Network::Dev, 20, seed, |s| {
        s.stored_peers = vec![public_ep(900, 44000)];
    });
    let mut all = r.start(0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 1);
    for step in 0..300u64 {
        let now = step * 10;
        if step % 7 == 0 {
            let peers: [Endpoint; 8] =
                std::array::from_fn(|_| public_ep(rng.random_range(1000..2000), 44000));
            let c = r.chans[rng.random_range(0..20)].id();
            all.extend(r.event(CrawlerEvent::Keepalive { channel: c, peers }, now));
        }
        if step % 13 == 0 {
            all.extend(r.event(
                CrawlerEvent::Block {
                    channel: r.chans[3].id(),
                    hash: genesis_hash(Network::Dev),
                    block: Arc::new(genesis_block(Network::Dev)),
                },
                now,
            ));
        }
        for c in r.chans.iter().take(15) {
            c.touch_sent(now);
        }
        all.extend(r.tick(now));
    }
    all
}

#[test]
fn same_seed_same_outputs() {
    let a = scenario(11);
    let b = scenario(11);
    assert!(a.len() > 100);
    assert_eq!(a, b);
    assert_ne!(a, scenario(12));
}

#[test]
fn votes_are_counted_per_representative_and_bounded() {
    let mut r = rig(Network::Dev, 2);
    r.start(0);
    let ch = r.chans[0].clone();
    let vote = |account: PublicKey, t| CrawlerEvent::Vote {
        channel: ch.id(),
        account,
        hashes: vec![BlockHash([t as u8; 32])],
        timestamp: t,
        rebroadcasted: t % 2 == 0,
    };
    let a = PublicKey([1; 32]);
    let b = PublicKey([2; 32]);
    for t in 0..3 {
        r.event(vote(a, t), 10 + t);
    }
    r.event(vote(b, 7), 20);
    assert_eq!(r.core.votes_by_rep(), vec![(a, 3), (b, 1)]);
    assert_eq!(r.core.stats().votes, 4);
    // beyond the cap, accounts are counted in total only
    for i in 0..(nanopeer::proto::crawler::MAX_VOTE_COUNTERS as u32 + 10) {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[31] = 9;
        r.event(vote(PublicKey(k), 1), 30);
    }
    assert_eq!(
        r.core.votes_by_rep().len(),
        nanopeer::proto::crawler::MAX_VOTE_COUNTERS
    );
    assert_eq!(r.core.stats().votes_untracked, 12);
}
