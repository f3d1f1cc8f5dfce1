//! Tests of the data directory: peer store, online-weight samples, node ID key, crash safety.

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nanopeer::endpoint::Endpoint;
use nanopeer::store::{
    DB_FILE_NAME, KEY_FILE_NAME, MAX_PEERS, PEER_TTL_MS, PeerStore, StoreError, endpoint_key,
    ensure_data_dir, load_or_create_node_key, parse_endpoint_key,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_chacha::ChaCha20Rng;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const PEERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("peers");
const ONLINE_WEIGHT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("online_weight");

/// 2024-01-01T00:00:00Z in ms: a realistic "now".
const T0: u64 = 1_704_067_200_000;

fn v6(ip: &str, port: u16) -> Endpoint {
    Endpoint::new(std::net::IpAddr::V6(ip.parse().unwrap()), port)
}

fn v4(a: [u8; 4], port: u16) -> Endpoint {
    Endpoint::new(
        std::net::IpAddr::from(Ipv4Addr::from(a).to_ipv6_mapped()),
        port,
    )
}

/// Endpoint number `i` of a test universe: IPv6 for even `i`, v4-mapped for odd.
fn ep(i: u16) -> Endpoint {
    if i.is_multiple_of(2) {
        Endpoint::new(
            std::net::IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)),
            7000 + i,
        )
    } else {
        v4([10, 0, (i >> 8) as u8, i as u8], 7000 + i)
    }
}

fn raw_entries(dir: &Path, table: TableDefinition<&[u8], &[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = redb::Database::open(dir.join(DB_FILE_NAME)).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(table).unwrap();
    table
        .iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.value().to_vec(), v.value().to_vec())
        })
        .collect()
}

fn raw_insert(dir: &Path, table: TableDefinition<&[u8], &[u8]>, entries: &[(&[u8], &[u8])]) {
    let db = redb::Database::create(dir.join(DB_FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(table).unwrap();
        for (k, v) in entries {
            t.insert(*k, *v).unwrap();
        }
    }
    txn.commit().unwrap();
}

/// True if the process can create files in a directory with mode 0500 (root, CAP_DAC_OVERRIDE),
/// in which case permission-bit tests cannot fail and are skipped.
fn permission_bits_ignored(scratch: &Path) -> bool {
    let probe = scratch.join("perm-probe");
    fs::create_dir(&probe).unwrap();
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o500)).unwrap();
    let ignored = fs::write(probe.join("x"), b"x").is_ok();
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o700)).unwrap();
    ignored
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

// ---------------------------------------------------------------------------------------------
// endpoint_key

#[test]
fn endpoint_key_is_ipv6_bytes_then_port_big_endian() {
    let key = endpoint_key(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(1, 2, 3, 4),
        7075,
    )));
    let mut expected = [0u8; 18];
    expected[10] = 0xff;
    expected[11] = 0xff;
    expected[12..16].copy_from_slice(&[1, 2, 3, 4]);
    expected[16..].copy_from_slice(&[0x1b, 0xa3]); // 7075 = 0x1ba3, big-endian
    assert_eq!(key, expected);
    assert_eq!(parse_endpoint_key(&key), Some(v4([1, 2, 3, 4], 7075)));
    assert_eq!(parse_endpoint_key(&key[..17]), None);
    assert_eq!(parse_endpoint_key(&[0u8; 19]), None);

    let scoped = std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 0x0102, 7, 9);
    let key = endpoint_key(scoped);
    assert_eq!(&key[16..], &[0x01, 0x02]);
    assert_eq!(parse_endpoint_key(&key), Some(v6("fe80::1", 0x0102)));
}

proptest! {
    #[test]
    fn endpoint_key_round_trips(ip in any::<[u8; 16]>(), port in any::<u16>()) {
        let endpoint = Endpoint::new(std::net::IpAddr::from(Ipv6Addr::from(ip)), port);
        let key = endpoint_key(endpoint);
        prop_assert_eq!(&key[..16], &ip[..]);
        prop_assert_eq!(u16::from_be_bytes([key[16], key[17]]), port);
        prop_assert_eq!(parse_endpoint_key(&key), Some(endpoint));
    }
}

// ---------------------------------------------------------------------------------------------
// Peer store

