//! What an attack run measured ([`AttackReport`]): the attack connections' fate, the honest
//! load beside them, the samples, the node's counters before and after, and its one-line
//! summary.

use std::time::Duration;

use super::flood::report::FloodReport;
use super::kind::AttackKind;
use super::soak::SoakSample;
use crate::bench::loadgen::{BadSigCounts, LoadReport};
use crate::node::NodeStats;

/// The result of an attack run.
#[derive(Debug, Clone)]
pub struct AttackReport {
    /// The attack that ran ([`AttackConfig::kind`](super::AttackConfig::kind)).
    pub kind: AttackKind,
    /// Wall time of the run.
    pub wall: Duration,
    /// Attack connections established during the window.
    pub opened: u64,
    /// Attack dials that failed (refused, connection cap, timeout).
    pub connect_failed: u64,
    /// Most attack connections open at once.
    pub held_peak: u64,
    /// Attack connections open at the end.
    pub held_end: u64,
    /// Attack connections the node closed while the attack ran.
    pub cut_by_node: u64,
    /// Attack bytes handed to the io layer (queued, not necessarily on the wire yet); 0 for
    /// `bad-sig`, whose peers are counted in `bad_sig`.
    pub bytes_sent: u64,
    /// `poison`: handshakes completed by the attackers.
    pub poison_handshakes: u64,
    /// `poison`: addresses advertised (all slots of all keepalives sent).
    pub poison_addresses: u64,
    /// The honest load's result (for `bad-sig`: the mixed load's; its handshakes are the good
    /// peers').
    pub honest: Option<LoadReport>,
    /// `bad-sig`: what the bad and good peers sent and saw.
    pub bad_sig: Option<BadSigCounts>,
    /// Samples over the run (first before the attack, last after it).
    pub samples: Vec<SoakSample>,
    /// The node's counters before the attack (when given the node).
    pub node_before: Option<NodeStats>,
    /// The node's counters after the attack.
    pub node_after: Option<NodeStats>,
    /// `slot-flood` / `vote-flood`: the clean and attack phases and the attackers' counters.
    pub flood: Option<Box<FloodReport>>,
}

impl AttackReport {
    /// Highest open-descriptor count sampled.
    pub fn fds_peak(&self) -> usize {
        self.samples.iter().map(|s| s.fds).max().unwrap_or(0)
    }

    /// Highest RSS sampled, KiB.
    pub fn rss_peak_kb(&self) -> u64 {
        self.samples.iter().map(|s| s.rss_kb).max().unwrap_or(0)
    }

    /// Highest node connection count sampled.
    pub fn connections_peak(&self) -> u64 {
        self.samples
            .iter()
            .map(|s| s.connections)
            .max()
            .unwrap_or(0)
    }

    /// Honest handshakes per second (0 without an honest load).
    pub fn honest_per_sec(&self) -> f64 {
        self.honest.as_ref().map_or(0.0, |r| r.handshakes_per_sec)
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "attack {}: {:.1} s, opened {}, held peak {}, cut by node {}, connect failed {}, \
             honest {:.0} handshakes/s, peak node connections {}, peak fds {}, peak RSS {} KiB",
            self.kind,
            self.wall.as_secs_f64(),
            self.opened,
            self.held_peak,
            self.cut_by_node,
            self.connect_failed,
            self.honest_per_sec(),
            self.connections_peak(),
            self.fds_peak(),
            self.rss_peak_kb(),
        );
        if let Some(b) = &self.bad_sig {
            s += &format!(
                ", bad sent {} rejected {} accepted {}, good sent {}",
                b.bad_sent, b.bad_rejected, b.bad_accepted, b.good_sent
            );
        }
        if let (Some(a), Some(b)) = (&self.node_before, &self.node_after) {
            let h = |s: &NodeStats| s.proto.handshake;
            s += &format!(
                ", node: handshakes ok +{}, invalid_signature +{}, header errors +{}, \
                 timeouts +{}, cookie_limit +{}, batch cap {} (shrinks +{})",
                h(b).ok - h(a).ok,
                h(b).invalid_signature - h(a).invalid_signature,
                b.proto.closes.header_error - a.proto.closes.header_error,
                (b.proto.closes.timeout + b.io.closed_deadline)
                    - (a.proto.closes.timeout + a.io.closed_deadline),
                h(b).cookie_limit - h(a).cookie_limit,
                b.batch.cap,
                b.batch.cap_shrinks - a.batch.cap_shrinks,
            );
        }
        s
    }
}
