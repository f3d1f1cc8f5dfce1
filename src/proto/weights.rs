//! Representative voting weights (account → raw), as the rep crawler needs them (§8).
//!
//! nanopeer has no ledger, so the weights come from a file (format in
//! `docs/representative-weights.md`: one `nano_… <raw decimal>` per line, `#` comments, blank
//! lines ignored); the node reads the file and [`RepWeights::parse`] reads its text. Without a
//! file:
//! - **dev and test**: the genesis account holds the whole supply ([`GENESIS_AMOUNT`]), which is
//!   exactly the ledger of a fresh dev network;
//! - **live**: the built-in snapshot [`LIVE_WEIGHTS`] (133 representatives, ~126.6 M nano, from
//!   the reference node's `rep_weights_live.bin`, August 2024);
//! - **beta**: nothing is known. The reference ships no beta snapshot since the beta ledger was
//!   reset (February 2024), so every account weighs 0: the rep crawler counts no answer and
//!   keeps no representative until a weights file is given.
//!
//! Only accounts with weight count: the rep crawler refuses answers from accounts that weigh 0
//! here, which is what keeps its table bounded by this one (see [`super::repcrawler`]).

use std::collections::HashMap;

use crate::crypto::{GENESIS_AMOUNT, decode_account, genesis_account};
use crate::types::{Network, PublicKey};

/// Why a weights file could not be used. Line numbers start at 1.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read. Proto reads no file: the caller that reads it (the node,
    /// from its weights-file setting) reports the failure with this variant, so that every
    /// weights error reads the same.
    #[error("reading representative weights {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not `<account> <raw>`.
    #[error("line {line}: expected `<account> <raw decimal>`")]
    Syntax {
        /// The line number.
        line: usize,
    },
    /// The account text does not decode.
    #[error("line {line}: invalid account {text:?}: {reason}")]
    Account {
        /// The line number.
        line: usize,
        /// The account text.
        text: String,
        /// What is wrong with it.
        reason: crate::crypto::CryptoError,
    },
    /// The amount is not a decimal number of raw that fits in 128 bits.
    #[error("line {line}: invalid raw amount {text:?}")]
    Amount {
        /// The line number.
        line: usize,
        /// The amount text.
        text: String,
    },
    /// The account already appeared on an earlier line.
    #[error("line {line}: account {text} listed twice (first on line {first})")]
    Duplicate {
        /// The line number.
        line: usize,
        /// The account text.
        text: String,
        /// The line it first appeared on.
        first: usize,
    },
}

/// The live network's representative weights built into the binary, in the weights file
/// format: the reference node's `rep_weights_live.bin` (nano-node commit 353b1a8b7, ledger at
/// 201 514 829 blocks) converted line by line; provenance in the file's header comments.
pub const LIVE_WEIGHTS: &str = include_str!("../../data/rep_weights_live.txt");

/// Representative weights in raw. Unknown accounts weigh 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepWeights {
    weights: HashMap<PublicKey, u128>,
    total: u128,
}

impl RepWeights {
    /// No weight known.
    pub fn new() -> RepWeights {
        RepWeights::default()
    }

    /// The defaults of a network with no file: on dev and test the genesis account holds all
    /// supply; on live the built-in snapshot [`LIVE_WEIGHTS`]; on beta nothing is known.
    pub fn defaults(network: Network) -> RepWeights {
        match network {
            Network::Dev | Network::Test => {
                let mut w = RepWeights::new();
                w.insert(genesis_account(network), GENESIS_AMOUNT.0);
                w
            }
            // A constant of this crate, parsed by a unit test: it cannot fail at run time.
            Network::Live => {
                RepWeights::parse(LIVE_WEIGHTS).expect("the built-in live weights parse")
            }
            Network::Beta => RepWeights::new(),
        }
    }

    /// The weights for `network`: parsed from `text` when given (the file replaces the
    /// defaults entirely), else [`RepWeights::defaults`].
    pub fn for_network(network: Network, text: Option<&str>) -> Result<RepWeights, WeightsError> {
        match text {
            Some(t) => RepWeights::parse(t),
            None => Ok(RepWeights::defaults(network)),
        }
    }

