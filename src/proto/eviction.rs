//! Which inbound connection to close when a shard's inbound table is full and a stranger knocks.
//!
//! The reference node stops accepting at its cap, so whoever holds the slots (2300 silent
//! connections from one address are enough) locks every honest peer out. nanopeer evicts
//! instead, in the manner of Bitcoin Core's `SelectNodeToEvict`: one pure function over a
//! few facts per connection, so a flood can slow honest peers down but never keep them out.
//!
//! 1. **Unverified connections go first** (no handshake yet: nothing is known of them and
//!    they have cost us nothing worth keeping). Among them the victim is taken from the
//!    most-represented subnet (IPv4 /24, IPv6 /32), within it from the most-represented IP
//!    group, and within that the oldest connection. A flood from one address, one /24 or
//!    many /24s therefore evicts its own connections before it touches a lone honest peer
//!    that is still shaking hands.
//! 2. **Verified channels are protected**: only when no unverified connection is left is a
//!    channel considered, and then only after setting aside, in this order, the
//!    [`PROTECT_DIVERSE`] longest-connected channels of distinct subnets (network
//!    diversity), the [`PROTECT_USEFUL`] with the most recent useful traffic, and the older
//!    half of the rest (connection age). From what remains the victim is the youngest
//!    channel of the most-represented subnet. If nothing remains, nobody is evicted and the
//!    newcomer is refused.
//!
//! [`select_victims`] returns up to `n` victims in order, as if they were picked one after
//! another (each pick lowers the counts of its subnet and IP), so a shard can pick a batch
//! at once and hand them out as new connections arrive.

use crate::endpoint::{IpKey, SubnetKey};
use std::collections::HashMap;

/// Verified channels of distinct subnets, the longest connected, that are never evicted.
pub const PROTECT_DIVERSE: usize = 8;
/// Verified channels with the most recent useful traffic that are never evicted.
pub const PROTECT_USEFUL: usize = 8;

/// What eviction knows of one inbound connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<Id> {
    /// How the caller names the connection.
    pub id: Id,
    /// The IP group (IPv4 address or IPv6 /48).
    pub ip: IpKey,
    /// The subnet (IPv4 /24 or IPv6 /32).
    pub subnet: SubnetKey,
    /// When it connected (ms).
    pub connected_ms: u64,
    /// The handshake completed (a channel exists).
    pub verified: bool,
    /// When it last sent something useful (ms; verified channels only).
    pub last_useful_ms: u64,
}

/// Up to `n` connections to evict, in order; see the [module docs](self). Unverified ones
/// only, unless there are none: then at most one verified channel, after the protections.
pub fn select_victims<Id: Copy>(candidates: &[Candidate<Id>], n: usize) -> Vec<Id> {
    if n == 0 {
        return Vec::new();
    }
    let unverified: Vec<&Candidate<Id>> = candidates.iter().filter(|c| !c.verified).collect();
    if unverified.is_empty() {
        return select_channel(candidates).into_iter().collect();
    }
    let mut by_subnet: HashMap<SubnetKey, usize> = HashMap::new();
    let mut by_ip: HashMap<IpKey, usize> = HashMap::new();
    for c in &unverified {
        *by_subnet.entry(c.subnet).or_default() += 1;
        *by_ip.entry(c.ip).or_default() += 1;
    }
    // Oldest first within each IP group; every pick takes the front of one group.
    let mut groups: HashMap<IpKey, Vec<&Candidate<Id>>> = HashMap::new();
    for c in unverified {
        groups.entry(c.ip).or_default().push(c);
    }
    for g in groups.values_mut() {
        // Descending, so the oldest is popped from the back.
        g.sort_by_key(|c| std::cmp::Reverse(c.connected_ms));
    }
    let mut out = Vec::with_capacity(n.min(candidates.len()));
    while out.len() < n {
        // The most-represented subnet, then its most-represented IP group, then its oldest
        // connection; ties go to the group whose oldest connection is older.
        let pick = groups
            .iter()
            .filter_map(|(ip, g)| g.last().map(|c| (ip, c)))
            .max_by(|(ip_a, a), (ip_b, b)| {
                let key_a = (by_subnet[&a.subnet], by_ip[*ip_a]);
                let key_b = (by_subnet[&b.subnet], by_ip[*ip_b]);
                key_a.cmp(&key_b).then(b.connected_ms.cmp(&a.connected_ms))
            })
            .map(|(ip, _)| *ip);
        let Some(ip) = pick else {
            break;
        };
        let Some(victim) = groups.get_mut(&ip).and_then(|g| g.pop()) else {
            break;
        };
        if let Some(s) = by_subnet.get_mut(&victim.subnet) {
            *s -= 1;
        }
        if let Some(i) = by_ip.get_mut(&ip) {
            *i -= 1;
        }
        out.push(victim.id);
    }
    out
}

