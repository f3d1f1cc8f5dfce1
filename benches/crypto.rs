//! Crypto throughput: single verification (cached and fresh keys), batches of 1–256 (cached
//! and fresh keys), signing and key derivation.
//!
//! `cargo bench --bench crypto -- --warm-up-time 1 --measurement-time 3`
//! Per-signature rates are criterion's "thrpt" (elements/s). Compare ratios within one run.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nanopeer::crypto::{
    BatchVerifier, KeyPair, TorsionPolicy, VerifyingKey, block_hash, deterministic_key,
    genesis_block, verify, vote_hash, work_value,
};
use nanopeer::types::{BlockHash, Network, PublicKey, Signature};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const SIZES: [usize; 6] = [1, 2, 4, 16, 64, 256];

/// `n` signed 32-byte messages (vote hashes) from `keys` distinct keys.
fn items(n: usize, keys: usize) -> Vec<(PublicKey, [u8; 32], Signature)> {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let pairs: Vec<KeyPair> = (0..keys).map(|_| KeyPair::generate(&mut rng)).collect();
    (0..n)
        .map(|i| {
            let mut msg = [0u8; 32];
            rng.fill_bytes(&mut msg);
            let pair = &pairs[i % keys];
            (pair.public(), msg, pair.sign(&msg))
        })
        .collect()
}

fn single(c: &mut Criterion) {
    let set = items(256, 256);
    let keys: Vec<VerifyingKey> = set
        .iter()
        .map(|(k, _, _)| VerifyingKey::from_public(k).unwrap())
        .collect();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("single_cached_key", |b| {
        b.iter(|| {
            i = (i + 1) % set.len();
            let (_, msg, sig) = &set[i];
            assert!(keys[i].verify(black_box(msg), black_box(sig)));
        })
    });
    g.bench_function("single_fresh_key", |b| {
        b.iter(|| {
            i = (i + 1) % set.len();
            let (key, msg, sig) = &set[i];
            assert!(verify(black_box(msg), black_box(sig), black_box(key)));
        })
    });
    g.finish();
}

fn batch(c: &mut Criterion) {
    let set = items(256, 256);
    let keys: Vec<VerifyingKey> = set
        .iter()
        .map(|(k, _, _)| {
            let vk = VerifyingKey::from_public(k).unwrap();
            assert!(vk.is_torsion_free()); // computed once, as a cache insert would
            vk
        })
        .collect();
    let mut rng = rand::rng();
    let mut g = c.benchmark_group("batch");
    for n in SIZES {
        g.throughput(Throughput::Elements(n as u64));
        let mut bv = BatchVerifier::new(n);
        g.bench_with_input(BenchmarkId::new("cached_key", n), &n, |b, &n| {
            b.iter(|| {
                for ((_, msg, sig), key) in set[..n].iter().zip(&keys) {
                    bv.push_key(key, msg, sig).unwrap();
                }
                assert!(bv.verify(&mut rng).iter().all(|&r| r));
            })
        });
        g.bench_with_input(BenchmarkId::new("fresh_key", n), &n, |b, &n| {
            b.iter(|| {
                for (key, msg, sig) in &set[..n] {
                    bv.push(key, msg, sig).unwrap();
                }
                assert!(bv.verify(&mut rng).iter().all(|&r| r));
            })
        });
    }
    // Vote-like traffic: 64 or 256 signatures from 8 representatives share their key points.
    let reps = items(256, 8);
    let rep_keys: Vec<VerifyingKey> = reps
        .iter()
        .map(|(k, _, _)| VerifyingKey::from_public(k).unwrap())
        .collect();
    for n in [64, 256] {
        g.throughput(Throughput::Elements(n as u64));
        let mut bv = BatchVerifier::new(n);
        g.bench_with_input(BenchmarkId::new("cached_8_keys", n), &n, |b, &n| {
            b.iter(|| {
                for ((_, msg, sig), key) in reps[..n].iter().zip(&rep_keys) {
                    bv.push_key(key, msg, sig).unwrap();
                }
                assert!(bv.verify(&mut rng).iter().all(|&r| r));
            })
        });
    }
    // The fully exact option: the single equation per item, one shared inversion.
    let n = 64;
    g.throughput(Throughput::Elements(n as u64));
    let mut bv = BatchVerifier::with_policy(n, TorsionPolicy::Exact);
    g.bench_with_input(BenchmarkId::new("cached_key_exact", n), &n, |b, &n| {
        b.iter(|| {
            for ((_, msg, sig), key) in set[..n].iter().zip(&keys) {
                bv.push_key(key, msg, sig).unwrap();
            }
            assert!(bv.verify(&mut rng).iter().all(|&r| r));
        })
    });
    // Mixed traffic: one bad signature per batch of 64 forces the per-item fallback.
    let mut bad = set[..n].to_vec();
    bad[10].2.0[40] ^= 1;
    let mut bv = BatchVerifier::new(n);
    g.bench_with_input(BenchmarkId::new("cached_key_one_bad", n), &n, |b, _| {
        b.iter(|| {
            for ((_, msg, sig), key) in bad.iter().zip(&keys) {
                bv.push_key(key, msg, sig).unwrap();
            }
            assert_eq!(bv.verify(&mut rng).iter().filter(|&&r| !r).count(), 1);
        })
    });
    g.finish();
}

fn keys(c: &mut Criterion) {
    let pair = KeyPair::from_private([7; 32]);
    let msg = [9u8; 96];
    let mut g = c.benchmark_group("keys");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_96_bytes", |b| b.iter(|| pair.sign(black_box(&msg))));
    let mut seed = 0u8;
    g.bench_function("from_private", |b| {
        b.iter(|| {
            seed = seed.wrapping_add(1);
            KeyPair::from_private(black_box([seed; 32]))
        })
    });
    g.bench_function("deterministic_key", |b| {
        b.iter(|| deterministic_key(black_box(&[1; 32]), black_box(3)))
    });
    let set = items(64, 64);
    let mut i = 0;
    g.bench_function("verifying_key_with_torsion_test", |b| {
        b.iter(|| {
            i = (i + 1) % set.len();
            let vk = VerifyingKey::from_public(&set[i].0).unwrap();
            vk.is_torsion_free()
        })
    });
    g.finish();
}

fn hashes(c: &mut Criterion) {
    let block = genesis_block(Network::Live);
    let hashes = [BlockHash([5; 32]); 12];
    let mut g = c.benchmark_group("hash");
    g.bench_function("block_hash_open", |b| {
        b.iter(|| block_hash(black_box(&block)))
    });
    g.bench_function("vote_hash_12", |b| {
        b.iter(|| vote_hash(black_box(&hashes), black_box(u64::MAX)))
    });
    g.bench_function("work_value", |b| {
        b.iter(|| work_value(black_box(&hashes[0]), black_box(42)))
    });
    g.finish();
}

criterion_group!(benches, single, batch, keys, hashes);
criterion_main!(benches);
