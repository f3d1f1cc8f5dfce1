//! The file-descriptor budget: what the configured connection caps need, and what to do when
//! the process's open-file limit (`RLIMIT_NOFILE`) cannot hold them.
//!
//! Every connection slot of a shard is one socket (inbound, dialing or closing: a slot is
//! held until its descriptor is closed), and every shard also owns its listener, its wake
//! eventfd and its io_uring. Beside the shards the process needs a fixed reserve
//! ([`FD_RESERVE`], named part by part below). At start [`Node::start`](super::Node::start)
//! raises the soft limit to the hard one and fits the caps into it
//! with [`fit_connections`]: when they do not fit, the per-shard cap is lowered (with a
//! warning naming the numbers, as Bitcoin Core's "Reducing -maxconnections from N to M,
//! because of system limitations"), and the node refuses to start only when not even
//! [`MIN_CONNECTIONS_PER_SHARD`] per shard fit. A shard at its cap refuses (counts) new
//! connections instead of failing `accept` with `EMFILE`, which would also starve the peer
//! store, the RPC server and DNS. With separate inbound and outbound caps the per-shard total
//! is their sum, and [`scale_caps`] splits a lowered total between them.

use super::NodeError;

/// Descriptors each shard holds besides its connections: the listener, the wake eventfd and
/// the io_uring instance.
pub const FDS_PER_SHARD: u64 = 3;

/// Standard input, output and error.
pub const RESERVE_STD_STREAMS: u64 = 3;
/// The peer store (redb database file), the data directory, the node key and weights files
/// (read at start).
pub const RESERVE_STORE_FILES: u64 = 4;
/// RPC and metrics: two servers × (listener + 16 connections served at once + one being
/// refused with `503`).
pub const RESERVE_HTTP: u64 = 2 * (1 + 16 + 1);
/// DNS resolution of the preconfigured peers (resolver sockets, `/etc/hosts`,
/// `/etc/resolv.conf`, NSS files), on its helper thread.
pub const RESERVE_DNS: u64 = 8;
/// Slack for libraries and the runtime (log files when stderr is redirected, `/proc` reads,
/// the allocator).
pub const RESERVE_SLACK: u64 = 13;

/// Descriptors the process needs besides the shards: the sum of the `RESERVE_*` parts (64).
pub const FD_RESERVE: u64 =
    RESERVE_STD_STREAMS + RESERVE_STORE_FILES + RESERVE_HTTP + RESERVE_DNS + RESERVE_SLACK;

/// Fewest connection slots per shard the node runs with: below this a limit is refused rather
/// than obeyed (a node with a handful of peers is not worth running).
pub const MIN_CONNECTIONS_PER_SHARD: usize = 8;

/// Descriptors needed by `shards` shards with `per_shard` connection slots each (all kinds:
/// inbound + outbound), plus [`FD_RESERVE`].
pub fn fds_needed(shards: usize, per_shard: usize) -> u64 {
    let per = (per_shard as u64).saturating_add(FDS_PER_SHARD);
    (shards as u64)
        .saturating_mul(per)
        .saturating_add(FD_RESERVE)
}

/// How the connection caps fit an open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdFit {
    /// The configured caps fit: they need `needed` descriptors.
    Fits {
        /// Descriptors needed.
        needed: u64,
    },
    /// They do not; `per_shard` slots per shard (fewer than configured, at least the
    /// minimum) fit, needing `needed`; the configured caps would need `wanted`.
    Lowered {
        /// The largest per-shard cap that fits.
        per_shard: usize,
        /// Descriptors needed with it.
        needed: u64,
        /// Descriptors the configured caps need.
        wanted: u64,
    },
    /// Not even [`MIN_CONNECTIONS_PER_SHARD`] per shard (or the configured cap, if smaller)
    /// fits: that minimum needs `minimum` descriptors.
    TooFew {
        /// Descriptors the minimal configuration needs.
        minimum: u64,
    },
}

/// Fits `shards` shards with `per_shard` connection slots each into an open-file `limit`
/// (the soft limit in force): see [`FdFit`]. `shards` is at least 1 in practice (0 is treated
/// as 1).
pub fn fit_connections(limit: u64, shards: usize, per_shard: usize) -> FdFit {
    let shards = shards.max(1);
    let wanted = fds_needed(shards, per_shard);
    if wanted <= limit {
        return FdFit::Fits { needed: wanted };
    }
    let minimum = fds_needed(shards, MIN_CONNECTIONS_PER_SHARD.min(per_shard));
    if limit < minimum {
        return FdFit::TooFew { minimum };
    }
    let each = (limit - FD_RESERVE) / shards as u64 - FDS_PER_SHARD;
    let per_shard = usize::try_from(each).unwrap_or(usize::MAX).min(per_shard);
    FdFit::Lowered {
        per_shard,
        needed: fds_needed(shards, per_shard),
        wanted,
    }
}