    /// Parses the file format: one `<account> <raw decimal>` per line, separated by spaces or
    /// tabs; `#` starts a comment (whole line or after the fields); blank lines are ignored.
    /// An account listed twice is an error.
    pub fn parse(text: &str) -> Result<RepWeights, WeightsError> {
        let mut w = RepWeights::new();
        let mut first_line: HashMap<PublicKey, usize> = HashMap::new();
        for (i, raw_line) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw_line.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let mut fields = content.split_whitespace();
            let (Some(acc), Some(amt), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(WeightsError::Syntax { line });
            };
            let key = decode_account(acc).map_err(|reason| WeightsError::Account {
                line,
                text: acc.to_string(),
                reason,
            })?;
            if !amt.bytes().all(|b| b.is_ascii_digit()) {
                return Err(WeightsError::Amount {
                    line,
                    text: amt.to_string(),
                });
            }
            let raw: u128 = amt.parse().map_err(|_| WeightsError::Amount {
                line,
                text: amt.to_string(),
            })?;
            if let Some(&first) = first_line.get(&key) {
                return Err(WeightsError::Duplicate {
                    line,
                    text: acc.to_string(),
                    first,
                });
            }
            first_line.insert(key, line);
            w.insert(key, raw);
        }
        Ok(w)
    }

    /// Sets the weight of `account` (replacing any earlier value).
    pub fn insert(&mut self, account: PublicKey, raw: u128) {
        if let Some(old) = self.weights.insert(account, raw) {
            self.total = self.total.saturating_sub(old);
        }
        self.total = self.total.saturating_add(raw);
    }

    /// The weight of `account` (0 when unknown).
    pub fn get(&self, account: &PublicKey) -> u128 {
        self.weights.get(account).copied().unwrap_or(0)
    }

    /// Number of representatives with a weight.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when no weight is known.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Σ of all weights (saturating).
    pub fn total(&self) -> u128 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_and_test_default_to_genesis() {
        for n in [Network::Dev, Network::Test] {
            let w = RepWeights::defaults(n);
            assert_eq!(w.get(&genesis_account(n)), u128::MAX);
            assert_eq!(w.len(), 1);
        }
        assert!(RepWeights::defaults(Network::Beta).is_empty());
    }

    #[test]
    fn the_live_snapshot_parses_and_its_total_is_plausible() {
        let w = RepWeights::defaults(Network::Live);
        assert_eq!(w, RepWeights::parse(LIVE_WEIGHTS).unwrap());
        // 133 records in the reference file (6400 bytes = 16 + 133 × 48)
        assert_eq!(w.len(), 133);
        let nano = 10u128.pow(30);
        // Above the online-weight floor (60 M nano), or quorum could never be reached; below
        // the circulating supply (~133.25 M nano of the 2^128 − 1 raw minted).
        assert!(w.total() > 60_000_000 * nano, "{}", w.total() / nano);
        assert!(w.total() < 133_248_298 * nano, "{}", w.total() / nano);
        assert_eq!(w.total() / nano, 126_574_531);
        // every listed account weighs something, none holds a third of the total
        let lines: Vec<&str> = LIVE_WEIGHTS
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(lines.len(), 133);
        for l in &lines {
            let key = decode_account(l.split_whitespace().next().unwrap()).unwrap();
            let weight = w.get(&key);
            assert!(weight > 0 && weight < w.total() / 3, "{l}");
        }
        // the heaviest first, as in the reference file; the genesis account is not a rep
        let first = decode_account(lines[0].split_whitespace().next().unwrap()).unwrap();
        assert_eq!(w.get(&first) / nano, 14_404_144);
        assert_eq!(w.get(&genesis_account(Network::Live)), 0);
    }

    #[test]
    fn parses_comments_blanks_and_errors_name_the_line() {
        let g = genesis_account(Network::Dev).to_account();
        let other = PublicKey([7; 32]).to_account();
        let text = format!("# weights\n\n{g} 1000 # genesis\n\t{other}\t5\n");
        let w = RepWeights::parse(&text).unwrap();
        assert_eq!(w.get(&genesis_account(Network::Dev)), 1000);
        assert_eq!(w.get(&PublicKey([7; 32])), 5);
        assert_eq!(w.total(), 1005);
        // the file replaces the defaults
        let w = RepWeights::for_network(Network::Dev, Some(&format!("{other} 1"))).unwrap();
        assert_eq!(w.get(&genesis_account(Network::Dev)), 0);

        let e = RepWeights::parse(&format!("\n{g}\n")).unwrap_err();
        assert!(matches!(e, WeightsError::Syntax { line: 2 }), "{e}");
        let e = RepWeights::parse(&format!("{g} 12x")).unwrap_err();
        assert!(matches!(e, WeightsError::Amount { line: 1, .. }), "{e}");
        let e = RepWeights::parse(&format!("{g} -1")).unwrap_err();
        assert!(matches!(e, WeightsError::Amount { line: 1, .. }), "{e}");
        let too_big = "340282366920938463463374607431768211456";
        let e = RepWeights::parse(&format!("{g} {too_big}")).unwrap_err();
        assert!(matches!(e, WeightsError::Amount { line: 1, .. }), "{e}");
        let e = RepWeights::parse("\n\nnano_1111 5").unwrap_err();
        assert!(matches!(e, WeightsError::Account { line: 3, .. }), "{e}");
        let e = RepWeights::parse(&format!("{g} 1\n{g} 2")).unwrap_err();
        assert!(
            matches!(
                e,
                WeightsError::Duplicate {
                    line: 2,
                    first: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().starts_with("line 2:"));
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../../docs/representative-weights.md");
        let block = doc
            .split("```text\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap();
        let w = RepWeights::parse(block).unwrap();
        assert_eq!(w.get(&genesis_account(Network::Dev)), u128::MAX);
        assert_eq!(w.get(&PublicKey([7; 32])), 6 * 10u128.pow(37));
    }
}