#[test]
fn flush_load_and_reopen_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let a = v4([1, 2, 3, 4], 7075);
    let b = v6("2001:db8::1", 54000);
    let c = v6("2001:db8::2", 1);
    {
        let mut store = PeerStore::open(&dir).unwrap();
        assert!(store.is_empty());
        assert_eq!(store.load(T0), vec![]);
        let stats = store.flush(&[a, b], T0).unwrap();
        assert_eq!(stats.upserted, 2);
        assert_eq!(stats.stored, 2);
        let stats = store.flush(&[c, a, c], T0 + 10).unwrap();
        assert_eq!(stats.upserted, 2, "duplicates count once");
        assert_eq!(stats.stored, 3);
        let mut loaded = store.load(T0 + 10);
        // Most recent first; equal times in some order.
        assert_eq!(loaded.pop(), Some((b, T0)));
        loaded.sort();
        let mut expected = vec![(a, T0 + 10), (c, T0 + 10)];
        expected.sort();
        assert_eq!(loaded, expected);
    }
    let store = PeerStore::open(&dir).unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(store.load(T0 + 20).last(), Some(&(b, T0)));
    assert_eq!(store.malformed().peers, 0);
}

#[test]
fn raw_table_layout_matches_nano_node() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut store = PeerStore::open(tmp.path()).unwrap();
        store.flush(&[v4([192, 168, 1, 9], 7075)], T0).unwrap();
    }
    let entries = raw_entries(tmp.path(), PEERS);
    assert_eq!(entries.len(), 1);
    let (key, value) = &entries[0];
    assert_eq!(
        key.as_slice(),
        &[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 9, 0x1b, 0xa3
        ]
    );
    assert_eq!(value.as_slice(), &T0.to_be_bytes());
}

#[test]
fn entries_older_than_one_hour_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = PeerStore::open(tmp.path()).unwrap();
    let (a, b) = (ep(1), ep(2));
    store.flush(&[a], T0).unwrap();
    // Exactly one hour old: kept.
    let stats = store.flush(&[b], T0 + PEER_TTL_MS).unwrap();
    assert_eq!(stats.expired, 0);
    assert_eq!(store.load(T0 + PEER_TTL_MS).len(), 2);
    // One millisecond more: load skips it before any flush, and flush deletes it.
    assert_eq!(
        store.load(T0 + PEER_TTL_MS + 1),
        vec![(b, T0 + PEER_TTL_MS)]
    );
    assert_eq!(store.len(), 2);
    let stats = store.flush(&[], T0 + PEER_TTL_MS + 1).unwrap();
    assert_eq!(stats.expired, 1);
    assert_eq!(stats.stored, 1);
    drop(store);
    let entries = raw_entries(tmp.path(), PEERS);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, endpoint_key(b));
}

#[test]
fn refreshed_endpoint_does_not_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = PeerStore::open(tmp.path()).unwrap();
    store.flush(&[ep(1)], T0).unwrap();
    let later = T0 + 2 * PEER_TTL_MS;
    let stats = store.flush(&[ep(1)], later).unwrap();
    assert_eq!((stats.expired, stats.upserted, stats.stored), (0, 1, 1));
    assert_eq!(store.load(later), vec![(ep(1), later)]);
}

#[test]
fn entries_in_the_future_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = PeerStore::open(tmp.path()).unwrap();
    store.flush(&[ep(1), ep(2)], T0 + 5_000).unwrap();
    // The clock went back 5 s: the entries are now in the future.
    assert_eq!(store.load(T0), vec![]);
    let stats = store.flush(&[ep(2), ep(3)], T0).unwrap();
    assert_eq!(
        stats.expired, 1,
        "ep(1) is in the future; ep(2) is refreshed"
    );
    let mut loaded = store.load(T0);
    loaded.sort();
    assert_eq!(loaded, vec![(ep(3), T0), (ep(2), T0)]);
    drop(store);
    let reopened = PeerStore::open(tmp.path()).unwrap();
    assert_eq!(reopened.len(), 2);
}

#[test]
fn stored_entries_too_old_or_in_future_are_skipped_by_load() {
    let tmp = tempfile::tempdir().unwrap();
    PeerStore::open(tmp.path()).unwrap();
    let old = endpoint_key(ep(1));
    let future = endpoint_key(ep(2));
    let fresh = endpoint_key(ep(3));
    raw_insert(
        tmp.path(),
        PEERS,
        &[
            (&old, &(T0 - PEER_TTL_MS - 1).to_be_bytes()),
            (&future, &(T0 + 1).to_be_bytes()),
            (&fresh, &(T0 - 5).to_be_bytes()),
        ],
    );
    let mut store = PeerStore::open(tmp.path()).unwrap();
    assert_eq!(store.load(T0), vec![(ep(3), T0 - 5)]);
    let stats = store.flush(&[], T0).unwrap();
    assert_eq!((stats.expired, stats.stored), (2, 1));
}

