//! What a load run is asked to do ([`LoadConfig`]), what is wrong with a request
//! ([`LoadError`]), and the 127.0.0.0/8 source address of each simulated peer ([`source_ip`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::io::IoError;
use crate::types::Network;

/// What went wrong starting the load generator.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A configuration value is out of range.
    #[error("invalid load configuration: {0}")]
    Config(&'static str),
    /// A load thread (io_uring shard) could not start.
    #[error("load thread failed to start: {0}")]
    Start(#[from] IoError),
}

/// Settings of a load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The node to drive.
    pub target: SocketAddr,
    /// The network the node is on (header bytes and genesis hash).
    pub network: Network,
    /// Handshakes in flight at once, over all load threads.
    pub connections: usize,
    /// Load threads (one io_uring each).
    pub threads: usize,
    /// How long to generate load.
    pub duration: Duration,
    /// Keep each channel open after the handshake (until the run ends) instead of closing.
    pub hold: bool,
    /// Most channels held at once with `hold`, over all threads; beyond, peers close.
    pub hold_limit: usize,
    /// Verify the node's handshake signatures (batched). Off: trust them (less load CPU).
    pub verify_node: bool,
    /// Distinct source addresses in 127.0.0.0/8 (see [`source_ip`]); 0 lets the kernel choose.
    /// Only used when the target is an IPv4 loopback address.
    pub source_ips: u32,
    /// Node keys generated up front, over all threads (at least one more per thread than the
    /// thread's concurrency, so concurrent peers never share a key).
    pub key_pool: usize,
    /// Verification batch size of the node's signatures.
    pub verify_batch: usize,
    /// Time a dial may take to connect; past it the dial counts as
    /// [`Failure::ConnectTimeout`](super::Failure::ConnectTimeout).
    pub connect_timeout: Duration,
    /// Handshake timeout, from the established connection to completion.
    pub handshake_timeout: Duration,
    /// Cores to pin load threads to (thread `i` on `cores[i % len]`); empty: no pinning.
    pub cores: Vec<usize>,
    /// How often the progress callback runs.
    pub progress_interval: Duration,
    /// Share (percent, 0–100) of simulated peers whose handshake response carries a wrong
    /// signature (a bad-signature flood, `bench --attack bad-sig:PCT`). Exactly `pct` of every
    /// 100 dials, evenly spread. Bad peers are not counted as handshakes or failures but in
    /// [`BadSigCounts`](super::BadSigCounts).
    pub bad_sig_pct: u8,
}

impl LoadConfig {
    /// Defaults for driving `target` on the dev network: 64 connections, one thread, 10 s,
    /// verification on, 65 536 source addresses.
    pub fn new(target: SocketAddr) -> LoadConfig {
        LoadConfig {
            target,
            network: Network::Dev,
            connections: 64,
            threads: 1,
            duration: Duration::from_secs(10),
            hold: false,
            hold_limit: 10_000,
            verify_node: true,
            source_ips: 65_536,
            key_pool: 4096,
            verify_batch: 64,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            cores: Vec::new(),
            progress_interval: Duration::from_millis(200),
            bad_sig_pct: 0,
        }
    }

    /// Checks the ranges (connections, threads, batch size, duration, bad-signature share).
    pub(super) fn validate(&self) -> Result<(), LoadError> {
        if self.connections == 0 {
            return Err(LoadError::Config("connections must be at least 1"));
        }
        if self.threads == 0 || self.threads > 1024 {
            return Err(LoadError::Config("threads must be in 1..=1024"));
        }
        if self.connections > 1 << 20 {
            return Err(LoadError::Config("connections must be at most 1048576"));
        }
        if self.verify_batch == 0 {
            return Err(LoadError::Config("verify_batch must be at least 1"));
        }
        if self.duration.is_zero() {
            return Err(LoadError::Config("duration must be positive"));
        }
        if self.bad_sig_pct > 100 {
            return Err(LoadError::Config("bad_sig_pct must be at most 100"));
        }
        Ok(())
    }
}

/// Source address number `index` in 127.0.0.0/8: consecutive indices differ in the second
/// octet, so they fall in different /24 (and /16) subnets; 127.0.x.x (thus 127.0.0.1) and
/// host parts .0 / .255 are never used. 254 · 256 · 254 distinct addresses, then it wraps.
pub fn source_ip(index: u32) -> Ipv4Addr {
    let i = index % (254 * 256 * 254);
    let b1 = 1 + (i % 254);
    let b2 = (i / 254) % 256;
    let b3 = 1 + (i / (254 * 256)) % 254;
    Ipv4Addr::new(127, b1 as u8, b2 as u8, b3 as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ips_spread_over_subnets() {
        let ips: Vec<Ipv4Addr> = (0..1000).map(source_ip).collect();
        let distinct: std::collections::HashSet<_> = ips.iter().collect();
        assert_eq!(distinct.len(), 1000);
        for w in ips.windows(2) {
            assert_ne!(w[0].octets()[..3], w[1].octets()[..3], "same /24");
        }
        for ip in (0..200_000).step_by(7).map(source_ip) {
            let o = ip.octets();
            assert_eq!(o[0], 127);
            assert_ne!(o[1], 0);
            assert!(o[3] != 0 && o[3] != 255, "{ip}");
        }
        assert_eq!(source_ip(0), source_ip(254 * 256 * 254));
    }
}
