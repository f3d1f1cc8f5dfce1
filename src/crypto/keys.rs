//! Key pairs, deterministic signing and seed derivation (§5.1, §5.3), and the node-id secret
//! that the peer store persists and the handshake signs with (§4.5).

use std::fmt;

use curve25519_dalek::{EdwardsPoint, Scalar};
use rand::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use crate::types::{PublicKey, Signature};

/// Blake2b-512 over the concatenation of `parts`, reduced mod L.
pub(crate) fn hash_to_scalar(parts: &[&[u8]]) -> Scalar {
    let mut state = blake2b_simd::State::new();
    for part in parts {
        state.update(part);
    }
    let mut wide = *state.finalize().as_array();
    let scalar = Scalar::from_bytes_mod_order_wide(&wide);
    wide.zeroize();
    scalar
}

/// The Ed25519 challenge k = Blake2b-512(R ‖ A ‖ M) mod L, with A as the key's bytes.
pub(crate) fn challenge(r: &[u8], a: &[u8; 32], msg: &[u8]) -> Scalar {
    hash_to_scalar(&[r, a, msg])
}

/// An Ed25519-Blake2b key pair: the 32-byte private key and what is derived from it.
///
/// The secret material is wiped when the value is dropped; `Debug` prints the public key only.
pub struct KeyPair {
    private: [u8; 32],
    /// The clamped secret scalar a, reduced mod L.
    scalar: Scalar,
    /// h[32..64], the nonce prefix.
    prefix: [u8; 32],
    public: PublicKey,
}

impl KeyPair {
    /// Derives the key pair of a 32-byte private key: h = Blake2b-512(prv), a = clamp(h[0..32]),
    /// A = a·B (§5.1).
    pub fn from_private(private: [u8; 32]) -> KeyPair {
        let mut h = *blake2b_simd::blake2b(&private).as_array();
        let mut a = [0u8; 32];
        a.copy_from_slice(&h[..32]);
        a[0] &= 0xF8;
        a[31] &= 0x7F;
        a[31] |= 0x40;
        let scalar = Scalar::from_bytes_mod_order(a);
        let mut prefix = [0u8; 32];
        prefix.copy_from_slice(&h[32..]);
        h.zeroize();
        a.zeroize();
        let public = PublicKey(EdwardsPoint::mul_base(&scalar).compress().to_bytes());
        KeyPair {
            private,
            scalar,
            prefix,
            public,
        }
    }

    /// A fresh random key pair.
    pub fn generate(rng: &mut impl CryptoRng) -> KeyPair {
        let mut private = [0u8; 32];
        rng.fill_bytes(&mut private);
        let pair = KeyPair::from_private(private);
        private.zeroize();
        pair
    }

    /// The public key (account or node id).
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The 32-byte private key, for persisting (e.g. `node_id_private.key` as hex).
    pub fn private_bytes(&self) -> &[u8; 32] {
        &self.private
    }

    /// Signs `msg` deterministically: r = Blake2b-512(h[32..64] ‖ M) mod L, R = r·B,
    /// S = r + Blake2b-512(R ‖ A ‖ M)·a mod L. nano-node verifies these signatures (§5.1).
    pub fn sign(&self, msg: &[u8]) -> Signature {
        let mut r = hash_to_scalar(&[&self.prefix, msg]);
        let big_r = EdwardsPoint::mul_base(&r).compress();
        let k = challenge(big_r.as_bytes(), &self.public.0, msg);
        let s = r + k * self.scalar;
        r.zeroize();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        Signature(sig)
    }
}

impl Clone for KeyPair {
    fn clone(&self) -> KeyPair {
        KeyPair {
            private: self.private,
            scalar: self.scalar,
            prefix: self.prefix,
            public: self.public,
        }
    }
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        self.private.zeroize();
        self.scalar.zeroize();
        self.prefix.zeroize();
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The node ID private key (§4.5), as the peer store loads it and the node identity takes it.
/// Zeroed on drop; `Debug` prints no key material.
pub struct NodeSecret(Zeroizing<[u8; 32]>);

impl NodeSecret {
    /// Wraps raw private-key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        NodeSecret(Zeroizing::new(bytes))
    }

    /// Takes bytes that are already in a zeroizing buffer, so that no plain copy of the key is
    /// left behind (the peer store reads and generates the key in such a buffer).
    pub(crate) fn from_zeroizing(bytes: Zeroizing<[u8; 32]>) -> Self {
        NodeSecret(bytes)
    }

    /// The raw private-key bytes. Do not log them.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for NodeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeSecret(<redacted>)")
    }
}

/// The wallet key at `index` of `seed`: Blake2b-256(seed ‖ index as u32 big-endian) (§5.3).
pub fn deterministic_key(seed: &[u8; 32], index: u32) -> [u8; 32] {
    let hash = blake2b_simd::Params::new()
        .hash_length(32)
        .to_state()
        .update(seed)
        .update(&index.to_be_bytes())
        .finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.as_bytes());
    out
}