#[test]
fn cap_drops_least_recently_seen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = PeerStore::open_with_limit(tmp.path(), 5).unwrap();
    store.flush(&[ep(0), ep(1), ep(2)], T0).unwrap();
    store.flush(&[ep(3), ep(4)], T0 + 1).unwrap();
    // ep(0) is refreshed, so of the T0 entries ep(1) and ep(2) go.
    let stats = store.flush(&[ep(5), ep(6), ep(0)], T0 + 2).unwrap();
    assert_eq!((stats.evicted, stats.stored), (2, 5));
    let mut got: Vec<_> = store.load(T0 + 2).into_iter().map(|(e, _)| e).collect();
    got.sort();
    let mut want = vec![ep(0), ep(3), ep(4), ep(5), ep(6)];
    want.sort();
    assert_eq!(got, want);
    // More live endpoints than the cap: only the first five are stored.
    let live: Vec<_> = (10..20).map(ep).collect();
    let stats = store.flush(&live, T0 + 3).unwrap();
    assert_eq!((stats.upserted, stats.evicted, stats.stored), (5, 5, 5));
    drop(store);
    assert_eq!(raw_entries(tmp.path(), PEERS).len(), 5);
}

#[test]
fn default_cap_is_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = PeerStore::open(tmp.path()).unwrap();
    let first: Vec<_> = (0..MAX_PEERS as u16).map(ep).collect();
    let stats = store.flush(&first, T0).unwrap();
    assert_eq!(stats.stored, MAX_PEERS);
    let more: Vec<_> = (0..50u16).map(|i| v6("2001:db8:1::1", i + 1)).collect();
    let stats = store.flush(&more, T0 + 1).unwrap();
    assert_eq!((stats.evicted, stats.stored), (50, MAX_PEERS));
    drop(store);
    let store = PeerStore::open(tmp.path()).unwrap();
    assert_eq!(store.len(), MAX_PEERS);
    let newest = store.load(T0 + 1);
    assert!(
        newest[..50]
            .iter()
            .all(|(e, t)| *t == T0 + 1 && more.contains(e))
    );
}

#[test]
fn malformed_entries_are_skipped_counted_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    PeerStore::open(tmp.path()).unwrap();
    let good = endpoint_key(ep(1));
    raw_insert(
        tmp.path(),
        PEERS,
        &[
            (&good[..17], &T0.to_be_bytes()),                       // short key
            (&[good.as_slice(), &[0]].concat(), &T0.to_be_bytes()), // long key
            (&good, &T0.to_be_bytes()[..7]),                        // short value
            (b"", b""),                                             // empty
        ],
    );
    raw_insert(
        tmp.path(),
        ONLINE_WEIGHT,
        &[
            (&T0.to_be_bytes(), &[1u8; 15]),
            (&[1u8; 9], &[1u8; 16]),
            (&1u64.to_be_bytes(), &7u128.to_be_bytes()),
        ],
    );
    let mut store = PeerStore::open(tmp.path()).unwrap();
    assert_eq!(store.malformed().peers, 4);
    assert_eq!(store.malformed().samples, 2);
    assert_eq!(store.load(T0), vec![]);
    assert_eq!(store.samples(), vec![7]);
    let stats = store.flush(&[ep(2)], T0).unwrap();
    assert_eq!((stats.malformed_removed, stats.stored), (4, 1));
    store.put_sample(T0, 9, 10).unwrap();
    drop(store);
    let store = PeerStore::open(tmp.path()).unwrap();
    assert_eq!(store.malformed(), Default::default());
    assert_eq!(store.load(T0), vec![(ep(2), T0)]);
    assert_eq!(store.samples(), vec![7, 9]);
}

#[test]
fn store_can_move_to_the_crawler_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = PeerStore::open(tmp.path()).unwrap();
    store.flush(&[ep(1)], T0).unwrap();
    let store = std::thread::spawn(move || {
        store.flush(&[ep(2)], T0 + 1).unwrap();
        store
    })
    .join()
    .unwrap();
    assert_eq!(store.len(), 2);
}

#[test]
fn flush_with_nothing_to_do_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = PeerStore::open(tmp.path()).unwrap();
    store.flush(&[ep(1)], T0).unwrap();
    let len = fs::metadata(tmp.path().join(DB_FILE_NAME)).unwrap().len();
    let stats = store.flush(&[], T0 + 1).unwrap();
    assert_eq!(
        stats,
        nanopeer::store::FlushStats {
            stored: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        fs::metadata(tmp.path().join(DB_FILE_NAME)).unwrap().len(),
        len
    );
}

