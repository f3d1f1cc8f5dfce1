//! Where a stream's connections come from: the attackers' addresses by [`FloodSource`] (in
//! 127.255.0.0/16 and 127.0.1.0–127.0.255.255) and the streaming peers' (honest voters,
//! workload channels: [`stream_source_ip`]), never in a /24 the attackers use.

use std::net::Ipv4Addr;

use crate::bench::loadgen::source_ip;

/// Where the connections of a `slot-flood` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodSource {
    /// One address: 127.255.0.1.
    Ip,
    /// One /24: 127.255.0.1–254.
    Subnet,
    /// Many /24s: consecutive connections in different /24s of 127.255.0.0/16 and
    /// 127.0.1.0–127.0.255.255 ([`ATTACK_SUBNETS`] of them), one address per connection.
    Many,
}

/// The /24 subnets the attackers use (127.255.0–255 and 127.0.1–255).
pub const ATTACK_SUBNETS: u32 = 511;

/// First [`source_ip`] index of the streaming peers (127.x.y.47: /24s of the honest range).
pub const HONEST_VOTER_OFFSET: u32 = 3_000_000;

impl FloodSource {
    /// Source address of attack connection `i`.
    pub fn address(self, i: u32) -> Ipv4Addr {
        match self {
            FloodSource::Ip => Ipv4Addr::new(127, 255, 0, 1),
            FloodSource::Subnet => Ipv4Addr::new(127, 255, 0, 1 + (i % 254) as u8),
            FloodSource::Many => {
                let s = i % ATTACK_SUBNETS;
                let host = 1 + (i / ATTACK_SUBNETS) % 254;
                let (b1, b2) = if s < 256 { (255, s) } else { (0, s - 255) };
                Ipv4Addr::new(127, b1, b2 as u8, host as u8)
            }
        }
    }

    /// Distinct addresses and distinct /24s used by `n` connections.
    pub fn spread(self, n: usize) -> (usize, usize) {
        match self {
            FloodSource::Ip => (n.min(1), n.min(1)),
            FloodSource::Subnet => (n.min(254), n.min(1)),
            FloodSource::Many => (n.min(254 * ATTACK_SUBNETS as usize), n.min(511)),
        }
    }

    /// `ip`, `subnet` or `many`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FloodSource::Ip => "ip",
            FloodSource::Subnet => "subnet",
            FloodSource::Many => "many",
        }
    }

    /// Parses `ip`, `subnet` or `many`.
    pub fn parse(s: &str) -> Option<FloodSource> {
        match s {
            "ip" => Some(FloodSource::Ip),
            "subnet" => Some(FloodSource::Subnet),
            "many" => Some(FloodSource::Many),
            _ => None,
        }
    }
}

/// Address of streaming peer `j` (in the honest /24s, away from the handshake load's hosts;
/// consecutive peers in different /24s).
pub fn stream_source_ip(j: u32) -> Ipv4Addr {
    source_ip(HONEST_VOTER_OFFSET + j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_sources_never_share_a_subnet_with_honest_peers() {
        let subnet = |ip: Ipv4Addr| {
            let o = ip.octets();
            (o[1], o[2])
        };
        let honest: std::collections::HashSet<(u8, u8)> = (0..70_000)
            .map(source_ip)
            .chain((0..64).map(stream_source_ip))
            .map(subnet)
            .collect();
        let mut many = std::collections::HashSet::new();
        for source in [FloodSource::Ip, FloodSource::Subnet, FloodSource::Many] {
            for i in 0..5000 {
                let ip = source.address(i);
                let o = ip.octets();
                assert_eq!(o[0], 127);
                assert!(o[3] != 0 && o[3] != 255, "{ip}");
                assert_ne!((o[1], o[2]), (0, 0), "the node's own /24: {ip}");
                assert!(!honest.contains(&subnet(ip)), "{ip} in an honest /24");
                if source == FloodSource::Many {
                    many.insert(ip);
                }
            }
        }
        assert_eq!(many.len(), 5000, "many: one address per connection");
        let subnets: std::collections::HashSet<_> = (0..511)
            .map(|i| subnet(FloodSource::Many.address(i)))
            .collect();
        assert_eq!(subnets.len(), 511);
        assert_eq!(FloodSource::Subnet.spread(300), (254, 1));
        assert_eq!(FloodSource::Ip.spread(300), (1, 1));
        assert_eq!(FloodSource::Many.spread(300), (300, 300));
    }
}
