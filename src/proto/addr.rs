//! Address policy (§7.1, §7.7): reserved addresses, loopback, `not_a_peer`. Endpoints are
//! [`Endpoint`]s (one canonical form); functions that take `impl Into<Endpoint>` accept IPv4,
//! IPv6 and v4-mapped socket addresses alike and give the same answer.

use std::net::{IpAddr, Ipv4Addr};

use crate::endpoint::{Endpoint, canonical_ip};
use crate::types::Network;

/// Whether peers on local networks are allowed by default: true on beta and dev, false on live
/// and test (§7.6, `allow_local_peers`).
pub const fn allow_local_peers_default(network: Network) -> bool {
    matches!(network, Network::Beta | Network::Dev)
}

/// `::ffff:0:0`, the prefix of v4-mapped addresses, as a 128-bit number.
const V4_MAPPED: u128 = 0xffff << 32;

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u128 {
    V4_MAPPED | u32::from_be_bytes([a, b, c, d]) as u128
}

const fn v6(segments: [u16; 8]) -> u128 {
    let mut out = 0u128;
    let mut i = 0;
    while i < 8 {
        out = (out << 16) | segments[i] as u128;
        i += 1;
    }
    out
}

/// Ranges reserved on every network, inclusive bounds (§7.7).
const ALWAYS_RESERVED: [(u128, u128); 9] = [
    // 0.0.0.0/8 (RFC 1700)
    (v4(0, 0, 0, 0), v4(0, 255, 255, 255)),
    // RFC 5737 documentation ranges
    (v4(192, 0, 2, 0), v4(192, 0, 2, 255)),
    (v4(198, 51, 100, 0), v4(198, 51, 100, 255)),
    (v4(203, 0, 113, 0), v4(203, 0, 113, 255)),
    // IPv4 multicast 224.0.0.0/4
    (v4(224, 0, 0, 0), v4(239, 255, 255, 255)),
    // 240.0.0.0 – 255.255.255.255 (RFC 6890)
    (v4(240, 0, 0, 0), v4(255, 255, 255, 255)),
    // 100::/64 discard prefix (RFC 6666)
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0]),
        v6([0x100, 0, 0, 0, 0xffff, 0xffff, 0xffff, 0xffff]),
    ),
    // 2001:db8::/32 documentation (RFC 3849)
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]),
        v6([
            0x2001, 0xdb8, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ]),
    ),
    // ff00::/16 only (the reference's bounds), not all of ff00::/8
    (
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0]),
        v6([
            0xff00, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ]),
    ),
];

/// Ranges reserved only when local peers are not allowed, inclusive bounds (§7.7).
const LOCAL_RESERVED: [(u128, u128); 5] = [
    // RFC 1918 private ranges
    (v4(10, 0, 0, 0), v4(10, 255, 255, 255)),
    (v4(172, 16, 0, 0), v4(172, 31, 255, 255)),
    (v4(192, 168, 0, 0), v4(192, 168, 255, 255)),
    // RFC 6598 carrier-grade NAT 100.64.0.0/10
    (v4(100, 64, 0, 0), v4(100, 127, 255, 255)),
    // fc00:: – fd00:ffff:…:ffff (the reference's bounds, narrower than fc00::/7)
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0]),
        v6([
            0xfd00, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ]),
    ),
];

fn in_ranges(bits: u128, ranges: &[(u128, u128)]) -> bool {
    ranges.iter().any(|&(lo, hi)| bits >= lo && bits <= hi)
}

/// True when `ep` may never be a peer because of its port or address range (the reference's
/// `reserved_address`, §7.7): port 0 and the always-reserved ranges; the local ranges (RFC 1918,
/// 100.64/10, fc00::–fd00:ffff:…) as well when `allow_local_peers` is false. Loopback is not
/// reserved.
pub fn is_reserved(ep: impl Into<Endpoint>, allow_local_peers: bool) -> bool {
    let ep = ep.into();
    if ep.port() == 0 {
        return true;
    }
    let bits = ep.ip().to_bits();
    in_ranges(bits, &ALWAYS_RESERVED) || (!allow_local_peers && in_ranges(bits, &LOCAL_RESERVED))
}

/// True for a loopback address: 127.0.0.0/8 (also v4-mapped) or `::1`.
pub fn is_loopback(ip: impl Into<IpAddr>) -> bool {
    let ip = canonical_ip(ip.into());
    ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
}