/// The verified channel to evict when no unverified connection is left, if any survives the
/// protections.
fn select_channel<Id: Copy>(candidates: &[Candidate<Id>]) -> Option<Id> {
    let mut rest: Vec<&Candidate<Id>> = candidates.iter().filter(|c| c.verified).collect();
    // Network diversity: the longest-connected channel of each subnet, the oldest first.
    rest.sort_by_key(|c| c.connected_ms);
    let mut seen: Vec<SubnetKey> = Vec::new();
    rest.retain(|c| {
        if seen.len() < PROTECT_DIVERSE && !seen.contains(&c.subnet) {
            seen.push(c.subnet);
            false
        } else {
            true
        }
    });
    // Recent useful traffic.
    rest.sort_by_key(|c| std::cmp::Reverse(c.last_useful_ms));
    rest.drain(..PROTECT_USEFUL.min(rest.len()));
    // The older half of the rest by connection time.
    rest.sort_by_key(|c| c.connected_ms);
    let half = rest.len() / 2;
    rest.drain(..half);
    if rest.is_empty() {
        return None;
    }
    let mut by_subnet: HashMap<SubnetKey, usize> = HashMap::new();
    for c in &rest {
        *by_subnet.entry(c.subnet).or_default() += 1;
    }
    // The most-represented subnet; its youngest channel.
    rest.iter()
        .max_by(|a, b| {
            by_subnet[&a.subnet]
                .cmp(&by_subnet[&b.subnet])
                .then(a.connected_ms.cmp(&b.connected_ms))
        })
        .map(|c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn cand(id: u32, ip: [u8; 4], at: u64, verified: bool, useful: u64) -> Candidate<u32> {
        let ip = IpAddr::V4(Ipv4Addr::from(ip));
        Candidate {
            id,
            ip: IpKey::of(ip),
            subnet: SubnetKey::of(ip),
            connected_ms: at,
            verified,
            last_useful_ms: useful,
        }
    }

    #[test]
    fn one_source_flood_is_evicted_before_a_lone_honest_handshake() {
        let mut c: Vec<_> = (0..100)
            .map(|i| cand(i, [10, 0, 0, 1], i as u64, false, 0))
            .collect();
        c.push(cand(1000, [20, 0, 0, 1], 0, false, 0)); // older than all, but alone
        // While the flood holds more than the honest source, only the flood loses.
        let v = select_victims(&c, 99);
        assert_eq!(v.len(), 99);
        assert!(!v.contains(&1000), "the lone honest connection is spared");
        assert_eq!(
            &v[..3],
            &[0, 1, 2],
            "oldest first within the flooding source"
        );
        // Only once the flood is down to one connection is it a tie (then the older goes).
        let all = select_victims(&c, 200);
        assert_eq!(all.len(), 101);
        assert_eq!(all[99], 1000);
    }

    #[test]
    fn the_most_represented_subnet_then_ip_loses_first() {
        let c = vec![
            cand(1, [10, 0, 0, 1], 5, false, 0),
            cand(2, [10, 0, 0, 2], 6, false, 0),
            cand(3, [10, 0, 0, 2], 7, false, 0),
            cand(4, [10, 0, 1, 1], 1, false, 0),
            cand(5, [10, 0, 1, 2], 2, false, 0),
        ];
        // subnet 10.0.0/24 holds 3: its IP 10.0.0.2 (2) before 10.0.0.1; oldest first.
        assert_eq!(select_victims(&c, 1), vec![2]);
        // Then both subnets hold 2 (one per IP): ties go to the older connection.
        assert_eq!(select_victims(&c, 5), vec![2, 4, 1, 5, 3]);
    }

    #[test]
    fn many_subnets_each_at_its_limit_still_spare_a_newcomer() {
        // 128 /24s with 16 each, and one honest connection from its own /24.
        let mut c = Vec::new();
        let mut id = 0;
        for s in 0..128u8 {
            for h in 0..16u8 {
                c.push(cand(id, [11, 1, s, h / 4], id as u64, false, 0));
                id += 1;
            }
        }
        c.push(cand(99_999, [12, 0, 0, 1], 10_000, false, 0));
        let v = select_victims(&c, c.len() - 1);
        assert!(!v.contains(&99_999));
    }

    #[test]
    fn channels_only_when_no_unverified_and_protected() {
        let mut c = vec![cand(1, [10, 0, 0, 1], 0, true, 0)];
        assert_eq!(
            select_victims(&c, 4),
            Vec::<u32>::new(),
            "one channel: protected"
        );
        c.push(cand(2, [10, 0, 0, 9], 50, false, 0));
        assert_eq!(
            select_victims(&c, 4),
            vec![2],
            "unverified only, while any is left"
        );
        // 40 channels in one /24, one each in 8 other /24s.
        let mut ch: Vec<_> = (0..40)
            .map(|i| cand(i, [10, 0, 0, i as u8], 100 + i as u64, true, 0))
            .collect();
        for s in 0..8u8 {
            ch.push(cand(
                100 + s as u32,
                [10, 1, s, 1],
                1000 + s as u64,
                true,
                0,
            ));
        }
        ch[39].last_useful_ms = 5_000; // the youngest, but useful: protected
        let v = select_victims(&ch, 4);
        assert_eq!(v.len(), 1, "one channel at a time");
        assert_eq!(
            v,
            vec![38],
            "youngest of the crowded /24 that is not useful"
        );
        // Everything protected: nothing evicted.
        let few: Vec<_> = (0..9u8)
            .map(|s| cand(s as u32, [10, 2, s, 1], s as u64, true, 0))
            .collect();
        assert!(select_victims(&few, 1).is_empty());
    }
}
