//! Ed25519-Blake2b and the hashes of the protocol (spec §5).
//!
//! Ed25519 with every SHA-512 replaced by Blake2b-512, written on curve25519-dalek so that the
//! semantics of nano-node's ed25519-donna are ours to match exactly (§5.1):
//!
//! * [`KeyPair`]: h = Blake2b-512(private key), a = clamp(h\[0..32\]), A = a·B. Signing is
//!   deterministic (r = Blake2b-512(h\[32..64\] ‖ M) mod L), which reproduces the pre-2018
//!   genesis signatures byte for byte; nano-node's own signatures are randomized but verify the
//!   same way.
//! * [`verify`]: reject when `sig[63] & 0xE0 ≠ 0` (S ≥ 2^253; S ≥ L is accepted) or when A does
//!   not decompress; accept iff encode(S·B − k·A) equals the R bytes, k = Blake2b-512(R ‖ A ‖ M)
//!   mod L. No cofactor, no small-order rejection, no canonical-R check, so the identity key
//!   `0100…00` and the two odd live-ledger signatures of §5.5 verify.
//! * [`NodeSecret`]: the node-id private key as stored, zeroed on drop.
//! * [`VerifyingKey`] and [`KeyCache`]: keys decompressed once for repeat signers.
//! * [`BatchVerifier`]: random-weight multiscalar batches whose per-item result equals [`verify`]
//!   (the precise residual under [`TorsionPolicy::Fast`] is documented in the batch module).
//! * Hashes and checks: [`block_hash`], [`vote_hash`], [`verify_block_signature`],
//!   [`work_value`] and [`WorkThresholds`], the genesis blocks, [`deterministic_key`].
//! * Account and node-id text: [`encode_account`], [`encode_node_id`], [`decode_account`].
//!
//! Nothing here reads a clock, opens a socket or spawns a thread; randomness comes in as an
//! argument. [`backend_name`] says which of curve25519-dalek's backends the CPU gets.

mod account;
pub mod batch;
mod hash;
mod keys;
mod verify;

pub use account::{decode_account, encode_account, encode_node_id};
pub use batch::{BatchStats, BatchVerifier, MAX_BATCH, TorsionPolicy};
pub use hash::{
    GENESIS_AMOUNT, WorkThresholds, block_hash, epoch_link, epoch_signer, genesis_account,
    genesis_block, genesis_hash, verify_block_signature, vote_hash, vote_hash_of_bytes, work_value,
};
pub use keys::{KeyPair, NodeSecret, deterministic_key};
pub use verify::{KeyCache, VerifyingKey, verify};

/// The curve25519-dalek backend that does this process's point arithmetic: `"avx512ifma"`,
/// `"avx2"` or `"serial"`.
///
/// curve25519-dalek picks it at run time, from the backends compiled in, by the CPU's features
/// (its `get_selected_backend`): AVX-512 IFMA + VL when the `avx512` backend is compiled in
/// (`.cargo/config.toml` sets `--cfg curve25519_dalek_backend="avx512"`, or the target has
/// those features), else AVX2 when the `simd` backend is (x86_64, 64-bit limbs), else serial.
/// This repeats that choice with the same inputs, so the name is what dalek uses.
pub fn backend_name() -> &'static str {
    // What dalek's build script compiles in, from the same cfgs and target features.
    const SIMD: bool = cfg!(all(
        target_arch = "x86_64",
        not(curve25519_dalek_bits = "32"),
        not(any(
            curve25519_dalek_backend = "serial",
            curve25519_dalek_backend = "fiat"
        ))
    ));
    const AVX512: bool = SIMD
        && cfg!(any(
            curve25519_dalek_backend = "avx512",
            all(
                not(curve25519_dalek_backend = "simd"),
                target_feature = "avx512ifma",
                target_feature = "avx512vl"
            )
        ));
    #[cfg(target_arch = "x86_64")]
    {
        if AVX512
            && std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "avx512ifma";
        }
        if SIMD && std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    let _ = (SIMD, AVX512);
    "serial"
}

/// What failed in the crypto module: account text that does not decode, or a full batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The text does not start with `nano_`, `nano-`, `xrb_`, `xrb-` or `node_`.
    #[error("account text must start with nano_, nano-, xrb_, xrb- or node_")]
    AccountPrefix,
    /// The part after the prefix is not 60 characters.
    #[error("account text has {0} digits after the prefix, expected 60")]
    AccountLength(usize),
    /// The first digit is not `1` or `3`.
    #[error("account text must start with 1 or 3 after the prefix")]
    AccountFirstDigit,
    /// A character outside the account alphabet.
    #[error("invalid account character {0:?}")]
    AccountCharacter(char),
    /// The checksum does not match the key.
    #[error("account checksum mismatch")]
    AccountChecksum,
    /// The batch verifier holds its capacity already.
    #[error("batch verifier is full")]
    BatchFull,
}

#[cfg(test)]
mod tests {
    /// The backend named is the one the CPU flags (`/proc/cpuinfo`, read independently of
    /// CPUID) and the compiled-in backends give.
    #[test]
    fn backend_name_follows_the_cpu_flags() {
        let name = super::backend_name();
        assert!(["avx512ifma", "avx2", "serial"].contains(&name), "{name}");
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            return;
        };
        let flags: Vec<&str> = info
            .lines()
            .find(|l| l.starts_with("flags"))
            .map(|l| l.split_ascii_whitespace().collect())
            .unwrap_or_default();
        let has = |f: &str| flags.contains(&f);
        let x86 = cfg!(target_arch = "x86_64");
        let expected = if x86
            && cfg!(curve25519_dalek_backend = "avx512")
            && has("avx512ifma")
            && has("avx512vl")
        {
            "avx512ifma"
        } else if x86 && has("avx2") && !has("avx512ifma") {
            "avx2"
        } else {
            // other combinations (IFMA without the avx512 cfg, no x86) need no fixed answer
            name
        };
        assert_eq!(name, expected);
    }
}