/// Splits a lowered per-shard total `fit` between inbound and outbound caps in the
/// proportion configured (`inbound` : `outbound`), so the outbound slots inbound peers cannot
/// take shrink no faster than the inbound ones; each part keeps at least one slot when it had
/// any and `fit` allows. `(inbound, outbound)` are returned unchanged when they fit already.
pub fn scale_caps(fit: usize, inbound: usize, outbound: usize) -> (usize, usize) {
    let total = inbound.saturating_add(outbound);
    if total <= fit {
        return (inbound, outbound);
    }
    let mut out = (fit as u128 * outbound as u128 / total as u128) as usize;
    if outbound > 0 && out == 0 && fit >= 2 {
        out = 1;
    }
    let mut inb = fit - out;
    if inbound > 0 && inb == 0 && out > 1 {
        inb = 1;
        out -= 1;
    }
    (inb, out)
}

/// The open-file limit as the node found and left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenFiles {
    /// The soft limit when the node started.
    pub soft_at_start: u64,
    /// The soft limit in force (raised to the hard limit when allowed).
    pub soft: u64,
    /// The hard limit (`u64::MAX`: unlimited).
    pub hard: u64,
    /// Descriptors the connection caps in force need ([`fds_needed`]).
    pub needed: u64,
    /// The per-shard connection cap configured.
    pub configured_per_shard: usize,
    /// The per-shard connection cap in force (lower than configured if the limit is short).
    pub per_shard: usize,
}

/// Where Linux caps a hard limit of "unlimited" (`fs.nr_open`, default 1 048 576).
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// Raises the soft open-file limit to the hard one (to `fs.nr_open` when the hard limit is
/// unlimited) and returns `(soft at start, soft now, hard)`. A failure to raise is logged and
/// leaves the soft limit as it was; only a failure to read the limit is an error.
pub(crate) fn raise_open_file_limit() -> Result<(u64, u64, u64), crate::io::IoError> {
    let (soft, hard) = crate::io::open_file_limit()?;
    let target = if hard == u64::MAX { nr_open() } else { hard };
    if soft >= target {
        return Ok((soft, soft, hard));
    }
    match crate::io::set_open_file_limit(target, hard) {
        Ok(()) => Ok((soft, target, hard)),
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit");
            Ok((soft, soft, hard))
        }
    }
}