/// The reference behaviour the store must match: a plain map with the rules of `flush`.
fn model_flush(model: &mut HashMap<Endpoint, u64>, live: &[Endpoint], now: u64, cap: usize) {
    let mut live_distinct: Vec<Endpoint> = Vec::new();
    for e in live {
        if live_distinct.len() < cap && !live_distinct.contains(e) {
            live_distinct.push(*e);
        }
    }
    model.retain(|e, t| live_distinct.contains(e) || (*t <= now && now - *t <= PEER_TTL_MS));
    for e in &live_distinct {
        model.insert(*e, now);
    }
    while model.len() > cap {
        let oldest = model
            .iter()
            .filter(|(e, _)| !live_distinct.contains(e))
            .map(|(e, t)| (*t, endpoint_key(*e), *e))
            .min()
            .unwrap();
        model.remove(&oldest.2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn flush_matches_model(
        ops in proptest::collection::vec(
            (proptest::collection::vec(0u16..12, 0..8), -2_000_000i64..3_000_000),
            1..8,
        ),
        cap in 1usize..8,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = PeerStore::open_with_limit(tmp.path(), cap).unwrap();
        let mut model = HashMap::new();
        let mut now = T0;
        for (live, step) in ops {
            now = now.checked_add_signed(step).unwrap();
            let live: Vec<_> = live.into_iter().map(ep).collect();
            let stats = store.flush(&live, now).unwrap();
            model_flush(&mut model, &live, now, cap);
            prop_assert_eq!(stats.stored, model.len());
            let mut got = store.load(now);
            let mut want: Vec<_> = model.iter().map(|(e, t)| (*e, *t)).collect();
            prop_assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "most recent first");
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }
        drop(store);
        let mut raw: Vec<_> = raw_entries(tmp.path(), PEERS)
            .into_iter()
            .map(|(k, v)| (parse_endpoint_key(&k).unwrap(), u64::from_be_bytes(v.try_into().unwrap())))
            .collect();
        let mut want: Vec<_> = model.into_iter().collect();
        raw.sort();
        want.sort();
        prop_assert_eq!(raw, want);
    }
}

// ---------------------------------------------------------------------------------------------
// Online-weight samples

#[test]
fn samples_are_capped_oldest_dropped_and_persist() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = PeerStore::open(tmp.path()).unwrap();
    assert_eq!(store.samples(), Vec::<u128>::new());
    let big = 60_000 * 10u128.pow(33);
    for i in 0..5u64 {
        store
            .put_sample(T0 + i * 300_000, big + u128::from(i), 3)
            .unwrap();
    }
    assert_eq!(store.samples(), vec![big + 2, big + 3, big + 4]);
    // Same timestamp replaces.
    store.put_sample(T0 + 4 * 300_000, u128::MAX, 3).unwrap();
    assert_eq!(store.samples(), vec![big + 2, big + 3, u128::MAX]);
    drop(store);

    let raw = raw_entries(tmp.path(), ONLINE_WEIGHT);
    assert_eq!(raw.len(), 3);
    assert_eq!(raw[0].0, (T0 + 2 * 300_000).to_be_bytes());
    assert_eq!(raw[0].1, (big + 2).to_be_bytes());

    let mut store = PeerStore::open(tmp.path()).unwrap();
    assert_eq!(store.samples(), vec![big + 2, big + 3, u128::MAX]);
    // A smaller cap trims on the next put; an older sample than all is dropped at once.
    store.put_sample(T0, 1, 2).unwrap();
    assert_eq!(store.samples(), vec![big + 3, u128::MAX]);
    store.put_sample(T0 + 10_000_000, 5, 0).unwrap();
    assert_eq!(store.samples(), Vec::<u128>::new());
    drop(store);
    assert!(raw_entries(tmp.path(), ONLINE_WEIGHT).is_empty());
}

#[test]
fn samples_keep_4032() {
    let tmp = tempfile::tempdir().unwrap();
    PeerStore::open(tmp.path()).unwrap();
    // 4100 stored samples (e.g. written with a larger cap), in one transaction.
    let keys: Vec<[u8; 8]> = (0..4100u64).map(|i| (T0 + i).to_be_bytes()).collect();
    let values: Vec<[u8; 16]> = (0..4100u128).map(|i| i.to_be_bytes()).collect();
    let entries: Vec<(&[u8], &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    raw_insert(tmp.path(), ONLINE_WEIGHT, &entries);
    let mut store = PeerStore::open(tmp.path()).unwrap();
    assert_eq!(store.samples().len(), 4100);
    store.put_sample(T0 + 5000, 5000, 4032).unwrap();
    let samples = store.samples();
    assert_eq!(samples.len(), 4032);
    assert_eq!(samples[0], 4100 - 4031);
    assert_eq!(samples[4030], 4099);
    assert_eq!(samples[4031], 5000);
    drop(store);
    assert_eq!(raw_entries(tmp.path(), ONLINE_WEIGHT).len(), 4032);
}

// ---------------------------------------------------------------------------------------------
// Errors

fn assert_names(err: &StoreError, path: &Path) {
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "error {text:?} does not name {}",
        path.display()
    );
}

