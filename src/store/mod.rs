//! Persistence in the data directory: the peer store and online-weight samples (one redb
//! database, `peers.redb`, spec §7.6 and §8) and the node ID key (`node_id_private.key`, §4.5).
//!
//! This module does file I/O but never reads a clock: every time is an argument `now_ms`
//! (milliseconds since the Unix epoch). Every failure names the file and the cause; a store that
//! cannot be opened is an error, never a silent fresh start.

mod dir;
mod identity;
mod peers;

/// The node ID private key, defined with the other key material in [`crate::crypto`]; the key
/// file is read into it here.
pub use crate::crypto::NodeSecret;
pub use dir::ensure_data_dir;
pub use identity::{KEY_FILE_NAME, NodeKey, load_or_create_node_key};
pub use peers::{
    DB_FILE_NAME, FlushStats, MAX_PEERS, Malformed, PEER_TTL_MS, PeerStore, endpoint_key,
    parse_endpoint_key,
};

use std::io;
use std::path::PathBuf;

/// Why a data-directory operation failed. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory did not exist and could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDirCreate {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The data directory could not be inspected (e.g. a parent is not searchable).
    #[error("cannot access data directory {path}: {source}")]
    DataDirAccess {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The data directory path exists but is not a directory.
    #[error("data directory {path} exists but is not a directory")]
    DataDirNotDirectory {
        /// The data directory as given; it, or one of its parents, is not a directory.
        path: PathBuf,
    },
    /// A file could not be created in the data directory.
    #[error("data directory {path} is not writable: {source}")]
    DataDirNotWritable {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A path where a regular file belongs holds something else (e.g. a directory).
    #[error("{path} is not a regular file; move it away")]
    NotAFile {
        /// The key file or the database file.
        path: PathBuf,
    },
    /// The database is already open, by this or another process.
    #[error(
        "peer store {path} is already open (is another nanopeer running on this data directory?)"
    )]
    DbLocked {
        /// The database file.
        path: PathBuf,
    },
    /// The database file is not a valid redb database or failed its integrity check.
    #[error("peer store {path} is corrupt ({detail}); move it away to start with an empty store")]
    DbCorrupt {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        detail: String,
    },
    /// The database file could not be opened (permissions, I/O error, unsupported version).
    #[error("cannot open peer store {path}: {source}")]
    DbOpen {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: redb::Error,
    },
    /// Reading the database failed.
    #[error("cannot read peer store {path}: {source}")]
    DbRead {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: redb::Error,
    },
    /// A write transaction failed (disk full, I/O error); nothing of it was stored.
    #[error("cannot write peer store {path}: {source}")]
    DbWrite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: redb::Error,
    },
    /// The node ID key file exists but could not be read.
    #[error("cannot read node ID key {path}: {source}")]
    KeyRead {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The node ID key file does not hold 64 hex digits.
    #[error(
        "node ID key {path} is malformed ({reason}); fix it or delete it to generate a new node ID"
    )]
    KeyMalformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The node ID key file is readable or writable by group or others.
    #[error(
        "node ID key {path} has mode {mode:04o}, open to group or others; \
         run `chmod 600 {path}` (and consider the key exposed) or delete it to generate a new node ID"
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The node ID key file could not be created.
    #[error("cannot create node ID key {path}: {source}")]
    KeyWrite {
        /// The key file (or its temporary file).
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}
