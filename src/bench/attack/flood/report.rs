//! What a flood run measured: the clean and attack phases, the attackers' counters, the
//! node's counters, and the terminal and JSON forms.

use std::time::Duration;

use super::FloodCounts;
use crate::bench::loadgen::LoadReport;
use crate::node::NodeStats;

/// One phase of a flood run: the honest load with no attack, or under attack.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    /// Wall time of the phase.
    pub wall: Duration,
    /// The honest handshake load of the phase.
    pub honest: Option<LoadReport>,
    /// The node's counters at the start of the phase.
    pub node_before: Option<NodeStats>,
    /// The node's counters at its end.
    pub node_after: Option<NodeStats>,
    /// Valid votes the node verified in the phase (`votes_valid` delta: all honest).
    pub honest_votes: Option<u64>,
    /// Honest votes verified per second: over the phase, or up to the moment a voter's pool
    /// ran out if it did.
    pub honest_votes_per_sec: Option<f64>,
    /// Honest votes the voters queued in the phase.
    pub honest_votes_sent: u64,
    /// Highest RSS sampled in the phase, KiB.
    pub rss_peak_kb: u64,
    /// Highest open-descriptor count sampled in the phase.
    pub fds_peak: usize,
    /// Highest node connection count sampled in the phase.
    pub connections_peak: u64,
}

impl PhaseReport {
    /// Honest handshakes per second (0 without an honest load).
    pub fn honest_handshakes_per_sec(&self) -> f64 {
        self.honest.as_ref().map_or(0.0, |r| r.handshakes_per_sec)
    }

    /// The node counters' growth over the phase ([`node_counters`]).
    pub fn node_deltas(&self) -> Vec<(&'static str, u64)> {
        match (&self.node_before, &self.node_after) {
            (Some(a), Some(b)) => node_counter_deltas(a, b),
            _ => Vec::new(),
        }
    }
}

/// What a `slot-flood` or `vote-flood` run measured ([`AttackReport::flood`](crate::bench::attack::AttackReport::flood)).
#[derive(Debug, Clone)]
pub struct FloodReport {
    /// The honest load alone.
    pub clean: PhaseReport,
    /// The honest load under attack (measured after the ramp).
    pub attack: PhaseReport,
    /// From starting the attack to measuring: until every attack connection had opened once
    /// and the node's connection count stood still for 300 ms (slot-flood), or every attacker
    /// had a channel once (vote-flood), or the ramp timeout.
    pub ramp: Duration,
    /// The attackers' counters over the whole attack (ramp included); the gauges `held` and
    /// `channels` as the measured phase ended.
    pub attackers: FloodCounts,
    /// The honest voters' counters over both phases (vote-flood).
    pub voters: Option<FloodCounts>,
    /// Distinct attack source addresses and /24s.
    pub attack_sources: (usize, usize),
    /// Pre-signed honest votes, and the bytes their signatures take (part of the RSS).
    pub vote_pool: (usize, usize),
    /// How long signing the pool took.
    pub vote_pool_signing: Duration,
    /// Process RSS before the clean phase, KiB (after the pool was signed).
    pub rss_baseline_kb: u64,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

impl FloodReport {
    /// Honest handshakes/s under attack over clean.
    pub fn handshake_ratio(&self) -> Option<f64> {
        ratio(
            self.attack.honest_handshakes_per_sec(),
            self.clean.honest_handshakes_per_sec(),
        )
    }

    /// Honest votes/s under attack over clean.
    pub fn vote_ratio(&self) -> Option<f64> {
        ratio(
            self.attack.honest_votes_per_sec?,
            self.clean.honest_votes_per_sec?,
        )
    }