#[test]
fn file_where_data_dir_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("data");
    fs::write(&file, b"not a directory").unwrap();
    let err = PeerStore::open(&file).unwrap_err();
    assert!(
        matches!(err, StoreError::DataDirNotDirectory { .. }),
        "{err:?}"
    );
    assert_names(&err, &file);
    // A file as a parent of the data directory.
    let below = file.join("sub");
    let err = ensure_data_dir(&below).unwrap_err();
    assert!(
        matches!(err, StoreError::DataDirNotDirectory { .. }),
        "{err:?}"
    );
    assert_names(&err, &below);
    let err = load_or_create_node_key(&file, &mut ChaCha20Rng::seed_from_u64(1)).unwrap_err();
    assert!(
        matches!(err, StoreError::DataDirNotDirectory { .. }),
        "{err:?}"
    );
}

#[test]
fn directory_where_db_file_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join(DB_FILE_NAME);
    fs::create_dir(&db).unwrap();
    let err = PeerStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAFile { .. }), "{err:?}");
    assert_names(&err, &db);
}

#[test]
fn data_dir_created_0700_with_parents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/data");
    let store = PeerStore::open(&dir).unwrap();
    assert_eq!(store.path(), dir.join(DB_FILE_NAME));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&tmp.path().join("a")), 0o700);
    // The write probe is gone.
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(DB_FILE_NAME)]);
}

#[test]
fn unwritable_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    if permission_bits_ignored(tmp.path()) {
        eprintln!("skipped: running with permission override (root)");
        return;
    }
    let dir = tmp.path().join("ro");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
    let err = PeerStore::open(&dir).unwrap_err();
    assert!(
        matches!(err, StoreError::DataDirNotWritable { .. }),
        "{err:?}"
    );
    assert_names(&err, &dir);
    let err = load_or_create_node_key(&dir, &mut ChaCha20Rng::seed_from_u64(1)).unwrap_err();
    assert!(
        matches!(err, StoreError::DataDirNotWritable { .. }),
        "{err:?}"
    );
    // An existing read-only database file.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    PeerStore::open(&dir).unwrap();
    fs::set_permissions(dir.join(DB_FILE_NAME), fs::Permissions::from_mode(0o400)).unwrap();
    let err = PeerStore::open(&dir).unwrap_err();
    assert!(matches!(err, StoreError::DbOpen { .. }), "{err:?}");
    assert_names(&err, &dir.join(DB_FILE_NAME));
    assert!(
        err.to_string().to_lowercase().contains("permission denied"),
        "{err}"
    );
}

#[test]
fn garbage_file_is_an_error_not_a_fresh_store() {
    let garbage: Vec<Vec<u8>> = vec![
        vec![0x42],
        b"SQLite format 3\0".repeat(300),
        (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        vec![0xff; 4096],
        vec![0; 4096],
    ];
    for bytes in garbage {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join(DB_FILE_NAME);
        fs::write(&db, &bytes).unwrap();
        let err = PeerStore::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::DbCorrupt { .. }), "{err:?}");
        assert_names(&err, &db);
        assert_eq!(fs::read(&db).unwrap(), bytes, "the file is left untouched");
    }
}

