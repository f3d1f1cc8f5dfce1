//! The peer store (§7.6 peer_history) and the online-weight samples (§8 online_reps), two tables
//! of one redb database, `<data>/peers.redb`.
//!
//! * `peers`: key = `endpoint_key` (16-byte IPv6 address ‖ port **big-endian**, IPv4 as
//!   v4-mapped), value = u64 big-endian milliseconds since the Unix epoch, the last time the
//!   endpoint was seen live.
//! * `online_weight`: key = u64 big-endian sample time (ms), value = u128 big-endian raw weight.
//!
//! Both tables are mirrored in memory at open, so [`PeerStore::load`] and
//! [`PeerStore::samples`] read no disk, and [`PeerStore::flush`] computes what to change without
//! scanning the table: one write transaction of `live + expired + evicted` updates and one
//! commit. The mirror is only updated after a commit succeeds. The process holds an exclusive
//! lock on the file while the store is open.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::net::Ipv6Addr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{
    Builder, Database, DatabaseError, Durability, ReadableTable, StorageError, TableDefinition,
    WriteTransaction,
};

use super::{StoreError, ensure_data_dir};
use crate::endpoint::Endpoint;

/// File name of the database in the data directory.
pub const DB_FILE_NAME: &str = "peers.redb";

/// Peers last seen longer ago than this (1 h) are dropped (§7.6, `peer_history` erase cutoff).
pub const PEER_TTL_MS: u64 = 60 * 60 * 1000;

/// Default cap on stored peers; beyond it the least recently seen are dropped.
pub const MAX_PEERS: usize = 10_000;

/// redb page cache; the whole store is a few hundred KiB at most.
const CACHE_BYTES: usize = 4 << 20;

const PEERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("peers");
const ONLINE_WEIGHT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("online_weight");

type Key = [u8; 18];

/// The 18-byte `endpoint_key` of an endpoint: IPv6 address bytes ‖ port big-endian. IPv4
/// addresses are stored v4-mapped (`::ffff:a.b.c.d`), the canonical form of an [`Endpoint`].
pub fn endpoint_key(endpoint: impl Into<Endpoint>) -> [u8; 18] {
    v6_key(&endpoint.into())
}

fn v6_key(endpoint: &Endpoint) -> Key {
    let mut key = [0u8; 18];
    key[..16].copy_from_slice(&endpoint.ip().octets());
    key[16..].copy_from_slice(&endpoint.port().to_be_bytes());
    key
}

/// The endpoint of an 18-byte `endpoint_key`, or `None` if `bytes` is not 18 bytes long.
pub fn parse_endpoint_key(bytes: &[u8]) -> Option<Endpoint> {
    let key: &Key = bytes.try_into().ok()?;
    Some(key_endpoint(key))
}

fn key_endpoint(key: &Key) -> Endpoint {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&key[..16]);
    let port = u16::from_be_bytes([key[16], key[17]]);
    Endpoint::new(Ipv6Addr::from(ip).into(), port)
}

/// Entries found at open whose key or value had the wrong length; they are ignored and deleted
/// by the next write to their table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Malformed {
    /// Malformed entries in `peers`.
    pub peers: usize,
    /// Malformed entries in `online_weight`.
    pub samples: usize,
}

/// What one [`PeerStore::flush`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Endpoints written with the current time (distinct live endpoints, at most the cap).
    pub upserted: usize,
    /// Entries deleted for being older than [`PEER_TTL_MS`] or in the future.
    pub expired: usize,
    /// Entries deleted, least recently seen first, to keep the table within its cap.
    pub evicted: usize,
    /// Malformed entries deleted.
    pub malformed_removed: usize,
    /// Entries in the table after the flush.
    pub stored: usize,
}

/// The peer store and online-weight samples in `<data>/peers.redb`.
///
/// After a failed write (disk full, I/O error) redb refuses further writes on the same handle,
/// so the store closes it and the next write reopens the file first: once the cause is gone the
/// store works again without a restart. Reads are served from memory meanwhile.
pub struct PeerStore {
    /// The open database; `None` after a failed write until the next write reopens it.
    db: Option<Database>,
    path: PathBuf,
    max_peers: usize,
    mirror: Mirror,
    malformed: Malformed,
}

