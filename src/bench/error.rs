//! The error of `nanopeer bench` and `nanopeer tune`: what stops a run before it reports
//! (a bad argument, the node or the load generator not starting, a file that cannot be
//! written).

use std::path::PathBuf;

use super::loadgen::LoadError;
use crate::node::NodeError;

/// What failed in `nanopeer bench` / `nanopeer tune`.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An argument is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// `--target` did not resolve to an address.
    #[error("cannot resolve --target {0}")]
    Resolve(String),
    /// The in-process node did not start or stop cleanly.
    #[error("node: {0}")]
    Node(#[from] NodeError),
    /// The load generator did not start.
    #[error("load generator: {0}")]
    Load(#[from] LoadError),
    /// The bench data directory or a tune output file.
    #[error("{what} {path}: {source}")]
    File {
        /// The failed step, first in the message (`cannot create`, `cannot write`, …).
        what: &'static str,
        /// The directory or file the step was about.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file given as input (a saved tune CSV to plot) that does not hold what it should.
    #[error("{path}: {reason}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, naming the line where there is one.
        reason: String,
    },
    /// The SIGINT/SIGTERM handler of `tune` could not be installed.
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
    /// A thread of the bench itself could not run.
    #[error("bench thread failed")]
    Thread,
}
