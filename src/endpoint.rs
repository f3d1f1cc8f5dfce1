//! A peer's TCP endpoint, in the one canonical form every layer above the sockets uses, and
//! the "same IP" and subnetwork keys that per-IP and per-subnet limits count by (§7.1, §7.2).
//!
//! The form is decided here, once: an IPv6 socket address whose IPv4 addresses are v4-mapped
//! (`::ffff:a.b.c.d`) and whose flow info and scope id are zero. An [`Endpoint`] is made from
//! whatever the I/O layer or the operator gives (IPv4, IPv6, v4-mapped) with `From`/`FromStr`,
//! and turned back into a plain [`SocketAddr`] (IPv4 for v4-mapped addresses) only where a
//! socket needs it ([`Endpoint::to_socket_addr`]). Two forms of the same peer are equal as
//! endpoints. This module imports nothing from the crate.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

/// The canonical IPv6 form of an address: IPv4 becomes v4-mapped, IPv6 is unchanged.
pub const fn canonical_ip(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// A peer's endpoint in canonical form (see the module docs). Displays as the IPv6 socket
/// address it is (`[::ffff:127.0.0.1]:7075`), as nano-node prints endpoints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint(SocketAddrV6);

impl Endpoint {
    /// The endpoint of `ip` and `port`.
    pub const fn new(ip: IpAddr, port: u16) -> Endpoint {
        Endpoint(SocketAddrV6::new(canonical_ip(ip), port, 0, 0))
    }

    /// `[::]:0`, the empty slot of a keepalive.
    pub const UNSPECIFIED: Endpoint = Endpoint(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0));

    /// `[::1]:port`: where this node is reached from itself.
    pub const fn localhost(port: u16) -> Endpoint {
        Endpoint(SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0))
    }

    /// The address (v4-mapped for IPv4).
    pub const fn ip(&self) -> &Ipv6Addr {
        self.0.ip()
    }

    /// The port.
    pub const fn port(&self) -> u16 {
        self.0.port()
    }

    /// The same address on another port.
    pub const fn with_port(self, port: u16) -> Endpoint {
        Endpoint(SocketAddrV6::new(*self.0.ip(), port, 0, 0))
    }

    /// The canonical IPv6 socket address (what the wire's keepalive slots carry).
    pub const fn to_v6(self) -> SocketAddrV6 {
        self.0
    }

    /// The plain form a socket takes: v4-mapped addresses become [`SocketAddr::V4`].
    pub fn to_socket_addr(self) -> SocketAddr {
        match self.0.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), self.0.port()),
            None => SocketAddr::V6(self.0),
        }
    }

    /// Its "same IP" key.
    pub fn ip_key(&self) -> IpKey {
        IpKey::of(*self.ip())
    }

    /// Its subnetwork key.
    pub fn subnet_key(&self) -> SubnetKey {
        SubnetKey::of(*self.ip())
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(ep: SocketAddr) -> Endpoint {
        Endpoint::new(ep.ip(), ep.port())
    }
}

impl From<SocketAddrV6> for Endpoint {
    fn from(ep: SocketAddrV6) -> Endpoint {
        Endpoint::new(IpAddr::V6(*ep.ip()), ep.port())
    }
}

impl From<SocketAddrV4> for Endpoint {
    fn from(ep: SocketAddrV4) -> Endpoint {
        Endpoint::new(IpAddr::V4(*ep.ip()), ep.port())
    }
}

impl From<Endpoint> for SocketAddr {
    fn from(ep: Endpoint) -> SocketAddr {
        ep.to_socket_addr()
    }
}

impl From<Endpoint> for SocketAddrV6 {
    fn from(ep: Endpoint) -> SocketAddrV6 {
        ep.0
    }
}

impl FromStr for Endpoint {
    type Err = std::net::AddrParseError;

