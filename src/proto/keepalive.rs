//! Keepalive contents and fan-out sizes (§4.1, §7.4).
//!
//! The functions work on a slice of channels (the crawler's table, or
//! [`ChannelMap::snapshot`](crate::channels::ChannelMap::snapshot)) and an RNG, so the same
//! seed and the same channel list give the same keepalive.

use std::sync::Arc;

use rand::{Rng, RngCore};

use crate::channels::Channel;
use crate::endpoint::Endpoint;
use crate::types::Network;
use crate::wire::{KEEPALIVE_PEERS, Keepalive, Message};

/// The fan-out of a flood: ⌈scale·√n⌉ (`network::fanout`), at most `n`.
pub fn fanout(scale: f64, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let f = (scale * (n as f64).sqrt()).ceil();
    (f.max(0.0) as usize).min(n)
}

/// Up to `n` distinct alive channels of `channels` chosen with at most `2n` uniform draws
/// (`tcp_channels::random_set`); when the slice holds at most `n` channels, every alive one.
pub fn random_set(
    channels: &[Arc<Channel>],
    n: usize,
    rng: &mut impl RngCore,
) -> Vec<Arc<Channel>> {
    if n == 0 || channels.is_empty() {
        return Vec::new();
    }
    if channels.len() <= n {
        return channels.iter().filter(|c| c.is_alive()).cloned().collect();
    }
    let mut out: Vec<Arc<Channel>> = Vec::with_capacity(n);
    for _ in 0..n.saturating_mul(2) {
        if out.len() >= n {
            break;
        }
        let c = &channels[rng.random_range(0..channels.len())];
        if c.is_alive() && !out.iter().any(|o| o.id() == c.id()) {
            out.push(c.clone());
        }
    }
    out
}

/// Exactly `min(n, candidates)` distinct channels, uniformly, among the alive channels of
/// `channels` other than those `exclude` rejects (a partial Fisher–Yates shuffle). Used for
/// floods whose size must be exact (keepalive fan-out, publish relay).
pub fn random_subset(
    channels: &[Arc<Channel>],
    n: usize,
    rng: &mut impl RngCore,
    exclude: impl Fn(&Channel) -> bool,
) -> Vec<Arc<Channel>> {
    let mut pool: Vec<&Arc<Channel>> = channels
        .iter()
        .filter(|c| c.is_alive() && !exclude(c))
        .collect();
    let k = n.min(pool.len());
    for i in 0..k {
        let j = rng.random_range(i..pool.len());
        pool.swap(i, j);
    }
    pool.truncate(k);
    pool.into_iter().cloned().collect()
}

/// A normal keepalive (`network::random_fill`): the peering endpoints of up to 8 random alive
/// channels ([`random_set`]: at most 16 draws), then `[::]:0` padding.
pub fn random_fill(channels: &[Arc<Channel>], rng: &mut impl RngCore) -> [Endpoint; 8] {
    let mut peers = [Endpoint::UNSPECIFIED; KEEPALIVE_PEERS];
    for (slot, c) in peers
        .iter_mut()
        .zip(random_set(channels, KEEPALIVE_PEERS, rng))
    {
        *slot = c.peering_endpoint();
    }
    peers
}

/// A keepalive_self (`network::fill_keepalive_self`): [`random_fill`], laid out by
/// [`keepalive_self_slots`].
pub fn keepalive_self(
    channels: &[Arc<Channel>],
    listen_port: u16,
    rng: &mut impl RngCore,
) -> [Endpoint; 8] {
    keepalive_self_slots(listen_port, &random_fill(channels, rng))
}

/// The slots of a keepalive_self (§4.1) from up to 8 random peering endpoints: slot 0
/// `[::]:listen_port`, slot 1 `[::]:0`, slots 2–3 random peers 0–1, slots 4–7 random peers
/// 4–7 (the reference overwrites slots 0–1 of its random fill after copying them to 2–3).
pub fn keepalive_self_slots(listen_port: u16, random: &[Endpoint]) -> [Endpoint; 8] {
    let mut peers = [Endpoint::UNSPECIFIED; 8];
    for (slot, p) in peers.iter_mut().zip(random) {
        *slot = *p;
    }
    peers[2] = peers[0];
    peers[3] = peers[1];
    peers[0] = Endpoint::UNSPECIFIED.with_port(listen_port);
    peers[1] = Endpoint::UNSPECIFIED;
    peers
}

