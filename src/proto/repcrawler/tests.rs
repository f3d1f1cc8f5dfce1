use super::*;
use crate::channels::Direction;
use crate::endpoint::Endpoint;
use crate::wire::HashRoot;
use rand::SeedableRng;
use std::net::Ipv6Addr;

fn key(i: u32) -> PublicKey {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&i.to_le_bytes());
    k[31] = 0xa5;
    PublicKey(k)
}

fn hash(i: u32) -> BlockHash {
    BlockHash(key(i).0)
}

/// A channel with id `id` to the node `node`.
fn chan(id: u64, node: u32) -> Arc<Channel> {
    let remote = Endpoint::new(
        std::net::IpAddr::from(Ipv6Addr::new(0x2a00, id as u16, 0, 0, 0, 0, 0, 1)),
        7075,
    );
    Arc::new(Channel::new(
        ChannelId(id),
        key(1_000_000 + node),
        0x15,
        remote,
        0,
        Direction::Inbound,
        0,
    ))
}

fn entry(account: u32, weight: u128, last: u64, alive: bool) -> RepEntry {
    let channel = chan(u64::from(account), account);
    if !alive {
        channel.close();
    }
    RepEntry {
        account: key(account),
        channel,
        weight,
        last_response_ms: last,
    }
}

/// A dev crawler where accounts `0..n` weigh `weight(i)` and any weight counts.
fn crawler(n: u32, weight: impl Fn(u32) -> u128) -> RepCrawler {
    let mut w = RepWeights::new();
    for i in 0..n {
        w.insert(key(i), weight(i));
    }
    let mut c = RepCrawlerConfig::from_proto(&ProtoConfig::for_network(Network::Dev));
    c.min_weight = Some(1);
    RepCrawler::new(c, w, OnlineReps::new(1, 8))
}

/// Asks `h` on `ch` at `now` and answers it with a vote of `account`.
fn ask_and_answer(
    rc: &mut RepCrawler,
    ch: &Arc<Channel>,
    account: PublicKey,
    h: BlockHash,
    now: u64,
) -> bool {
    let q = HashRoot { hash: h, root: h };
    rc.record_query(ch.id(), q, now);
    rc.on_vote(Some(ch), ch.id(), account, &[h], false, now)
}

#[test]
fn cap_victim_prefers_a_closed_channel_then_the_lightest_and_keeps_equals() {
    let reps = [
        entry(1, 50, 10, true),
        entry(2, 30, 20, true),
        entry(3, 30, 5, true),
        entry(4, 90, 1, true),
    ];
    // the lightest, least recently answered of the two 30s; only a heavier one evicts it
    assert_eq!(cap_victim(&reps, 31), Some(key(3)));
    assert_eq!(cap_victim(&reps, 30), None);
    assert_eq!(cap_victim(&reps, 1), None);
    // equal weight and time: the smallest account
    let tie = [entry(7, 30, 5, true), entry(6, 30, 5, true)];
    assert_eq!(cap_victim(&tie, 31), Some(key(6)));
    // a closed channel goes first, whatever its weight and the newcomer's
    let with_dead = [entry(1, 50, 10, true), entry(2, 1_000, 20, false)];
    assert_eq!(cap_victim(&with_dead, 1), Some(key(2)));
    assert_eq!(cap_victim(std::iter::empty(), 1), None);
}