    /// RSS growth from the baseline to the attack phase's peak, KiB.
    pub fn rss_growth_kb(&self) -> i64 {
        self.attack.rss_peak_kb as i64 - self.rss_baseline_kb as i64
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let opt = |v: Option<f64>, d: usize| v.map_or("n/a".into(), |v| format!("{v:.d$}"));
        let fails = |p: &PhaseReport| {
            p.honest.as_ref().map_or(String::new(), |h| {
                let v: Vec<String> = h
                    .failures
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(f, n)| format!("{} {n}", f.as_str()))
                    .collect();
                if v.is_empty() {
                    "no failures".into()
                } else {
                    format!("failures: {}", v.join(", "))
                }
            })
        };
        let a = &self.attackers;
        let mut s = format!(
            "  clean {:.1} s, ramp {:.2} s, under attack {:.1} s\n\
             \x20 honest handshakes/s: clean {:.0} ({}), under attack {:.0} ({}); ratio {}\n",
            self.clean.wall.as_secs_f64(),
            self.ramp.as_secs_f64(),
            self.attack.wall.as_secs_f64(),
            self.clean.honest_handshakes_per_sec(),
            fails(&self.clean),
            self.attack.honest_handshakes_per_sec(),
            fails(&self.attack),
            opt(self.handshake_ratio(), 2),
        );
        if let Some(v) = &self.voters {
            s += &format!(
                "  honest votes/s verified by the node: clean {}, under attack {}; ratio {} \
                 ({} voters, {} votes sent, pool {} signed in {:.1} s{})\n",
                opt(self.clean.honest_votes_per_sec, 0),
                opt(self.attack.honest_votes_per_sec, 0),
                opt(self.vote_ratio(), 2),
                v.peers,
                v.messages_sent,
                self.vote_pool.0,
                self.vote_pool_signing.as_secs_f64(),
                if v.pools_exhausted > 0 {
                    ", a pool ran out"
                } else {
                    ""
                },
            );
        }
        s += &format!(
            "  attack: {} peers from {} address(es) in {} /24(s); opened {}, held peak {} (end {}), \
             refused at once {}, cut later {}, connect failed {}",
            a.peers,
            self.attack_sources.0,
            self.attack_sources.1,
            a.opened,
            a.held_peak,
            a.held,
            a.refused,
            a.cut,
            a.connect_failed,
        );
        if a.handshakes > 0 || a.messages_sent > 0 {
            s += &format!(
                "; channels {}, channels cut {}, reconnects {} (refused {}, got a channel {}), \
                 invalid votes sent {}",
                a.handshakes,
                a.channels_cut,
                a.reconnects,
                a.reconnects_refused,
                a.reconnect_handshakes,
                a.messages_sent,
            );
        }
        s += &format!(
            "\n  process: RSS {} KiB before, peak {} KiB clean, {} KiB under attack ({:+} KiB); \
             peak fds {} clean, {} under attack; peak node connections {} clean, {} under attack",
            self.rss_baseline_kb,
            self.clean.rss_peak_kb,
            self.attack.rss_peak_kb,
            self.rss_growth_kb(),
            self.clean.fds_peak,
            self.attack.fds_peak,
            self.clean.connections_peak,
            self.attack.connections_peak,
        );
        let d: Vec<String> = self
            .attack
            .node_deltas()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k} +{v}"))
            .collect();
        if !d.is_empty() {
            s += &format!("\n  node under attack: {}", d.join(", "));
        }
        if let Some(b) = &self.attack.node_after {
            s += &format!(", batch cap {}", b.batch.cap);
        }
        s
    }

    /// The report's fields for the bench's JSON object.
    pub fn json(&self) -> serde_json::Value {
        let phase = |p: &PhaseReport| {
            let deltas: serde_json::Map<String, serde_json::Value> = p
                .node_deltas()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect();
            serde_json::json!({
                "duration_s": p.wall.as_secs_f64(),
                "honest_handshakes": p.honest.as_ref().map(|h| h.handshakes),
                "honest_handshakes_per_sec": p.honest_handshakes_per_sec(),
                "honest_failures": p.honest.as_ref().map(|h| h.failures_total()),
                "honest_votes": p.honest_votes,
                "honest_votes_per_sec": p.honest_votes_per_sec,
                "honest_votes_sent": p.honest_votes_sent,
                "process_rss_peak_kb": p.rss_peak_kb,
                "process_fds_peak": p.fds_peak,
                "node_connections_peak": p.connections_peak,
                "node_batch_cap_end": p.node_after.as_ref().map(|s| s.batch.cap),
                "node": deltas,
            })
        };
        let a = &self.attackers;
        let counts = |c: &FloodCounts| {
            serde_json::json!({
                "peers": c.peers, "dials": c.dials, "opened": c.opened,
                "connect_failed": c.connect_failed, "held_peak": c.held_peak,
                "held_end": c.held, "channels_end": c.channels, "refused": c.refused, "cut": c.cut,
                "handshakes": c.handshakes, "channels_cut": c.channels_cut,
                "reconnects": c.reconnects, "reconnects_refused": c.reconnects_refused,
                "reconnect_handshakes": c.reconnect_handshakes, "votes_sent": c.messages_sent,
                "bytes_sent": c.bytes_sent, "pools_exhausted": c.pools_exhausted,
            })
        };
        serde_json::json!({
            "clean": phase(&self.clean),
            "under_attack": phase(&self.attack),
            "ramp_s": self.ramp.as_secs_f64(),
            "clean_honest_handshakes_per_sec": self.clean.honest_handshakes_per_sec(),
            "honest_handshakes_ratio": self.handshake_ratio(),
            "clean_honest_votes_per_sec": self.clean.honest_votes_per_sec,
            "honest_votes_per_sec": self.attack.honest_votes_per_sec,
            "honest_votes_ratio": self.vote_ratio(),
            "attack_sources": self.attack_sources.0,
            "attack_subnets": self.attack_sources.1,
            "attack_refused": a.refused,
            "attack_cut": a.cut,
            "attack_channels": a.handshakes,
            "attack_channels_cut": a.channels_cut,
            "attack_reconnects": a.reconnects,
            "attack_reconnects_refused": a.reconnects_refused,
            "attack_reconnect_handshakes": a.reconnect_handshakes,
            "attack_votes_sent": a.messages_sent,
            "attackers": counts(a),
            "honest_voters": self.voters.as_ref().map(counts),
            "vote_pool": self.vote_pool.0,
            "vote_pool_bytes": self.vote_pool.1,
            "process_rss_baseline_kb": self.rss_baseline_kb,
            "process_rss_growth_kb": self.rss_growth_kb(),
        })
    }
}

