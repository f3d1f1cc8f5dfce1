//! Single verification with ed25519-donna semantics (§5.1), decompressed keys and a key cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, OnceLock};

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::traits::IsIdentity;
use curve25519_dalek::{EdwardsPoint, Scalar};

use super::keys::challenge;
use crate::types::{PublicKey, Signature};

/// The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian.
pub(crate) const L_BYTES: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// True when S passes donna's only range check, S < 2^253 (`sig[63] & 0xE0 == 0`).
#[inline]
pub(crate) fn s_in_range(sig: &Signature) -> bool {
    sig.0[63] & 0xE0 == 0
}

/// The y coordinate of an encoding (sign bit cleared) is ≥ p = 2^255 − 19, i.e. not canonical.
#[inline]
pub(crate) fn y_overflows(bytes: &[u8; 32]) -> bool {
    bytes[31] & 0x7F == 0x7F && bytes[1..31].iter().all(|&b| b == 0xFF) && bytes[0] >= 0xED
}

/// The canonical y bytes of the eight points of small order (sign bit cleared).
static SMALL_ORDER_Y: LazyLock<[[u8; 32]; 8]> = LazyLock::new(|| {
    EIGHT_TORSION.map(|p| {
        let mut y = p.compress().to_bytes();
        y[31] &= 0x7F;
        y
    })
});

/// True when `bytes` decode (if at all) to a point of small order (8·P = identity). Looks at y
/// only, reduced mod p, so non-canonical encodings are covered too; costs a few compares.
pub(crate) fn encoding_is_small_order(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7F;
    if y_overflows(&y) {
        // y − p: only the low byte survives (y < 2^255 = p + 19).
        let low = y[0] - 0xED;
        y = [0u8; 32];
        y[0] = low;
    }
    SMALL_ORDER_Y.contains(&y)
}

/// True when `p` lies in the prime-order subgroup (L·P = identity); variable time.
pub(crate) fn is_torsion_free(p: &EdwardsPoint) -> bool {
    let l = Scalar::from_bits(L_BYTES);
    EdwardsPoint::vartime_double_scalar_mul_basepoint(&l, p, &Scalar::ZERO).is_identity()
}

/// donna's final check: encode(S·B + k·(−A)) == R bytes. `k` must be the canonical challenge
/// (the integer in [0, L)) and the point −A itself (not a negated scalar), so that a key with a
/// torsion component is multiplied exactly as donna does.
#[inline]
pub(crate) fn single_equation(k: &Scalar, neg_a: &EdwardsPoint, s: &Scalar, r: &[u8]) -> bool {
    EdwardsPoint::vartime_double_scalar_mul_basepoint(k, neg_a, s)
        .compress()
        .as_bytes()
        == r
}

fn verify_with_point(msg: &[u8], sig: &Signature, key: &[u8; 32], neg_a: &EdwardsPoint) -> bool {
    if !s_in_range(sig) {
        return false;
    }
    let k = challenge(&sig.0[..32], key, msg);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig.0[32..]);
    let s = Scalar::from_bytes_mod_order(s_bytes);
    single_equation(&k, neg_a, &s, &sig.0[..32])
}

/// Verifies `sig` over `msg` by `key` with ed25519-donna semantics (§5.1): reject when
/// `sig[63] & 0xE0 ≠ 0` or A does not decompress; accept iff encode(S·B − k·A) equals the R
/// bytes, k = Blake2b-512(R ‖ A ‖ M) mod L. No cofactor, no small-order or canonical-R checks.
pub fn verify(msg: &[u8], sig: &Signature, key: &PublicKey) -> bool {
    if !s_in_range(sig) {
        return false;
    }
    match CompressedEdwardsY(key.0).decompress() {
        Some(a) => verify_with_point(msg, sig, &key.0, &-a),
        None => false,
    }
}

/// A public key decompressed once, for repeated verification (representatives, node ids).
#[derive(Clone)]
pub struct VerifyingKey {
    public: PublicKey,
    /// −A, the form donna multiplies.
    neg_point: EdwardsPoint,
    small_order: bool,
    torsion_free: OnceLock<bool>,
}

impl VerifyingKey {
    /// Decompresses `key`; `None` when it is not a curve point (every signature by it is invalid).
    pub fn from_public(key: &PublicKey) -> Option<VerifyingKey> {
        let a = CompressedEdwardsY(key.0).decompress()?;
        Some(VerifyingKey {
            public: *key,
            neg_point: -a,
            small_order: encoding_is_small_order(&key.0),
            torsion_free: OnceLock::new(),
        })
    }

    /// The key's bytes as given (possibly a non-canonical encoding; they are what is hashed).
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Verifies `sig` over `msg`, exactly as [`verify`] but without decompressing the key.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        verify_with_point(msg, sig, &self.public.0, &self.neg_point)
    }

    /// True when the key is a point of small order (8·A = identity), e.g. the identity `0100…00`.
    pub fn is_small_order(&self) -> bool {
        self.small_order
    }

    /// True when the key lies in the prime-order subgroup. Computed on first call (one scalar
    /// multiplication) and remembered.
    pub fn is_torsion_free(&self) -> bool {
        *self
            .torsion_free
            .get_or_init(|| is_torsion_free(&self.neg_point))
    }

    pub(crate) fn neg_point(&self) -> &EdwardsPoint {
        &self.neg_point
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("public", &self.public)
            .field("small_order", &self.small_order)
            .finish_non_exhaustive()
    }
}