    /// Any socket address text: `1.2.3.4:7075`, `[::1]:7075`, `[::ffff:1.2.3.4]:7075`.
    fn from_str(s: &str) -> Result<Endpoint, Self::Err> {
        s.parse::<SocketAddr>().map(Endpoint::from)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

fn v4_mapped_bits(bits: u128) -> bool {
    bits >> 32 == 0xffff
}

/// The "same IP" key (§6.3 item 5, §7.2): the IPv4 address, or the IPv6 /48 network. Two
/// endpoints are from the same IP when their keys are equal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey(u128);

impl IpKey {
    /// The key of an address (IPv4, v4-mapped or IPv6).
    pub fn of(ip: impl Into<IpAddr>) -> IpKey {
        let bits = canonical_ip(ip.into()).to_bits();
        if v4_mapped_bits(bits) {
            IpKey(bits)
        } else {
            IpKey(bits & !((1u128 << 80) - 1))
        }
    }

    /// The network address: the v4-mapped IPv4 address or the /48 prefix with zero host bits.
    pub const fn network(self) -> Ipv6Addr {
        Ipv6Addr::from_bits(self.0)
    }

    /// The key as a 128-bit number (the network address).
    pub const fn to_bits(self) -> u128 {
        self.0
    }
}

/// The subnetwork key (§7.2): the IPv4 /24 or the IPv6 /32 network.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubnetKey(u128);

impl SubnetKey {
    /// The key of an address (IPv4, v4-mapped or IPv6).
    pub fn of(ip: impl Into<IpAddr>) -> SubnetKey {
        let bits = canonical_ip(ip.into()).to_bits();
        if v4_mapped_bits(bits) {
            SubnetKey(bits & !0xff)
        } else {
            SubnetKey(bits & !((1u128 << 96) - 1))
        }
    }

    /// The subnet of an IP key (an IP key's network lies inside exactly one subnet).
    pub fn of_ip_key(key: IpKey) -> SubnetKey {
        SubnetKey::of(key.network())
    }

    /// The network address with zero host bits, v4-mapped for IPv4.
    pub const fn network(self) -> Ipv6Addr {
        Ipv6Addr::from_bits(self.0)
    }

    /// The key as a 128-bit number (the network address).
    pub const fn to_bits(self) -> u128 {
        self.0
    }
}

fn fmt_key(bits: u128, v4_len: u8, v6_len: u8, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let ip = Ipv6Addr::from_bits(bits);
    match ip.to_ipv4_mapped() {
        Some(v4) if v4_len == 32 => write!(f, "{v4}"),
        Some(v4) => write!(f, "{v4}/{v4_len}"),
        None => write!(f, "{ip}/{v6_len}"),
    }
}

impl fmt::Display for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_key(self.0, 32, 48, f)
    }
}

impl fmt::Debug for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpKey({self})")
    }
}

impl fmt::Display for SubnetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_key(self.0, 24, 32, f)
    }
}

impl fmt::Debug for SubnetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubnetKey({self})")
    }
}