/// Damages single bytes every `stride` bytes of a real store and opens each copy: it either opens
/// with every entry intact or fails with an error naming the file; it never panics.
fn damage_sweep(stride: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let live: Vec<_> = (0..300).map(ep).collect();
    {
        let mut store = PeerStore::open(tmp.path()).unwrap();
        store.flush(&live, T0).unwrap();
        store.put_sample(T0, 77, 10).unwrap();
    }
    let pristine = fs::read(tmp.path().join(DB_FILE_NAME)).unwrap();
    let (mut errors, mut cases) = (0, 0);
    for offset in (0..pristine.len()).step_by(stride) {
        let mut bytes = pristine.clone();
        bytes[offset] ^= 0x5a;
        let case = tempfile::tempdir().unwrap();
        let path = case.path().join(DB_FILE_NAME);
        fs::write(&path, &bytes).unwrap();
        match PeerStore::open(case.path()) {
            Ok(store) => {
                let mut got: Vec<_> = store.load(T0).into_iter().map(|(e, _)| e).collect();
                got.sort();
                let mut want = live.clone();
                want.sort();
                assert_eq!(got, want, "offset {offset}: opened with damaged contents");
                assert_eq!(store.samples(), vec![77], "offset {offset}");
            }
            Err(err) => {
                assert!(matches!(err, StoreError::DbCorrupt { .. }), "{err:?}");
                assert_names(&err, &path);
                errors += 1;
            }
        }
        cases += 1;
    }
    eprintln!("{errors} errors in {cases} cases, {} bytes", pristine.len());
    assert!(errors > 0, "no damage detected in {cases} cases");
}

#[test]
fn damaged_database_never_panics() {
    damage_sweep(1531);
}

/// The same over many more offsets (about 1200 opens).
#[test]
#[ignore = "slow: about 5 s"]
fn damaged_database_never_panics_thorough() {
    damage_sweep(61);
}

#[test]
fn second_open_is_refused_as_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = PeerStore::open(tmp.path()).unwrap();
    let err = PeerStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::DbLocked { .. }), "{err:?}");
    assert_names(&err, &tmp.path().join(DB_FILE_NAME));
}

// ---------------------------------------------------------------------------------------------
// Node ID key

#[test]
fn node_key_created_0600_and_reloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = load_or_create_node_key(&dir, &mut ChaCha20Rng::seed_from_u64(7)).unwrap();
    assert!(first.created);
    let path = dir.join(KEY_FILE_NAME);
    assert_eq!(first.path, path);
    assert_eq!(mode(&path), 0o600);

    let mut expected = [0u8; 32];
    rand::RngCore::fill_bytes(&mut ChaCha20Rng::seed_from_u64(7), &mut expected);
    assert_eq!(first.secret.expose_secret(), &expected);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}\n", hex::encode_upper(expected))
    );
    // Only the key file is left behind.
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE_NAME)]);

    // A different RNG on reload: the stored key wins.
    let second = load_or_create_node_key(&dir, &mut ChaCha20Rng::seed_from_u64(8)).unwrap();
    assert!(!second.created);
    assert_eq!(second.secret.expose_secret(), &expected);
}

#[test]
fn node_key_debug_hides_the_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let key = load_or_create_node_key(tmp.path(), &mut StdRng::seed_from_u64(3)).unwrap();
    let upper = hex::encode_upper(key.secret.expose_secret());
    let lower = hex::encode(key.secret.expose_secret());
    let debug = format!("{key:?} {:?}", key.secret);
    assert!(debug.contains("redacted"));
    assert!(
        !debug.contains(&upper[..8]) && !debug.contains(&lower[..8]),
        "{debug}"
    );
    let bytes = format!("{:?}", key.secret.expose_secret());
    assert!(!debug.contains(&bytes[1..20]));
}

#[test]
fn node_key_accepts_lower_case_and_whitespace() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(KEY_FILE_NAME);
    let key: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
    fs::write(&path, format!("  {}\r\n\n", hex::encode(key))).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let loaded = load_or_create_node_key(tmp.path(), &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
    assert!(!loaded.created);
    assert_eq!(loaded.secret.expose_secret(), &key);
    // 0400 is fine too.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    load_or_create_node_key(tmp.path(), &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
}

#[test]
fn node_key_with_bad_content_is_refused() {
    let good = "AB".repeat(32);
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\n".to_vec(),
        good.as_bytes()[..63].to_vec(),
        format!("{good}0").into_bytes(),
        format!("{}ZZ", &good[..62]).into_bytes(),
        format!("{good} {good}").into_bytes(),
        vec![b'A'; 4096],
        [good.as_bytes(), &[0xff]].concat(),
    ];
    for content in cases {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(KEY_FILE_NAME);
        fs::write(&path, &content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err =
            load_or_create_node_key(tmp.path(), &mut ChaCha20Rng::seed_from_u64(1)).unwrap_err();
        assert!(
            matches!(err, StoreError::KeyMalformed { .. }),
            "{content:?}: {err:?}"
        );
        assert_names(&err, &path);
        assert_eq!(
            fs::read(&path).unwrap(),
            content,
            "a bad key file is never replaced"
        );
    }
}