/// The valid entries of both tables, and the keys of the malformed ones.
#[derive(Default)]
struct Mirror {
    /// endpoint_key → last seen (ms).
    peers: HashMap<Key, u64>,
    /// (last seen, endpoint_key), the same entries ordered by time.
    by_time: BTreeSet<(u64, Key)>,
    /// Raw keys of malformed `peers` entries still in the table.
    bad_peer_keys: Vec<Vec<u8>>,
    /// sample time (ms) → weight.
    samples: BTreeMap<u64, u128>,
    /// Raw keys of malformed `online_weight` entries still in the table.
    bad_sample_keys: Vec<Vec<u8>>,
}

impl fmt::Debug for PeerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerStore")
            .field("path", &self.path)
            .field("open", &self.db.is_some())
            .field("peers", &self.mirror.peers.len())
            .field("samples", &self.mirror.samples.len())
            .field("max_peers", &self.max_peers)
            .finish()
    }
}

impl PeerStore {
    /// Opens (or creates) `<dir>/peers.redb` with the default cap of [`MAX_PEERS`].
    ///
    /// The data directory is created (0700) if missing. The file's integrity is checked on
    /// every open (checksums of every page; the store is small), and a file left by a crash is
    /// repaired by redb. A file that cannot be opened as a database is an error naming it and
    /// the cause; it is never replaced by an empty store.
    pub fn open(dir: &Path) -> Result<PeerStore, StoreError> {
        PeerStore::open_with_limit(dir, MAX_PEERS)
    }

