//! The settings of an attack run ([`AttackConfig`]): the kind, how many connections from which
//! sources, how long, the honest load beside it, and the floods' phases and votes.

use std::net::SocketAddr;
use std::time::Duration;

use super::kind::AttackKind;
use crate::bench::loadgen::LoadConfig;
use crate::types::Network;

/// Settings of an attack run.
#[derive(Debug, Clone)]
pub struct AttackConfig {
    /// The node attacked.
    pub target: SocketAddr,
    /// The target's network (default dev): every attack message is framed for it, and the
    /// honest load runs on it whatever its own `network` says.
    pub network: Network,
    /// What the attack connections do; see [`AttackKind`].
    pub kind: AttackKind,
    /// Attack connections open (or in flight) at once; cut ones are reopened.
    pub connections: usize,
    /// How long the attack (and the honest load) runs.
    pub duration: Duration,
    /// `drip`: one byte per connection per interval; `poison`: one keepalive per interval.
    pub drip_interval: Duration,
    /// Distinct 127.x.y.z source addresses of the attack connections (0: the kernel picks).
    pub source_ips: u32,
    /// First source index ([`source_ip`](crate::bench::loadgen::source_ip)); keep it away from
    /// the honest load's (0 onwards).
    pub source_offset: u32,
    /// `poison`: bogus (unused loopback) addresses advertised over the run, in all.
    pub poison_bogus: usize,
    /// The honest load run at the same time (its duration is replaced by `duration`), or none.
    /// For `bad-sig` it is the load (with its `bad_sig_pct` set); none means a default one.
    pub honest: Option<LoadConfig>,
    /// How often the process and the node are sampled.
    pub sample_interval: Duration,
    /// Floods: the clean phase (honest load alone) before the attack.
    pub clean_duration: Duration,
    /// Floods: longest wait from starting the attack to measuring under it.
    pub ramp_timeout: Duration,
    /// Floods: a connection the node closes is reopened this long after.
    pub reopen_delay: Duration,
    /// `vote-flood`: hashes per vote (attackers' and honest).
    pub vote_hashes: usize,
    /// `vote-flood`: honest peers streaming valid votes.
    pub honest_voters: usize,
    /// `vote-flood`: valid votes per second over all honest voters (0: each as fast as the
    /// node reads, from a pool of `vote_pool`).
    pub honest_vote_rate: u32,
    /// `vote-flood` with `honest_vote_rate` 0: valid votes signed before the run.
    pub vote_pool: usize,
}

impl AttackConfig {
    /// Defaults: 300 connections for 10 s, drip every 500 ms, 4096 sources from index 1 000 000,
    /// 5000 bogus poison addresses, an honest load of 8 connections, samples every second;
    /// floods: a 5 s clean phase, ramp up to 2 s, reopen after 100 ms, 4 honest voters at
    /// 16 000 votes/s in all (4000 per channel), 12 hashes per vote.
    pub fn new(target: SocketAddr, kind: AttackKind) -> AttackConfig {
        let mut honest = LoadConfig::new(target);
        honest.connections = 8;
        AttackConfig {
            target,
            network: Network::Dev,
            kind,
            connections: 300,
            duration: Duration::from_secs(10),
            drip_interval: Duration::from_millis(500),
            source_ips: 4096,
            source_offset: 1_000_000,
            poison_bogus: 5000,
            honest: Some(honest),
            sample_interval: Duration::from_secs(1),
            clean_duration: Duration::from_secs(5),
            ramp_timeout: Duration::from_secs(2),
            reopen_delay: Duration::from_millis(100),
            vote_hashes: 12,
            honest_voters: 4,
            honest_vote_rate: 16_000,
            vote_pool: 200_000,
        }
    }
}