#[test]
fn node_key_open_to_others_is_refused() {
    for bad_mode in [0o644, 0o640, 0o604, 0o660, 0o666] {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(KEY_FILE_NAME);
        fs::write(&path, "AB".repeat(32)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(bad_mode)).unwrap();
        let err =
            load_or_create_node_key(tmp.path(), &mut ChaCha20Rng::seed_from_u64(1)).unwrap_err();
        match &err {
            StoreError::KeyPermissions { mode, .. } => assert_eq!(*mode, bad_mode),
            other => panic!("{other:?}"),
        }
        assert_names(&err, &path);
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(
            !err.to_string().contains(&"AB".repeat(4)),
            "no key material in the error"
        );
        assert_eq!(mode(&path), bad_mode, "the file is not changed");
    }
}

#[test]
fn node_key_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(KEY_FILE_NAME);
    fs::create_dir(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
    let err = load_or_create_node_key(tmp.path(), &mut ChaCha20Rng::seed_from_u64(1)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotAFile { .. } | StoreError::KeyRead { .. }
        ),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn stale_temp_key_file_is_replaced_with_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let stale = tmp.path().join("node_id_private.key.tmp");
    fs::write(&stale, "junk").unwrap();
    fs::set_permissions(&stale, fs::Permissions::from_mode(0o666)).unwrap();
    let key = load_or_create_node_key(tmp.path(), &mut ChaCha20Rng::seed_from_u64(2)).unwrap();
    assert!(key.created);
    assert!(!stale.exists());
    assert_eq!(mode(&key.path), 0o600);
}

// ---------------------------------------------------------------------------------------------
// Crash safety: a child process flushes in a loop and is killed with SIGKILL mid-write.

const CHILD_DIR_ENV: &str = "NANOPEER_STORE_CRASH_DIR";
const CHILD_BASE_ENV: &str = "NANOPEER_STORE_CRASH_BASE";
const CRASH_UNIVERSE: u16 = 64;
const CRASH_ROUND_MS: u64 = 100_000_000;
const CRASH_MAX_SAMPLES: usize = 16;