    /// Like [`PeerStore::open`], keeping at most `max_peers` peers (at least 1).
    pub fn open_with_limit(dir: &Path, max_peers: usize) -> Result<PeerStore, StoreError> {
        ensure_data_dir(dir)?;
        let path = dir.join(DB_FILE_NAME);
        match fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => return Err(StoreError::NotAFile { path }),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::DbOpen {
                    path,
                    source: redb::Error::Io(e),
                });
            }
        }
        let db = open_db(&path)?;
        let mirror = read_tables(&db, &path)?;
        Ok(PeerStore {
            db: Some(db),
            path,
            max_peers: max_peers.max(1),
            malformed: Malformed {
                peers: mirror.bad_peer_keys.len(),
                samples: mirror.bad_sample_keys.len(),
            },
            mirror,
        })
    }

    /// `<data>/peers.redb` ([`DB_FILE_NAME`]); a write after a failed one reopens it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Malformed entries found (and skipped) when the store was opened.
    pub fn malformed(&self) -> Malformed {
        self.malformed
    }

    /// Number of peers in the table (valid entries, including any not yet expired by a flush).
    pub fn len(&self) -> usize {
        self.mirror.peers.len()
    }

    /// True if the table holds no valid peer.
    pub fn is_empty(&self) -> bool {
        self.mirror.peers.is_empty()
    }

    /// The stored peers seen within the last hour and not in the future, with their last-seen
    /// time, most recent first. Reads no disk.
    pub fn load(&self, now_ms: u64) -> Vec<(Endpoint, u64)> {
        let cutoff = now_ms.saturating_sub(PEER_TTL_MS);
        self.mirror
            .by_time
            .range((cutoff, [0u8; 18])..=(now_ms, [0xff; 18]))
            .rev()
            .map(|(time, key)| (key_endpoint(key), *time))
            .collect()
    }

    /// Records `live_peering_endpoints` as seen at `now_ms`, deletes entries older than one hour
    /// or in the future, and drops the least recently seen beyond the cap, in one durable write
    /// transaction. Nothing is written when nothing changes. On error the store is unchanged.
    pub fn flush(
        &mut self,
        live_peering_endpoints: &[Endpoint],
        now_ms: u64,
    ) -> Result<FlushStats, StoreError> {
        self.ensure_open()?;
        let cutoff = now_ms.saturating_sub(PEER_TTL_MS);

        // Distinct live keys, in input order, at most the cap.
        let mut live_set: HashSet<Key> = HashSet::with_capacity(live_peering_endpoints.len());
        let mut live: Vec<Key> = Vec::with_capacity(live_peering_endpoints.len());
        for endpoint in live_peering_endpoints {
            if live.len() == self.max_peers {
                break;
            }
            let key = v6_key(endpoint);
            if live_set.insert(key) {
                live.push(key);
            }
        }

        // Expired: older than the cutoff or in the future, unless refreshed now.
        let mut expired: Vec<Key> = self
            .mirror
            .by_time
            .range(..(cutoff, [0u8; 18]))
            .chain(
                now_ms
                    .checked_add(1)
                    .into_iter()
                    .flat_map(|future| self.mirror.by_time.range((future, [0u8; 18])..)),
            )
            .map(|(_, key)| *key)
            .filter(|key| !live_set.contains(key))
            .collect();
        let n_expired = expired.len();

        // Evict the least recently seen of the remaining entries beyond the cap.
        let new_keys = live
            .iter()
            .filter(|k| !self.mirror.peers.contains_key(*k))
            .count();
        let after = self.mirror.peers.len() - n_expired + new_keys;
        let mut n_evicted = 0;
        if after > self.max_peers {
            let excess = after - self.max_peers;
            expired.extend(
                self.mirror
                    .by_time
                    .range((cutoff, [0u8; 18])..=(now_ms, [0xff; 18]))
                    .map(|(_, key)| *key)
                    .filter(|key| !live_set.contains(key))
                    .take(excess),
            );
            n_evicted = expired.len() - n_expired;
        }

        let bad = std::mem::take(&mut self.mirror.bad_peer_keys);
        if live.is_empty() && expired.is_empty() && bad.is_empty() {
            return Ok(FlushStats {
                stored: self.mirror.peers.len(),
                ..FlushStats::default()
            });
        }
        self.write(|txn| {
            let mut table = txn.open_table(PEERS)?;
            for key in &bad {
                table.remove(key.as_slice())?;
            }
            for key in &expired {
                table.remove(key.as_slice())?;
            }
            let value = now_ms.to_be_bytes();
            for key in &live {
                table.insert(key.as_slice(), value.as_slice())?;
            }
            Ok(())
        })?;

        for key in &expired {
            if let Some(time) = self.mirror.peers.remove(key) {
                self.mirror.by_time.remove(&(time, *key));
            }
        }
        for key in &live {
            if let Some(old) = self.mirror.peers.insert(*key, now_ms) {
                self.mirror.by_time.remove(&(old, *key));
            }
            self.mirror.by_time.insert((now_ms, *key));
        }
        Ok(FlushStats {
            upserted: live.len(),
            expired: n_expired,
            evicted: n_evicted,
            malformed_removed: bad.len(),
            stored: self.mirror.peers.len(),
        })
    }

    /// Stores an online-weight sample taken at `now_ms` (replacing one with the same time) and
    /// deletes the oldest samples beyond `max_samples` (§8: 4032 on live and test, 288
    /// otherwise), in one durable write transaction.
    pub fn put_sample(
        &mut self,
        now_ms: u64,
        weight: u128,
        max_samples: usize,
    ) -> Result<(), StoreError> {
        self.ensure_open()?;
        let mut next = self.mirror.samples.clone();
        next.insert(now_ms, weight);
        let mut dropped = Vec::new();
        while next.len() > max_samples {
            match next.pop_first() {
                Some((time, _)) => dropped.push(time),
                None => break,
            }
        }
        let bad = std::mem::take(&mut self.mirror.bad_sample_keys);
        self.write(|txn| {
            let mut table = txn.open_table(ONLINE_WEIGHT)?;
            for key in &bad {
                table.remove(key.as_slice())?;
            }
            for time in &dropped {
                table.remove(time.to_be_bytes().as_slice())?;
            }
            if next.contains_key(&now_ms) {
                table.insert(
                    now_ms.to_be_bytes().as_slice(),
                    weight.to_be_bytes().as_slice(),
                )?;
            }
            Ok(())
        })?;
        self.mirror.samples = next;
        Ok(())
    }

    /// The stored online-weight samples, oldest first. Reads no disk.
    pub fn samples(&self) -> Vec<u128> {
        self.mirror.samples.values().copied().collect()
    }

    /// Reopens the database if an earlier write failed, reloading the mirror from the file.
    fn ensure_open(&mut self) -> Result<&Database, StoreError> {
        let db = match self.db.take() {
            Some(db) => db,
            None => {
                let db = open_db(&self.path)?;
                // The file holds what the mirror holds (the mirror changes only after a commit)
                // unless something else wrote to it while it was closed: trust the file.
                self.mirror = read_tables(&db, &self.path)?;
                db
            }
        };
        Ok(self.db.insert(db))
    }

    /// Runs `body` in a durable write transaction and commits it; aborts on error. A failure
    /// closes the database (redb fails every later operation on a handle that saw an I/O error),
    /// so the next write starts from a fresh open.
    fn write(
        &mut self,
        body: impl FnOnce(&WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let db = self.ensure_open()?;
        let run = || -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)
                .map_err(redb::Error::from)?;
            match body(&txn) {
                Ok(()) => txn.commit()?,
                Err(e) => {
                    txn.abort()?;
                    return Err(e);
                }
            }
            Ok(())
        };
        run().map_err(|source| {
            self.db = None;
            StoreError::DbWrite {
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// Creates both tables if needed and reads their contents.
fn read_tables(db: &Database, path: &Path) -> Result<Mirror, StoreError> {
    let open_err = |e: redb::Error| StoreError::DbOpen {
        path: path.to_path_buf(),
        source: e,
    };
    let mut mirror = Mirror::default();
    let txn = db.begin_write().map_err(|e| open_err(e.into()))?;
    {
        let peers = txn.open_table(PEERS).map_err(|e| open_err(e.into()))?;
        for entry in peers.iter().map_err(|e| open_err(e.into()))? {
            let (k, v) = entry.map_err(|e| open_err(e.into()))?;
            let (k, v) = (k.value(), v.value());
            match (<Key>::try_from(k), <[u8; 8]>::try_from(v)) {
                (Ok(key), Ok(time)) => {
                    let time = u64::from_be_bytes(time);
                    mirror.peers.insert(key, time);
                    mirror.by_time.insert((time, key));
                }
                _ => mirror.bad_peer_keys.push(k.to_vec()),
            }
        }
        let samples = txn
            .open_table(ONLINE_WEIGHT)
            .map_err(|e| open_err(e.into()))?;
        for entry in samples.iter().map_err(|e| open_err(e.into()))? {
            let (k, v) = entry.map_err(|e| open_err(e.into()))?;
            let (k, v) = (k.value(), v.value());
            match (<[u8; 8]>::try_from(k), <[u8; 16]>::try_from(v)) {
                (Ok(time), Ok(weight)) => {
                    mirror
                        .samples
                        .insert(u64::from_be_bytes(time), u128::from_be_bytes(weight));
                }
                _ => mirror.bad_sample_keys.push(k.to_vec()),
            }
        }
    }
    txn.commit().map_err(|e| open_err(e.into()))?;
    Ok(mirror)
}

/// Opens the database with an integrity check, classifying failures. redb is documented to
/// possibly panic on a file altered behind its back when the check is off; with it on, a panic
/// would be a redb bug, but it is still turned into an error rather than taking the node down.
fn open_db(path: &Path) -> Result<Database, StoreError> {
    let opened = catch_unwind(AssertUnwindSafe(|| {
        Builder::new()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .create(path)
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => Err(StoreError::DbLocked {
            path: path.to_path_buf(),
        }),
        Ok(Err(DatabaseError::Storage(StorageError::Corrupted(detail)))) => {
            Err(StoreError::DbCorrupt {
                path: path.to_path_buf(),
                detail,
            })
        }
        // redb reports a wrong magic number (not a redb file at all) as invalid data.
        Ok(Err(DatabaseError::Storage(StorageError::Io(e))))
            if e.kind() == ErrorKind::InvalidData =>
        {
            Err(StoreError::DbCorrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })
        }
        Ok(Err(e)) => Err(StoreError::DbOpen {
            path: path.to_path_buf(),
            source: e.into(),
        }),
        Err(_) => Err(StoreError::DbCorrupt {
            path: path.to_path_buf(),
            detail: "the database library panicked while opening it".to_owned(),
        }),
    }
}