#[test]
fn the_table_stops_at_the_cap_keeping_the_heaviest() {
    let extra = 40;
    let n = REPS_MAX as u32 + extra;
    // account i weighs 1000 + i, except the last `extra` that weigh 1..=extra
    let cap = REPS_MAX as u32;
    let mut rc = crawler(n, |i| {
        if i < cap {
            1_000 + u128::from(i)
        } else {
            u128::from(i - cap + 1)
        }
    });
    let ch = chan(1, 1);
    for i in 0..cap {
        assert!(ask_and_answer(&mut rc, &ch, key(i), hash(i), 10));
    }
    assert_eq!(rc.rep_count(), REPS_MAX);
    // lighter newcomers are refused, the table does not move
    for i in cap..n {
        assert!(!ask_and_answer(&mut rc, &ch, key(i), hash(i), 20));
    }
    assert_eq!(rc.rep_count(), REPS_MAX);
    assert_eq!(rc.stats().reps_cap_refused, u64::from(extra));
    assert_eq!(rc.stats().reps_cap_evicted, 0);
    assert!(rc.rep(&key(cap)).is_none());
    // a heavier newcomer evicts the lightest (account 0, weight 1000)
    let heavy = key(n + 1);
    rc.weights.insert(heavy, 5_000);
    assert!(ask_and_answer(&mut rc, &ch, heavy, hash(n + 1), 30));
    assert_eq!(rc.rep_count(), REPS_MAX);
    assert_eq!(rc.stats().reps_cap_evicted, 1);
    assert!(rc.rep(&key(0)).is_none());
    assert!(rc.rep(&key(1)).is_some() && rc.rep(&heavy).is_some());
    // a known rep's answer never needs room
    assert!(ask_and_answer(&mut rc, &ch, key(5), hash(5), 40));
    assert_eq!(rc.stats().reps_cap_evicted, 1);
    assert_eq!(rc.stats().reps_added, u64::from(cap) + 1);
    // a heavy rep on another channel evicts the next lightest (account 1)...
    let heavier = key(n + 2);
    rc.weights.insert(heavier, 6_000);
    let ch2 = chan(2, 2);
    assert!(ask_and_answer(&mut rc, &ch2, heavier, hash(n + 2), 50));
    assert!(rc.rep(&key(1)).is_none());
    // ...and once its channel is closed it makes room first, even for the lightest
    ch2.close();
    assert!(ask_and_answer(&mut rc, &ch, key(cap), hash(cap), 60));
    assert!(rc.rep(&heavier).is_none() && rc.rep(&key(cap)).is_some());
    assert_eq!(rc.stats().reps_cap_evicted, 3);
    assert_eq!(rc.rep_count(), REPS_MAX);
}

#[test]
fn only_accounts_with_weight_are_kept() {
    // account 0 weighs 10; the minimum is 5
    let mut rc = crawler(2, |i| if i == 0 { 10 } else { 4 });
    rc.config.min_weight = Some(5);
    let ch = chan(1, 1);
    let g = hash(0);
    rc.record_query(ch.id(), HashRoot { hash: g, root: g }, 0);
    for i in 100..1_100 {
        assert!(!rc.on_vote(Some(&ch), ch.id(), key(i), &[g], false, 1));
    }
    assert!(!rc.on_vote(Some(&ch), ch.id(), key(1), &[g], false, 1));
    assert_eq!(rc.stats().votes_no_weight, 1_000);
    assert_eq!(rc.stats().votes_low_weight, 1);
    assert_eq!(rc.rep_count(), 0);
    // refusals did not consume the query: the weighted rep's answer still counts
    assert_eq!(rc.outstanding_queries(), 1);
    assert!(rc.on_vote(Some(&ch), ch.id(), key(0), &[g], false, 2));
    assert_eq!(rc.rep_count(), 1);
    // beta without a weights file: nothing weighs anything, nothing is kept
    let c = RepCrawlerConfig::from_proto(&ProtoConfig::for_network(Network::Beta));
    let mut beta = RepCrawler::new(
        c,
        RepWeights::defaults(Network::Beta),
        OnlineReps::new(1, 8),
    );
    beta.record_query(ch.id(), HashRoot { hash: g, root: g }, 0);
    assert!(!beta.on_vote(Some(&ch), ch.id(), key(0), &[g], false, 1));
    assert_eq!((beta.rep_count(), beta.stats().votes_no_weight), (0, 1));
}

#[test]
fn a_query_is_consumed_by_its_first_counted_answer() {
    let mut rc = crawler(3, |_| 100);
    let ch = chan(1, 1);
    let (g, x) = (hash(50), hash(51));
    rc.record_query(ch.id(), HashRoot { hash: g, root: g }, 0);
    rc.record_query(ch.id(), HashRoot { hash: x, root: x }, 0);
    assert_eq!(rc.outstanding_queries(), 2);
    // the first answer for g counts and uses up g only
    assert!(rc.on_vote(Some(&ch), ch.id(), key(0), &[g], false, 5));
    assert_eq!(rc.outstanding_queries(), 1);
    // a second vote for g, same account or another, does not count again
    assert!(!rc.on_vote(Some(&ch), ch.id(), key(0), &[g], false, 6));
    assert!(!rc.on_vote(Some(&ch), ch.id(), key(1), &[g], false, 6));
    assert_eq!(rc.stats().votes_query_used, 2);
    assert_eq!((rc.stats().responses, rc.rep_count()), (1, 1));
    // a vote naming both: only x is open, it counts and uses x up
    assert!(rc.on_vote(Some(&ch), ch.id(), key(1), &[g, x], false, 7));
    assert_eq!(rc.outstanding_queries(), 0);
    assert!(!rc.on_vote(Some(&ch), ch.id(), key(2), &[g, x], false, 8));
    assert_eq!(rc.stats().votes_query_used, 3);
    // asking again opens the query again
    rc.record_query(ch.id(), HashRoot { hash: g, root: g }, 9);
    assert_eq!(rc.outstanding_queries(), 1);
    assert!(rc.on_vote(Some(&ch), ch.id(), key(2), &[g], false, 10));
    assert_eq!((rc.stats().responses, rc.rep_count()), (3, 3));
    // answered queries do not expire as unanswered
    let mut out = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    rc.tick(std::slice::from_ref(&ch), 5_000, &mut rng, &mut out);
    assert_eq!(rc.stats().queries_expired, 0);
    assert!(rc.unanswered.is_empty());
}