/// Child-process entry of `killed_writer_leaves_a_consistent_store`; returns at once unless the
/// parent set the environment. Flushes forever with time advancing 1 s per flush.
#[test]
fn crash_child_entry() {
    let (Ok(dir), Ok(base)) = (std::env::var(CHILD_DIR_ENV), std::env::var(CHILD_BASE_ENV)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let base: u64 = base.parse().unwrap();
    let mut store = PeerStore::open(&dir).unwrap();
    let mut n: u64 = 0;
    loop {
        let now = base + n * 1000;
        let live: Vec<_> = (0..CRASH_UNIVERSE)
            .filter(|i| !(u64::from(*i) + n).is_multiple_of(3))
            .map(ep)
            .collect();
        store.flush(&live, now).unwrap();
        if n.is_multiple_of(4) {
            store
                .put_sample(now, u128::from(n) << 64, CRASH_MAX_SAMPLES)
                .unwrap();
        }
        if n == 0 {
            fs::write(dir.join("ready"), b"").unwrap();
        }
        n += 1;
    }
}

#[test]
fn killed_writer_leaves_a_consistent_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let exe = std::env::current_exe().unwrap();
    let universe: Vec<[u8; 18]> = (0..CRASH_UNIVERSE).map(|i| endpoint_key(ep(i))).collect();
    // Delays after the child's first durable flush, in ms.
    let delays = [0u64, 3, 17, 41, 9, 70, 1, 25, 2, 55, 13, 5, 33, 0, 8, 21];
    for (round, delay) in delays.iter().enumerate() {
        let base = T0 + round as u64 * CRASH_ROUND_MS;
        let _ = fs::remove_file(dir.join("ready"));
        let mut child = Command::new(&exe)
            .args([
                "crash_child_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, &dir)
            .env(CHILD_BASE_ENV, base.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !dir.join("ready").exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("child exited early with {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "child never got ready"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(*delay));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: child was not killed");

        // Reopen: it opens, nothing is malformed, every entry is one the child could have written.
        let store = PeerStore::open(&dir).unwrap();
        assert_eq!(store.malformed(), Default::default(), "round {round}");
        drop(store);
        let raw_times: Vec<u64> = raw_entries(&dir, PEERS)
            .into_iter()
            .map(|(key, value)| {
                assert!(universe.iter().any(|u| u.as_slice() == key.as_slice()));
                u64::from_be_bytes(value.try_into().unwrap())
            })
            .collect();
        let store = PeerStore::open(&dir).unwrap();
        let now = *raw_times.iter().max().expect("the first flush was durable");
        let peers = store.load(now);
        assert_eq!(
            peers.len(),
            store.len(),
            "round {round}: all within the hour"
        );
        assert_eq!(peers.len(), raw_times.len());

        // The state is exactly the one after some committed flush `n` of this round (flush 0 was
        // durable before `ready` was written, and it expired everything of earlier rounds): each
        // endpoint carries the time of the last flush up to `n` that included it.
        assert!(
            now >= base && (now - base).is_multiple_of(1000),
            "round {round}: {now}"
        );
        let n = (now - base) / 1000;
        let mut expected: Vec<(Endpoint, u64)> = (0..CRASH_UNIVERSE)
            .filter_map(|i| {
                (0..=n)
                    .rev()
                    .take(3)
                    .find(|m| (u64::from(i) + m) % 3 != 0)
                    .map(|m| (ep(i), base + m * 1000))
            })
            .collect();
        let mut got = peers.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "round {round}: not a committed state");

        // The newest sample is from flush n (rounded down to a multiple of 4), or the one
        // before if the kill came between the flush and the sample.
        let samples = store.samples();
        assert!(!samples.is_empty() && samples.len() <= CRASH_MAX_SAMPLES);
        for weight in &samples {
            assert_eq!(*weight as u64, 0);
            assert_eq!((weight >> 64) % 4, 0);
        }
        let last = (samples[samples.len() - 1] >> 64) as u64;
        let f = n - n % 4;
        assert!(
            last == f || last + 4 == f,
            "round {round}: sample {last}, flush {n}"
        );
        eprintln!("round {round}: {} peers after flush {n}", peers.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Disk full: a child process limits its file size (RLIMIT_FSIZE, SIGXFSZ ignored, so writes past
// the limit fail with EFBIG as on a full disk) and flushes ever larger batches.

const FULL_DIR_ENV: &str = "NANOPEER_STORE_FULL_DIR";

/// Child-process entry of `full_disk_is_a_write_error`; returns at once unless the parent set the
/// environment.
#[test]
fn full_disk_child_entry() {
    let Ok(dir) = std::env::var(FULL_DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let mut store = PeerStore::open(&dir).unwrap();
    store.flush(&[ep(0)], T0).unwrap();
    let db = dir.join(DB_FILE_NAME);
    let size = fs::metadata(&db).unwrap().len();
    nanopeer::io::ignore_file_size_signal().unwrap();
    nanopeer::io::set_file_size_limit(Some(size)).unwrap();
    let mut committed = 1u16;
    let mut failed = None;
    for round in 1..=40u16 {
        let n = round * 200;
        let live: Vec<_> = (0..n).map(ep).collect();
        match store.flush(&live, T0 + u64::from(round)) {
            Ok(_) => committed = n,
            Err(err) => {
                failed = Some(err);
                break;
            }
        }
    }
    let err = failed.expect("the file size limit was never hit");
    assert!(matches!(err, StoreError::DbWrite { .. }), "{err:?}");
    assert_names(&err, &db);
    eprintln!("{err}");
    // The store keeps answering from its last committed state.
    assert_eq!(store.len(), usize::from(committed));
    assert_eq!(store.load(T0 + 100).len(), usize::from(committed));
    fs::write(dir.join("committed"), committed.to_string()).unwrap();
    // Still full: the next write reopens the file and fails again, cleanly.
    let err = store
        .flush(&(0..8000).map(ep).collect::<Vec<_>>(), T0 + 100)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DbWrite { .. } | StoreError::DbOpen { .. }),
        "{err:?}"
    );
    // Space again: the store recovers without a restart.
    nanopeer::io::set_file_size_limit(None).unwrap();
    let live: Vec<_> = (0..3000).map(ep).collect();
    let stats = store.flush(&live, T0 + 101).unwrap();
    assert_eq!(stats.stored, 3000);
    fs::write(dir.join("recovered"), b"").unwrap();
}

#[test]
fn full_disk_is_a_write_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "full_disk_child_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FULL_DIR_ENV, &dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed: {stderr}");
    assert!(stderr.contains("cannot write peer store"), "{stderr}");
    let committed: usize = fs::read_to_string(dir.join("committed"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(committed >= 1);
    assert!(dir.join("recovered").exists());
    let store = PeerStore::open(&dir).unwrap();
    assert_eq!(store.malformed(), Default::default());
    let mut loaded = store.load(T0 + 101);
    loaded.sort();
    let mut want: Vec<_> = (0..3000).map(|i| (ep(i), T0 + 101)).collect();
    want.sort();
    assert_eq!(loaded, want);
}