/// The node counters a flood report shows (name, value), growth taken over a phase.
pub fn node_counters(s: &NodeStats) -> Vec<(&'static str, u64)> {
    let (io, p) = (&s.io, &s.proto);
    let (h, c) = (&p.handshake, &p.closes);
    vec![
        ("accepted", io.accepted),
        ("rejected_cap", io.rejected_cap),
        ("refused", io.refused),
        ("evicted", io.evicted),
        ("rejected_max_per_ip", p.admission.max_per_ip),
        ("rejected_max_per_subnet", p.admission.max_per_subnetwork),
        ("rejected_excluded", p.admission.excluded),
        ("rejected_full", p.admission.full),
        ("evicted_unverified", p.admission.evicted_unverified),
        ("evicted_channels", p.admission.evicted_channels),
        (
            "oversize_before_handshake",
            p.admission.oversize_before_handshake,
        ),
        ("closed_deadline", io.closed_deadline),
        ("closed_peer", io.closed_peer),
        ("connects_ok", io.connects_ok),
        ("connects_failed", io.connects_failed),
        ("handshake_ok", h.ok),
        ("handshake_invalid_signature", h.invalid_signature),
        ("handshake_cookie_limit", h.cookie_limit),
        ("handshake_max_per_ip", h.max_per_ip),
        ("handshake_max_per_subnet", h.max_per_subnet),
        ("handshake_excluded", h.excluded),
        ("handshake_channel_limit", h.channel_limit),
        ("close_timeout", c.timeout),
        ("close_excluded", c.excluded),
        ("close_header_error", c.header_error),
        ("votes_valid", p.votes_valid),
        ("invalid_vote_signature", p.invalid_vote_signature),
        ("duplicate_confirm_ack", p.duplicate_confirm_ack),
        ("verify_overflow", p.verify_overflow),
        ("held_dropped", p.held_dropped),
        ("batch_cap_shrinks", s.batch.cap_shrinks),
        ("verify_alone", s.batch.alone),
        ("cut_invalid_signatures", p.misbehaviour.invalid_signatures),
        ("cut_verify_work", p.misbehaviour.verify_work),
        ("events_dropped", s.queue.events_dropped),
    ]
}

/// Growth of each [`node_counters`] entry from `a` to `b`.
pub fn node_counter_deltas(a: &NodeStats, b: &NodeStats) -> Vec<(&'static str, u64)> {
    node_counters(a)
        .into_iter()
        .zip(node_counters(b))
        .map(|((k, x), (_, y))| (k, y.saturating_sub(x)))
        .collect()
}
