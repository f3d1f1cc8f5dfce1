//! What stops an attack run ([`AttackError`]): an unknown kind, a bad setting, the attack
//! thread or the honest load not starting.

use crate::bench::loadgen::LoadError;
use crate::io::IoError;

/// What went wrong starting an attack.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// The kind text is not one of the kinds.
    #[error(
        "unknown attack kind {0:?} (bad-sig:PCT, silent, query-only, drip, garbage, poison, \
         slot-flood:ip|subnet|many, vote-flood)"
    )]
    Kind(String),
    /// A configuration value is out of range.
    #[error("invalid attack configuration: {0}")]
    Config(&'static str),
    /// The attack thread could not start.
    #[error("attack thread failed to start: {0}")]
    Start(#[from] IoError),
    /// The honest load failed.
    #[error(transparent)]
    Load(#[from] LoadError),
}
