//! Account and node-id text: `nano_…` / `node_…` (§5.4).

use super::CryptoError;
use crate::types::PublicKey;

const ALPHABET: &[u8; 32] = b"13456789abcdefghijkmnopqrstuwxyz";

/// Digits after the prefix.
const DIGITS: usize = 60;

fn digit_value(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// Blake2b-40 of the key, byte-reversed: the last 40 bits of the encoded number.
fn checksum(key: &PublicKey) -> [u8; 5] {
    let hash = blake2b_simd::Params::new().hash_length(5).hash(&key.0);
    let mut check = [0u8; 5];
    check.copy_from_slice(hash.as_bytes());
    check.reverse();
    check
}

fn encode_with(prefix: &str, key: &PublicKey) -> String {
    // 296 bits: key (big-endian) ‖ reversed checksum, written as 60 base-32 digits with 4
    // implicit leading zero bits.
    let mut bits = [0u8; 37];
    bits[..32].copy_from_slice(&key.0);
    bits[32..].copy_from_slice(&checksum(key));
    let mut out = String::with_capacity(prefix.len() + DIGITS);
    out.push_str(prefix);
    for d in 0..DIGITS {
        let mut v = 0u8;
        for j in 0..5 {
            let pos = (5 * d + j) as isize - 4;
            let bit = if pos < 0 {
                0
            } else {
                let pos = pos as usize;
                (bits[pos / 8] >> (7 - pos % 8)) & 1
            };
            v = (v << 1) | bit;
        }
        out.push(ALPHABET[v as usize] as char);
    }
    out
}

/// The account text of a public key, `nano_` + 60 digits.
pub fn encode_account(key: &PublicKey) -> String {
    encode_with("nano_", key)
}

/// The node-id text of a public key, `node_` + 60 digits.
pub fn encode_node_id(key: &PublicKey) -> String {
    encode_with("node_", key)
}

/// Decodes account or node-id text. Accepts the prefixes `nano_`, `nano-`, `xrb_`, `xrb-` and
/// `node_`, then exactly 60 lower-case digits, the first `1` or `3`, and a matching checksum.
pub fn decode_account(text: &str) -> Result<PublicKey, CryptoError> {
    let bytes = text.as_bytes();
    let body = ["nano_", "nano-", "node_", "xrb_", "xrb-"]
        .iter()
        .find_map(|p| bytes.strip_prefix(p.as_bytes()))
        .ok_or(CryptoError::AccountPrefix)?;
    if body.len() != DIGITS {
        return Err(CryptoError::AccountLength(body.len()));
    }
    if body[0] != b'1' && body[0] != b'3' {
        return Err(CryptoError::AccountFirstDigit);
    }
    let mut bits = [0u8; 37];
    for (d, &c) in body.iter().enumerate() {
        let v = digit_value(c).ok_or(CryptoError::AccountCharacter(c as char))?;
        for j in 0..5 {
            let pos = (5 * d + j) as isize - 4;
            if pos >= 0 {
                let pos = pos as usize;
                bits[pos / 8] |= ((v >> (4 - j)) & 1) << (7 - pos % 8);
            }
        }
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&bits[..32]);
    let key = PublicKey(key);
    if checksum(&key) != bits[32..] {
        return Err(CryptoError::AccountChecksum);
    }
    Ok(key)
}

impl PublicKey {
    /// The `nano_…` account text; see [`encode_account`].
    pub fn to_account(&self) -> String {
        encode_account(self)
    }

    /// The `node_…` node-id text; see [`encode_node_id`].
    pub fn to_node_id(&self) -> String {
        encode_node_id(self)
    }

    /// Parses account or node-id text; see [`decode_account`].
    pub fn from_account(text: &str) -> Result<PublicKey, CryptoError> {
        decode_account(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_failed() {
        let good = encode_account(&PublicKey([7u8; 32]));
        assert_eq!(decode_account(&good), Ok(PublicKey([7u8; 32])));
        assert_eq!(decode_account("ban_1111"), Err(CryptoError::AccountPrefix));
        assert_eq!(
            decode_account("nano_13"),
            Err(CryptoError::AccountLength(2))
        );
        let mut two = good.clone();
        two.replace_range(5..6, "4");
        assert_eq!(decode_account(&two), Err(CryptoError::AccountFirstDigit));
        let mut bad_char = good.clone();
        bad_char.replace_range(10..11, "l");
        assert_eq!(
            decode_account(&bad_char),
            Err(CryptoError::AccountCharacter('l'))
        );
        let upper = good.to_uppercase().replacen("NANO_", "nano_", 1);
        assert!(decode_account(&upper).is_err());
        // Flip one digit of the checksum.
        let mut flipped = good.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '1' { '3' } else { '1' });
        assert_eq!(decode_account(&flipped), Err(CryptoError::AccountChecksum));
        // Non-ASCII never panics.
        assert!(decode_account("nano_ü").is_err());
        assert!(decode_account(&format!("nano_{}", "é".repeat(30))).is_err());
    }
}