/// True when both addresses have the same [`IpKey`] (IPv4 address or IPv6 /48).
pub fn is_same_ip(a: impl Into<IpAddr>, b: impl Into<IpAddr>) -> bool {
    IpKey::of(a) == IpKey::of(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_one_peer_is_one_endpoint() {
        let plain: Endpoint = "127.0.0.1:7075".parse().unwrap();
        let mapped: Endpoint = "[::ffff:127.0.0.1]:7075".parse().unwrap();
        let scoped = Endpoint::from(SocketAddrV6::new(
            "::ffff:127.0.0.1".parse().unwrap(),
            7075,
            9,
            3,
        ));
        assert_eq!(plain, mapped);
        assert_eq!(plain, scoped);
        assert_eq!(plain.to_string(), "[::ffff:127.0.0.1]:7075");
        assert_eq!(
            plain.to_socket_addr(),
            "127.0.0.1:7075".parse::<SocketAddr>().unwrap()
        );
        let v6: Endpoint = "[::1]:1".parse().unwrap();
        assert_eq!(
            v6.to_socket_addr(),
            "[::1]:1".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(Endpoint::from(v6.to_socket_addr()), v6);
        assert_eq!(plain.with_port(1).port(), 1);
        assert!("nonsense".parse::<Endpoint>().is_err());
    }

    #[test]
    fn keys_group_ipv4_by_address_and_subnet_and_ipv6_by_prefix() {
        let a: Endpoint = "10.1.2.3:1".parse().unwrap();
        let b: Endpoint = "10.1.2.4:2".parse().unwrap();
        assert_ne!(a.ip_key(), b.ip_key());
        assert_eq!(a.subnet_key(), b.subnet_key());
        assert_eq!(a.ip_key().to_string(), "10.1.2.3");
        assert_eq!(a.subnet_key().to_string(), "10.1.2.0/24");
        let c: Endpoint = "[2001:db8:1:2::1]:1".parse().unwrap();
        let d: Endpoint = "[2001:db8:1:3::1]:1".parse().unwrap();
        assert_eq!(c.ip_key(), d.ip_key(), "same /48");
        assert_eq!(c.subnet_key().to_string(), "2001:db8::/32");
        assert_eq!(SubnetKey::of_ip_key(a.ip_key()), a.subnet_key());
    }

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn canonical_forms() {
        let c = Endpoint::from(ep("1.2.3.4:5"));
        assert_eq!(c.to_string(), "[::ffff:1.2.3.4]:5");
        assert_eq!(Endpoint::from(c.to_v6()), c);
        let scoped = SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 7, 3);
        let cs = Endpoint::from(scoped).to_v6();
        assert_eq!((cs.flowinfo(), cs.scope_id()), (0, 0));
        assert_eq!(c.to_socket_addr(), ep("1.2.3.4:5"));
        assert_eq!(Endpoint::from(cs).to_socket_addr(), ep("[fe80::1]:9"));
    }

    #[test]
    fn same_ip_key() {
        assert_eq!(
            IpKey::of(ip("192.168.1.1")),
            IpKey::of(ip("::ffff:192.168.1.1"))
        );
        assert_ne!(IpKey::of(ip("192.168.1.1")), IpKey::of(ip("192.168.1.2")));
        assert_eq!(
            IpKey::of(ip("2001:0db8:85a3:0000:0000:8a2e:0370:7334")).network(),
            "2001:db8:85a3::".parse::<Ipv6Addr>().unwrap()
        );
        assert!(is_same_ip(ip("2001:db8::1"), ip("2001:db8::2")));
        assert!(is_same_ip(ip("2001:db8:0:ffff::1"), ip("2001:db8::2")));
        assert!(!is_same_ip(ip("2001:db8::1"), ip("2001:db8:1::1")));
        assert!(!is_same_ip(ip("192.168.1.1"), ip("::1")));
        assert!(!is_same_ip(ip("10.0.0.1"), ip("::ffff:192.168.1.1")));
        // A v4-mapped key never equals a /48 key.
        assert_ne!(IpKey::of(ip("0.0.0.0")), IpKey::of(ip("::")));
        assert_eq!(IpKey::of(ip("1.2.3.4")).to_string(), "1.2.3.4");
        assert_eq!(
            IpKey::of(ip("2001:db8:1:2::3")).to_string(),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn subnet_key() {
        assert_eq!(
            SubnetKey::of(ip("192.168.1.100")).network().to_string(),
            "::ffff:192.168.1.0"
        );
        assert_eq!(
            SubnetKey::of(ip("192.168.1.1")),
            SubnetKey::of(ip("192.168.1.255"))
        );
        assert_ne!(
            SubnetKey::of(ip("192.168.1.1")),
            SubnetKey::of(ip("192.168.2.1"))
        );
        assert_eq!(
            SubnetKey::of(ip("2001:db8:abcd:0012::0"))
                .network()
                .to_string(),
            "2001:db8::"
        );
        assert_eq!(
            SubnetKey::of(ip("a719:0f12:536e:d88a:1331:ba53:4598:04e5")).network(),
            "a719:f12::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            SubnetKey::of(ip("2001:db8:ffff::1")),
            SubnetKey::of(ip("2001:db8::1"))
        );
        assert_ne!(
            SubnetKey::of(ip("2001:db8::1")),
            SubnetKey::of(ip("2001:db9::1"))
        );
        assert_eq!(SubnetKey::of(ip("10.1.2.3")).to_string(), "10.1.2.0/24");
        assert_eq!(
            SubnetKey::of(ip("2001:db8:5::")).to_string(),
            "2001:db8::/32"
        );
        let k = IpKey::of(ip("2001:db8:77::9"));
        assert_eq!(SubnetKey::of_ip_key(k), SubnetKey::of(ip("2001:db8:1::")));
    }

    proptest::proptest! {
        #[test]
        fn v4_and_mapped_agree(a in proptest::prelude::any::<u32>(), port in proptest::prelude::any::<u16>()) {
            let v4 = std::net::Ipv4Addr::from_bits(a);
            let plain = SocketAddrV4::new(v4, port);
            let mapped = SocketAddrV6::new(v4.to_ipv6_mapped(), port, 0, 0);
            proptest::prop_assert_eq!(Endpoint::from(plain), Endpoint::from(mapped));
            proptest::prop_assert_eq!(Endpoint::from(mapped).to_socket_addr(), SocketAddr::V4(plain));
            proptest::prop_assert_eq!(IpKey::of(v4), IpKey::of(v4.to_ipv6_mapped()));
            proptest::prop_assert_eq!(SubnetKey::of(v4), SubnetKey::of(v4.to_ipv6_mapped()));
        }

        #[test]
        fn ip_key_inside_subnet_key(bits in proptest::prelude::any::<u128>()) {
            let a = Ipv6Addr::from_bits(bits);
            let k = IpKey::of(a);
            proptest::prop_assert_eq!(SubnetKey::of_ip_key(k), SubnetKey::of(a));
            proptest::prop_assert_eq!(IpKey::of(k.network()), k);
        }
    }
}