struct Slot {
    key: VerifyingKey,
    referenced: bool,
}

/// A bounded cache of decompressed public keys with CLOCK (second-chance) eviction, so repeat
/// keys skip decompression. Keys that do not decompress are not cached.
pub struct KeyCache {
    index: HashMap<PublicKey, usize>,
    slots: Vec<Slot>,
    hand: usize,
    capacity: usize,
}

impl KeyCache {
    /// An empty cache holding at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> KeyCache {
        let capacity = capacity.max(1);
        KeyCache {
            index: HashMap::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            hand: 0,
            capacity,
        }
    }

    /// The most keys the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// True when `key` is held (does not count as a use).
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.index.contains_key(key)
    }

    /// The decompressed form of `key`, inserting it (and evicting another) on a miss; `None`
    /// when `key` is not a curve point.
    pub fn get(&mut self, key: &PublicKey) -> Option<&VerifyingKey> {
        if let Some(&i) = self.index.get(key) {
            let slot = &mut self.slots[i];
            slot.referenced = true;
            return Some(&slot.key);
        }
        let vk = VerifyingKey::from_public(key)?;
        let i = if self.slots.len() < self.capacity {
            self.slots.push(Slot {
                key: vk,
                referenced: false,
            });
            self.slots.len() - 1
        } else {
            let victim = loop {
                let i = self.hand;
                self.hand = (self.hand + 1) % self.capacity;
                let slot = &mut self.slots[i];
                if slot.referenced {
                    slot.referenced = false;
                } else {
                    break i;
                }
            };
            let old = self.slots[victim].key.public;
            self.index.remove(&old);
            self.slots[victim] = Slot {
                key: vk,
                referenced: false,
            };
            victim
        };
        self.index.insert(*key, i);
        Some(&self.slots[i].key)
    }

    /// Verifies `sig` over `msg` by `key` (as [`verify`]), decompressing `key` only on a miss.
    pub fn verify(&mut self, msg: &[u8], sig: &Signature, key: &PublicKey) -> bool {
        if !s_in_range(sig) {
            return false;
        }
        match self.get(key) {
            Some(vk) => vk.verify(msg, sig),
            None => false,
        }
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("len", &self.slots.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;

    #[test]
    fn small_order_table_matches_cofactor_multiplication() {
        for t in EIGHT_TORSION {
            let enc = t.compress().to_bytes();
            assert!(encoding_is_small_order(&enc));
            let p = ED25519_BASEPOINT_POINT * Scalar::from(12345u64) + t;
            assert!(!encoding_is_small_order(&p.compress().to_bytes()));
            assert_eq!(is_torsion_free(&p), t.is_identity());
            assert_eq!(is_torsion_free(&p), p.is_torsion_free());
        }
        // Non-canonical encodings of y = 0 and y = 1 (y + p) are small order too.
        let mut y0 = [0xFFu8; 32];
        y0[0] = 0xED;
        y0[31] = 0x7F;
        assert!(y_overflows(&y0));
        assert!(encoding_is_small_order(&y0));
        let p0 = CompressedEdwardsY(y0).decompress().unwrap();
        assert!(p0.is_small_order());
        let mut y1 = y0;
        y1[0] = 0xEE;
        assert!(encoding_is_small_order(&y1));
        assert!(
            CompressedEdwardsY(y1)
                .decompress()
                .unwrap()
                .is_small_order()
        );
        let mut y2 = y0;
        y2[0] = 0xEF;
        assert!(!encoding_is_small_order(&y2));
    }

    #[test]
    fn cache_evicts_and_stays_bounded() {
        let mut cache = KeyCache::new(3);
        let keys: Vec<PublicKey> = (1u64..=6)
            .map(|i| {
                PublicKey(
                    (ED25519_BASEPOINT_POINT * Scalar::from(i))
                        .compress()
                        .to_bytes(),
                )
            })
            .collect();
        for k in &keys[..3] {
            assert!(cache.get(k).is_some());
        }
        assert_eq!(cache.len(), 3);
        // Touch key 0 so it survives the next insertion.
        cache.get(&keys[0]);
        cache.get(&keys[3]);
        assert_eq!(cache.len(), 3);
        assert!(cache.contains(&keys[0]));
        assert!(cache.contains(&keys[3]));
        for k in &keys[4..] {
            cache.get(k);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(keys.iter().filter(|k| cache.contains(k)).count(), 3);
        // A non-point is refused and not cached.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert!(CompressedEdwardsY(bad).decompress().is_none());
        assert!(cache.get(&PublicKey(bad)).is_none());
        assert!(!cache.contains(&PublicKey(bad)));
    }
}