/// Raises the soft open-file limit (logging the soft and hard limits), then fits `shards`
/// shards of `per_shard` connection slots into it: the caps in force, lowered with a warning
/// if they do not fit, or [`NodeError::OpenFileLimit`] if not even the minimum does. If the
/// limit cannot be read, the caps are kept unchecked (with a warning).
pub(crate) fn apply_open_file_limit(
    shards: usize,
    per_shard: usize,
) -> Result<OpenFiles, NodeError> {
    let shards = shards.max(1);
    let (soft_at_start, soft, hard) = match raise_open_file_limit() {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; the connection caps are not checked against it");
            return Ok(OpenFiles {
                soft_at_start: u64::MAX,
                soft: u64::MAX,
                hard: u64::MAX,
                needed: fds_needed(shards, per_shard),
                configured_per_shard: per_shard,
                per_shard,
            });
        }
    };
    if soft > soft_at_start {
        tracing::info!(
            soft_at_start,
            soft,
            hard,
            "open-file limit: soft {soft_at_start} raised to {soft} (hard {hard})"
        );
    } else {
        tracing::info!(soft, hard, "open-file limit: soft {soft} (hard {hard})");
    }
    let mut files = OpenFiles {
        soft_at_start,
        soft,
        hard,
        needed: 0,
        configured_per_shard: per_shard,
        per_shard,
    };
    match fit_connections(soft, shards, per_shard) {
        FdFit::Fits { needed } => {
            files.needed = needed;
            tracing::info!(
                needed,
                limit = soft,
                shards,
                per_shard,
                reserve = FD_RESERVE,
                "the connection caps need {needed} descriptors: {shards} shard(s) × ({per_shard} connections + {FDS_PER_SHARD}) + {FD_RESERVE} reserved"
            );
            Ok(files)
        }
        FdFit::Lowered {
            per_shard: fit,
            needed,
            wanted,
        } => {
            files.needed = needed;
            files.per_shard = fit;
            tracing::warn!(
                from = per_shard,
                to = fit,
                limit = soft,
                hard,
                wanted,
                "Reducing the connections per shard (limits.max_connections_per_shard + limits.max_outbound_per_shard) from {per_shard} to {fit}, because of system limitations: the open-file limit is {soft} (hard {hard}) and {shards} shard(s) × ({per_shard} connections + {FDS_PER_SHARD}) + {FD_RESERVE} reserved need {wanted}"
            );
            Ok(files)
        }
        FdFit::TooFew { minimum } => Err(NodeError::OpenFileLimit {
            soft,
            hard,
            shards,
            per_shard: MIN_CONNECTIONS_PER_SHARD.min(per_shard),
            per_fixed: FDS_PER_SHARD,
            reserve: FD_RESERVE,
            minimum,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_the_sum_of_its_named_parts() {
        assert_eq!(FD_RESERVE, 64);
        assert_eq!(fds_needed(1, 0), FD_RESERVE + 3);
        assert_eq!(fds_needed(2, 2048), 2 * 2051 + 64);
        assert_eq!(fds_needed(usize::MAX, usize::MAX), u64::MAX);
    }

    #[test]
    fn caps_that_fit_are_kept() {
        assert_eq!(
            fit_connections(20_000, 2, 2048),
            FdFit::Fits { needed: 4166 }
        );
        // exactly at the limit
        assert_eq!(fit_connections(4166, 2, 2048), FdFit::Fits { needed: 4166 });
        assert_eq!(
            fit_connections(u64::MAX, 64, 1 << 20),
            FdFit::Fits {
                needed: fds_needed(64, 1 << 20)
            }
        );
    }

    #[test]
    fn caps_that_do_not_fit_are_lowered_to_the_largest_that_does() {
        // The classic default soft limit: 1024 for 2 shards of 2048.
        let f = fit_connections(1024, 2, 2048);
        assert_eq!(
            f,
            FdFit::Lowered {
                per_shard: 477,
                needed: 1024,
                wanted: 4166
            }
        );
        // One descriptor short of the configured caps.
        assert_eq!(
            fit_connections(4165, 2, 2048),
            FdFit::Lowered {
                per_shard: 2047,
                needed: 4164,
                wanted: 4166
            }
        );
        // Whatever the input, a lowered cap fits and is the largest that does.
        for limit in [100u64, 101, 333, 1024, 4096, 65_535] {
            for shards in 1..=8 {
                if let FdFit::Lowered {
                    per_shard, needed, ..
                } = fit_connections(limit, shards, 100_000)
                {
                    assert!(needed <= limit);
                    assert!(fds_needed(shards, per_shard + 1) > limit);
                    assert!(per_shard >= MIN_CONNECTIONS_PER_SHARD);
                }
            }
        }
    }

    #[test]
    fn lowered_total_is_split_in_the_configured_proportion() {
        assert_eq!(scale_caps(4096, 2048, 2048), (2048, 2048));
        assert_eq!(scale_caps(477, 2048, 2048), (239, 238));
        assert_eq!(scale_caps(100, 300, 100), (75, 25));
        assert_eq!(scale_caps(8, 10_000, 1), (7, 1));
        assert_eq!(scale_caps(8, 1, 10_000), (1, 7));
        assert_eq!(scale_caps(10, 20, 0), (10, 0));
        for (fit, i, o) in [(8, 2048, 2048), (9, 3, 1000), (477, 1, 1), (1000, 999, 999)] {
            let (a, b) = scale_caps(fit, i, o);
            assert_eq!(a + b, fit.min(i + o), "{fit} {i} {o}");
        }
    }

    #[test]
    fn below_the_minimal_configuration_the_node_refuses() {
        // 2 shards × (8 + 3) + 64 = 86.
        assert_eq!(fit_connections(85, 2, 2048), FdFit::TooFew { minimum: 86 });
        assert_eq!(
            fit_connections(86, 2, 2048),
            FdFit::Lowered {
                per_shard: 8,
                needed: 86,
                wanted: 4166
            }
        );
        // A cap configured below the minimum is its own minimum.
        assert_eq!(fit_connections(71, 1, 4), FdFit::Fits { needed: 71 });
        assert_eq!(fit_connections(70, 1, 4), FdFit::TooFew { minimum: 71 });
        assert_eq!(fit_connections(10, 0, 4), FdFit::TooFew { minimum: 71 });
    }
}
