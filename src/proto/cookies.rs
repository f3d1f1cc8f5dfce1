//! Syn cookies (§6.1): the random challenge each side of a `node_id_handshake` asks the other
//! to sign.
//!
//! One outstanding cookie per remote endpoint (ip **and** port), at most `max_per_ip` per IP,
//! single use (taken and erased when the response arrives), dropped after the cutoff (5 s) by
//! [`SynCookies::purge`]. A global cap bounds memory whatever the number of source addresses:
//! when full, [`SynCookies::assign`] refuses until a purge or a take frees room.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::Ipv6Addr;

use rand::RngCore;

use crate::endpoint::Endpoint;
use crate::types::Cookie;

/// Default cookie lifetime (`syn_cookie_cutoff`, all versions).
pub const SYN_COOKIE_CUTOFF_MS: u64 = 5_000;

/// Default global cap on outstanding cookies.
pub const DEFAULT_MAX_COOKIES: usize = 65_536;

/// Why no cookie could be assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// The endpoint already has an outstanding cookie.
    #[error("endpoint already has an outstanding cookie")]
    Outstanding,
    /// The IP reached `max_cookies_per_ip`.
    #[error("too many outstanding cookies for this IP")]
    PerIpLimit,
    /// The global cap is reached.
    #[error("too many outstanding cookies in total")]
    GlobalLimit,
}

#[derive(Debug, Clone, Copy)]
struct Entry_ {
    cookie: Cookie,
    created_ms: u64,
}

/// The syn-cookie table of one shard (each shard owns the cookies of its connections).
#[derive(Debug)]
pub struct SynCookies {
    by_endpoint: HashMap<Endpoint, Entry_>,
    per_ip: HashMap<Ipv6Addr, u32>,
    max_per_ip: u32,
    max_total: usize,
}

impl SynCookies {
    /// A table allowing `max_per_ip` cookies per IP and `max_total` in all.
    pub fn new(max_per_ip: u32, max_total: usize) -> SynCookies {
        SynCookies {
            by_endpoint: HashMap::new(),
            per_ip: HashMap::new(),
            max_per_ip,
            max_total,
        }
    }

