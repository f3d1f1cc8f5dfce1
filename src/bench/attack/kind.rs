//! The attack kinds ([`AttackKind`]) and their text form, as `--attack KIND` takes it:
//! `bad-sig:PCT`, `silent`, `query-only`, `drip`, `garbage`, `poison`,
//! `slot-flood:ip|subnet|many`, `vote-flood`.

use std::str::FromStr;

use super::error::AttackError;
use crate::bench::stream::FloodSource;

/// One kind of hostile traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttackKind {
    /// This percentage (0–100) of handshake responses carry a wrong signature.
    BadSig(u8),
    /// Connect and never speak.
    Silent,
    /// Send a handshake query, never answer.
    QueryOnly,
    /// Send a query one byte at a time.
    Drip,
    /// Malformed traffic, cycling through [`GARBAGE_VARIANTS`](super::GARBAGE_VARIANTS)
    /// variants.
    Garbage,
    /// Handshake, then keepalives full of addresses that must not be dialed.
    Poison,
    /// More silent unverified connections than the node's cap, from one address, one /24 or
    /// many /24s ([`super::flood`](crate::bench::attack::flood)).
    SlotFlood(FloodSource),
    /// Authenticated peers streaming votes with wrong signatures while honest peers stream
    /// valid ones ([`super::flood`](crate::bench::attack::flood)).
    VoteFlood,
}

impl std::fmt::Display for AttackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttackKind::BadSig(p) => write!(f, "bad-sig:{p}"),
            AttackKind::Silent => f.write_str("silent"),
            AttackKind::QueryOnly => f.write_str("query-only"),
            AttackKind::Drip => f.write_str("drip"),
            AttackKind::Garbage => f.write_str("garbage"),
            AttackKind::Poison => f.write_str("poison"),
            AttackKind::SlotFlood(s) => write!(f, "slot-flood:{}", s.as_str()),
            AttackKind::VoteFlood => f.write_str("vote-flood"),
        }
    }
}

impl FromStr for AttackKind {
    type Err = AttackError;

    /// `bad-sig:PCT`, `silent`, `query-only`, `drip`, `garbage`, `poison`,
    /// `slot-flood:ip|subnet|many` (`slot-flood` alone: `ip`), `vote-flood`.
    fn from_str(s: &str) -> Result<AttackKind, AttackError> {
        let bad = || AttackError::Kind(s.to_string());
        if let Some(rest) = s.strip_prefix("slot-flood") {
            let source = match rest.strip_prefix(':') {
                Some(src) => FloodSource::parse(src).ok_or_else(bad)?,
                None if rest.is_empty() => FloodSource::Ip,
                None => return Err(bad()),
            };
            return Ok(AttackKind::SlotFlood(source));
        }
        Ok(match s {
            "vote-flood" => AttackKind::VoteFlood,
            "silent" => AttackKind::Silent,
            "query-only" => AttackKind::QueryOnly,
            "drip" => AttackKind::Drip,
            "garbage" => AttackKind::Garbage,
            "poison" => AttackKind::Poison,
            _ => {
                let pct = s.strip_prefix("bad-sig:").ok_or_else(bad)?;
                let pct: u8 = pct.trim_end_matches('%').parse().map_err(|_| bad())?;
                if pct > 100 {
                    return Err(bad());
                }
                AttackKind::BadSig(pct)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for s in [
            "silent",
            "query-only",
            "drip",
            "garbage",
            "poison",
            "bad-sig:50",
            "slot-flood:ip",
            "slot-flood:subnet",
            "slot-flood:many",
            "vote-flood",
        ] {
            assert_eq!(s.parse::<AttackKind>().unwrap().to_string(), s);
        }
        assert_eq!(
            "bad-sig:10%".parse::<AttackKind>().unwrap(),
            AttackKind::BadSig(10)
        );
        assert!("bad-sig:101".parse::<AttackKind>().is_err());
        assert_eq!(
            "slot-flood".parse::<AttackKind>().unwrap(),
            AttackKind::SlotFlood(FloodSource::Ip)
        );
        assert!("slot-flood:mars".parse::<AttackKind>().is_err());
        assert!("slot-floods".parse::<AttackKind>().is_err());
        assert!("flood".parse::<AttackKind>().is_err());
    }
}