/// True when `ep` is not a peer (§6.3 item 5, §7.4 `merge_peer`): the unspecified address, a
/// reserved address ([`is_reserved`]), or ourselves. "Ourselves" is `own_endpoint`, and also any
/// loopback address (127.0.0.0/8, `::1`) on `own_endpoint`'s port, since dialing that reaches
/// this node.
pub fn not_a_peer(
    ep: impl Into<Endpoint>,
    allow_local_peers: bool,
    own_endpoint: impl Into<Endpoint>,
) -> bool {
    let ep = ep.into();
    let own = own_endpoint.into();
    let ip = *ep.ip();
    ip.is_unspecified()
        || ip == Ipv4Addr::UNSPECIFIED.to_ipv6_mapped()
        || is_reserved(ep, allow_local_peers)
        || ep == own
        || (ep.port() == own.port() && is_loopback(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// (address, reserved when local peers are disallowed, reserved when they are allowed)
    const CASES: &[(&str, bool, bool)] = &[
        // 0.0.0.0/8
        ("0.0.0.1", true, true),
        ("0.255.255.255", true, true),
        ("1.0.0.0", false, false),
        // RFC 5737
        ("192.0.1.255", false, false),
        ("192.0.2.0", true, true),
        ("192.0.2.255", true, true),
        ("192.0.3.0", false, false),
        ("198.51.99.255", false, false),
        ("198.51.100.0", true, true),
        ("198.51.100.255", true, true),
        ("198.51.101.0", false, false),
        ("203.0.112.255", false, false),
        ("203.0.113.0", true, true),
        ("203.0.113.255", true, true),
        ("203.0.114.0", false, false),
        // multicast and 240/4
        ("223.255.255.255", false, false),
        ("224.0.0.0", true, true),
        ("239.255.255.255", true, true),
        ("240.0.0.0", true, true),
        ("255.255.255.255", true, true),
        // local ranges
        ("9.255.255.255", false, false),
        ("10.0.0.0", true, false),
        ("10.255.255.255", true, false),
        ("11.0.0.0", false, false),
        ("172.15.255.255", false, false),
        ("172.16.0.0", true, false),
        ("172.31.255.255", true, false),
        ("172.32.0.0", false, false),
        ("192.167.255.255", false, false),
        ("192.168.0.0", true, false),
        ("192.168.255.255", true, false),
        ("192.169.0.0", false, false),
        ("100.63.255.255", false, false),
        ("100.64.0.0", true, false),
        ("100.127.255.255", true, false),
        ("100.128.0.0", false, false),
        // loopback is never reserved
        ("127.0.0.1", false, false),
        ("::1", false, false),
        // IPv6 discard 100::/64
        ("ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, false),
        ("100::", true, true),
        ("100::ffff:ffff:ffff:ffff", true, true),
        ("100:0:0:1::", false, false),
        // 2001:db8::/32
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false, false),
        ("2001:db8::", true, true),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true, true),
        ("2001:db9::", false, false),
        // fc00:: – fd00:ffff:… (local)
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, false),
        ("fc00::", true, false),
        ("fd00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, false),
        ("fd01::", false, false),
        // ff00::/16 only
        ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, false),
        ("ff00::", true, true),
        ("ff00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, true),
        ("ff01::", false, false),
        ("ff02::1", false, false),
        // ordinary public addresses
        ("8.8.8.8", false, false),
        ("2001::", false, false),
        ("2a01:4f8::1", false, false),
    ];

    #[test]
    fn reserved_ranges_and_boundaries() {
        for &(addr, strict, relaxed) in CASES {
            let a = ip(addr);
            let e = SocketAddr::new(a, 7075);
            assert_eq!(is_reserved(e, false), strict, "{addr} local disallowed");
            assert_eq!(is_reserved(e, true), relaxed, "{addr} local allowed");
            // IPv4 and its v4-mapped form agree.
            if let IpAddr::V4(v4) = a {
                let mapped = SocketAddrV6::new(v4.to_ipv6_mapped(), 7075, 0, 0);
                assert_eq!(is_reserved(mapped, false), strict, "{addr} mapped");
                assert_eq!(is_reserved(mapped, true), relaxed, "{addr} mapped");
            }
        }
    }

    #[test]
    fn port_zero_is_reserved() {
        assert!(is_reserved(ep("[2001::]:0"), true));
        assert!(!is_reserved(ep("[2001::]:1"), true));
        assert!(is_reserved(ep("8.8.8.8:0"), true));
    }

    #[test]
    fn reference_unit_test() {
        // nano-node network_functions.reserved_address
        assert!(!is_reserved(ep("[::1]:1"), false));
        assert!(is_reserved(ep("[::ffff:10.0.0.0]:1"), false));
        assert!(!is_reserved(ep("[::ffff:10.0.0.0]:1"), true));
    }

    #[test]
    fn not_a_peer_rules() {
        let own = ep("[::1]:7075");
        assert!(not_a_peer(ep("[::]:7075"), true, own));
        assert!(not_a_peer(ep("0.0.0.0:7075"), true, own));
        assert!(not_a_peer(ep("[::1]:7075"), true, own));
        assert!(not_a_peer(ep("127.0.0.1:7075"), true, own));
        assert!(not_a_peer(ep("127.1.2.3:7075"), true, own));
        assert!(!not_a_peer(ep("127.0.0.1:7076"), true, own));
        assert!(!not_a_peer(ep("[::1]:7076"), false, own));
        assert!(not_a_peer(ep("10.0.0.1:7075"), false, own));
        assert!(!not_a_peer(ep("10.0.0.1:7075"), true, own));
        assert!(not_a_peer(ep("8.8.8.8:0"), true, own));
        assert!(!not_a_peer(ep("8.8.8.8:7075"), false, own));
        // A public own endpoint is compared in canonical form.
        let own_pub = SocketAddrV4::new(Ipv4Addr::new(8, 8, 8, 8), 7075);
        assert!(not_a_peer(ep("[::ffff:8.8.8.8]:7075"), false, own_pub));
        assert!(!not_a_peer(ep("8.8.8.8:7076"), false, own_pub));
    }

    #[test]
    fn network_defaults() {
        assert!(!allow_local_peers_default(Network::Live));
        assert!(!allow_local_peers_default(Network::Test));
        assert!(allow_local_peers_default(Network::Beta));
        assert!(allow_local_peers_default(Network::Dev));
    }

    proptest::proptest! {
        #[test]
        fn v4_and_mapped_reserved_alike(a in proptest::prelude::any::<u32>(), port in proptest::prelude::any::<u16>(), local in proptest::prelude::any::<bool>()) {
            let v4 = Ipv4Addr::from_bits(a);
            let plain = SocketAddrV4::new(v4, port);
            let mapped = SocketAddrV6::new(v4.to_ipv6_mapped(), port, 0, 0);
            proptest::prop_assert_eq!(is_reserved(plain, local), is_reserved(mapped, local));
            // Allowing local peers only ever un-reserves.
            proptest::prop_assert!(!is_reserved(plain, true) || is_reserved(plain, false));
        }
    }
}