/// The encoded keepalive message (header + 144 bytes), shareable by a whole fan-out.
pub fn encode_keepalive(network: Network, peers: [Endpoint; 8]) -> Arc<[u8]> {
    Message::Keepalive(Keepalive {
        peers: peers.map(Endpoint::to_v6),
    })
    .encode(network)
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::{ChannelId, Direction};
    use crate::types::PublicKey;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn chans(n: u64) -> Vec<Arc<Channel>> {
        (1..=n)
            .map(|i| {
                let ep = Endpoint::new(
                    std::net::IpAddr::from(std::net::Ipv6Addr::new(
                        0x2001, 0x0db9, 0, 0, 0, 0, 0, i as u16,
                    )),
                    1000 + i as u16,
                );
                Arc::new(Channel::new(
                    ChannelId(i),
                    PublicKey([i as u8; 32]),
                    0x15,
                    ep,
                    0,
                    Direction::Inbound,
                    0,
                ))
            })
            .collect()
    }

    #[test]
    fn fanout_is_ceil_scale_sqrt() {
        assert_eq!(fanout(0.75, 0), 0);
        assert_eq!(fanout(0.75, 1), 1);
        assert_eq!(fanout(0.75, 16), 3);
        assert_eq!(fanout(0.25, 16), 1);
        assert_eq!(fanout(0.75, 100), 8);
        assert_eq!(fanout(0.25, 100), 3);
        assert_eq!(fanout(1.0, 10), 4);
        assert_eq!(fanout(1.0, 2048), 46);
    }

    #[test]
    fn random_fill_is_distinct_and_padded() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let few = chans(3);
        let p = random_fill(&few, &mut rng);
        assert_eq!(p.iter().filter(|e| **e != Endpoint::UNSPECIFIED).count(), 3);
        assert!(p[3..].iter().all(|e| *e == Endpoint::UNSPECIFIED));
        let many = chans(50);
        many[0].set_peering_port(7075);
        let p = random_fill(&many, &mut rng);
        let mut v: Vec<_> = p.iter().filter(|e| **e != Endpoint::UNSPECIFIED).collect();
        let n = v.len();
        assert!((1..=8).contains(&n));
        v.sort();
        v.dedup();
        assert_eq!(v.len(), n, "distinct");
        // closed channels never appear
        for c in &many[1..] {
            c.close();
        }
        for _ in 0..20 {
            let p = random_fill(&many, &mut rng);
            assert!(
                p.iter()
                    .all(|e| *e == Endpoint::UNSPECIFIED || *e == many[0].peering_endpoint())
            );
        }
    }

    #[test]
    fn keepalive_self_layout() {
        let mut a = ChaCha8Rng::seed_from_u64(9);
        let mut b = ChaCha8Rng::seed_from_u64(9);
        let list = chans(20);
        let fill = random_fill(&list, &mut a);
        let s = keepalive_self(&list, 7075, &mut b);
        assert_eq!(s[0], Endpoint::UNSPECIFIED.with_port(7075));
        assert_eq!(s[1], Endpoint::UNSPECIFIED);
        assert_eq!(s[2], fill[0]);
        assert_eq!(s[3], fill[1]);
        assert_eq!(&s[4..], &fill[4..]);
    }

    #[test]
    fn keepalive_self_slots_from_fewer_than_eight_peers() {
        let p = |i: u16| Endpoint::localhost(1000 + i);
        let peers: Vec<_> = (0..8).map(p).collect();
        let k = keepalive_self_slots(7075, &peers);
        assert_eq!(k[0], Endpoint::UNSPECIFIED.with_port(7075));
        assert_eq!(k[1], Endpoint::UNSPECIFIED);
        assert_eq!(&k[2..4], &[p(0), p(1)]);
        assert_eq!(&k[4..], &[p(4), p(5), p(6), p(7)]);
        let k = keepalive_self_slots(1, &[p(0)]);
        assert_eq!(k[2], p(0));
        assert_eq!(&k[3..], &[Endpoint::UNSPECIFIED; 5]);
    }

    #[test]
    fn random_subset_is_exact_and_excludes() {
        let list = chans(30);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let s = random_subset(&list, 6, &mut rng, |c| c.id() == ChannelId(5));
        assert_eq!(s.len(), 6);
        assert!(s.iter().all(|c| c.id() != ChannelId(5)));
        let s = random_subset(&list, 100, &mut rng, |c| c.id() == ChannelId(5));
        assert_eq!(s.len(), 29);
    }
}