#[test]
fn a_rep_is_bound_to_the_node_that_answered() {
    let mut rc = crawler(1, |_| 100);
    let a = key(0);
    let home = chan(1, 7);
    let replay = chan(2, 8);
    assert!(ask_and_answer(&mut rc, &home, a, hash(1), 10));
    // the same vote replayed by another node: refused, the rep stays
    assert!(!ask_and_answer(&mut rc, &replay, a, hash(2), 20));
    assert_eq!(rc.stats().reps_rebind_refused, 1);
    assert_eq!(rc.rep(&a).unwrap().channel.id(), home.id());
    assert_eq!(*rc.rep(&a).unwrap().node_id(), *home.node_id());
    // the refused answer left the replayer's query open, not consumed
    assert_eq!(rc.outstanding_queries(), 1);
    // the rep's node reconnects: a new channel of the same node id takes it
    let back = chan(3, 7);
    assert!(ask_and_answer(&mut rc, &back, a, hash(3), 30));
    assert_eq!(rc.rep(&a).unwrap().channel.id(), back.id());
    assert_eq!(rc.stats().reps_moved, 1);
    // once the bound channel is closed, another node may take it
    back.close();
    assert!(ask_and_answer(&mut rc, &replay, a, hash(4), 40));
    assert_eq!(rc.rep(&a).unwrap().channel.id(), replay.id());
    assert_eq!(rc.stats().reps_moved, 2);
    assert_eq!(rc.stats().reps_rebound, 0);
}

#[test]
fn a_rep_whose_node_stops_answering_is_rebound_after_the_grace_period() {
    let mut rc = crawler(1, |_| 100);
    let after = rc.config.rebind_after_ms;
    let timeout = rc.config.query_timeout_ms;
    let a = key(0);
    let (home, other) = (chan(1, 7), chan(2, 8));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut out = Vec::new();
    assert!(ask_and_answer(&mut rc, &home, a, hash(1), 0));
    // old enough, but the bound node was never asked since: still bound
    assert!(!ask_and_answer(&mut rc, &other, a, hash(2), after + 1));
    // the bound node is asked and lets the query expire
    rc.record_query(
        home.id(),
        HashRoot {
            hash: hash(3),
            root: hash(3),
        },
        after + 2,
    );
    rc.tick(&[], after + 2 + timeout, &mut rng, &mut out);
    assert_eq!(rc.stats().queries_expired, 2);
    assert_eq!(rc.stats().reps_rebind_refused, 1);
    // now an answer elsewhere rebinds it
    assert!(ask_and_answer(
        &mut rc,
        &other,
        a,
        hash(4),
        after + 3 + timeout
    ));
    assert_eq!(rc.rep(&a).unwrap().channel.id(), other.id());
    assert_eq!(rc.stats().reps_rebound, 1);
    // and the old node cannot take it back while the new one answers
    assert!(!ask_and_answer(
        &mut rc,
        &home,
        a,
        hash(5),
        after + 4 + timeout
    ));
    assert_eq!(rc.stats().reps_rebind_refused, 2);

    // an unanswered query alone does not rebind a rep that answered recently
    let mut rc = crawler(1, |_| 100);
    assert!(ask_and_answer(&mut rc, &home, a, hash(1), 0));
    rc.record_query(
        home.id(),
        HashRoot {
            hash: hash(3),
            root: hash(3),
        },
        1,
    );
    rc.tick(&[], 1 + timeout, &mut rng, &mut out);
    assert!(!ask_and_answer(&mut rc, &other, a, hash(2), after - 1));
    assert_eq!(rc.rep(&a).unwrap().channel.id(), home.id());
}