    /// Creates and stores a fresh random cookie for `endpoint`.
    pub fn assign(
        &mut self,
        endpoint: Endpoint,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> Result<Cookie, CookieError> {
        if self.by_endpoint.contains_key(&endpoint) {
            return Err(CookieError::Outstanding);
        }
        let count = self.per_ip.get(endpoint.ip()).copied().unwrap_or(0);
        if count >= self.max_per_ip {
            return Err(CookieError::PerIpLimit);
        }
        if self.by_endpoint.len() >= self.max_total {
            return Err(CookieError::GlobalLimit);
        }
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let cookie = Cookie(bytes);
        self.by_endpoint.insert(
            endpoint,
            Entry_ {
                cookie,
                created_ms: now_ms,
            },
        );
        *self.per_ip.entry(*endpoint.ip()).or_insert(0) += 1;
        Ok(cookie)
    }

    /// Takes (and erases) the cookie of `endpoint`: a cookie is good for one response only.
    pub fn take(&mut self, endpoint: Endpoint) -> Option<Cookie> {
        let entry = self.by_endpoint.remove(&endpoint)?;
        self.release_ip(*endpoint.ip());
        Some(entry.cookie)
    }

    /// True when `endpoint` has an outstanding cookie.
    pub fn contains(&self, endpoint: Endpoint) -> bool {
        self.by_endpoint.contains_key(&endpoint)
    }

    /// Drops cookies created more than `cutoff_ms` before `now_ms`; returns how many.
    pub fn purge(&mut self, now_ms: u64, cutoff_ms: u64) -> usize {
        let before = self.by_endpoint.len();
        let per_ip = &mut self.per_ip;
        self.by_endpoint.retain(|ep, e| {
            let keep = now_ms.saturating_sub(e.created_ms) <= cutoff_ms;
            if !keep && let Entry::Occupied(mut o) = per_ip.entry(*ep.ip()) {
                *o.get_mut() -= 1;
                if *o.get() == 0 {
                    o.remove();
                }
            }
            keep
        });
        before - self.by_endpoint.len()
    }

    /// Outstanding cookies.
    pub fn len(&self) -> usize {
        self.by_endpoint.len()
    }

    /// True when no cookie is outstanding.
    pub fn is_empty(&self) -> bool {
        self.by_endpoint.is_empty()
    }

    fn release_ip(&mut self, ip: Ipv6Addr) {
        if let Entry::Occupied(mut o) = self.per_ip.entry(ip) {
            *o.get_mut() -= 1;
            if *o.get() == 0 {
                o.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn one_cookie_per_endpoint_single_use() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut c = SynCookies::new(4, 100);
        let a = ep("127.0.0.1:1000");
        let cookie = c.assign(a, 0, &mut rng).unwrap();
        assert_eq!(c.assign(a, 0, &mut rng), Err(CookieError::Outstanding));
        assert_eq!(c.take(a), Some(cookie));
        assert_eq!(c.take(a), None, "a cookie is single use");
        assert!(c.assign(a, 0, &mut rng).is_ok());
    }

    #[test]
    fn per_ip_limit_counts_ports_and_frees_on_take() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut c = SynCookies::new(2, 100);
        c.assign(ep("10.0.0.1:1"), 0, &mut rng).unwrap();
        c.assign(ep("10.0.0.1:2"), 0, &mut rng).unwrap();
        assert_eq!(
            c.assign(ep("10.0.0.1:3"), 0, &mut rng),
            Err(CookieError::PerIpLimit)
        );
        // v4-mapped form is the same IP
        assert_eq!(
            c.assign(ep("[::ffff:10.0.0.1]:4"), 0, &mut rng),
            Err(CookieError::PerIpLimit)
        );
        assert!(c.assign(ep("10.0.0.2:3"), 0, &mut rng).is_ok());
        assert!(c.take(ep("[::ffff:10.0.0.1]:1")).is_some());
        assert!(c.assign(ep("10.0.0.1:3"), 0, &mut rng).is_ok());
    }

    #[test]
    fn global_cap_bounds_memory() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut c = SynCookies::new(4, 10);
        for i in 0..10u16 {
            c.assign(
                Endpoint::from(std::net::SocketAddr::from(([127, 0, 1, i as u8], 1))),
                0,
                &mut rng,
            )
            .unwrap();
        }
        assert_eq!(
            c.assign(ep("127.0.2.1:1"), 0, &mut rng),
            Err(CookieError::GlobalLimit)
        );
        assert_eq!(c.len(), 10);
    }

    #[test]
    fn purge_drops_only_expired_and_releases_ip_counts() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut c = SynCookies::new(1, 100);
        c.assign(ep("127.0.0.1:1"), 0, &mut rng).unwrap();
        c.assign(ep("127.0.0.2:1"), 4_000, &mut rng).unwrap();
        assert_eq!(c.purge(5_000, SYN_COOKIE_CUTOFF_MS), 0);
        assert_eq!(c.purge(5_001, SYN_COOKIE_CUTOFF_MS), 1);
        assert!(!c.contains(ep("127.0.0.1:1")));
        assert!(c.contains(ep("127.0.0.2:1")));
        // the IP count was released with the purged cookie
        assert!(c.assign(ep("127.0.0.1:2"), 5_001, &mut rng).is_ok());
    }

    #[test]
    fn cookies_are_random() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut c = SynCookies::new(4, 100);
        let a = c.assign(ep("127.0.0.1:1"), 0, &mut rng).unwrap();
        let b = c.assign(ep("127.0.0.1:2"), 0, &mut rng).unwrap();
        assert_ne!(a, b);
        assert!(!a.is_zero());
    }
}
