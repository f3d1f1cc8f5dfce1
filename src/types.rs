//! Primitive protocol values shared by every module: networks, 32-byte hashes and keys,
//! signatures and amounts (spec §0, §2.2, §3).
//!
//! All byte arrays are opaque and travel verbatim; hex is printed upper-case, most
//! significant byte first, which is the wire order.

use std::fmt;
use std::str::FromStr;

/// A Nano network, identified on the wire by the first two header bytes (§2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    /// The main network (`RC`, port 7075).
    Live,
    /// The beta network (`RB`, port 54000).
    Beta,
    /// The local development network (`RA`, port 44000): low PoW, public genesis key.
    Dev,
    /// The public test network (`RX`, port 17075).
    Test,
}

impl Network {
    /// Every network, in a fixed order.
    pub const ALL: [Network; 4] = [Network::Live, Network::Beta, Network::Dev, Network::Test];

    /// The 16-bit network id, sent big-endian in header bytes 0–1.
    pub const fn id(self) -> u16 {
        match self {
            Network::Live => 0x5243,
            Network::Beta => 0x5242,
            Network::Dev => 0x5241,
            Network::Test => 0x5258,
        }
    }

    /// The network with this id, if any.
    pub const fn from_id(id: u16) -> Option<Network> {
        match id {
            0x5243 => Some(Network::Live),
            0x5242 => Some(Network::Beta),
            0x5241 => Some(Network::Dev),
            0x5258 => Some(Network::Test),
            _ => None,
        }
    }

    /// The default peering port (§1).
    pub const fn default_port(self) -> u16 {
        match self {
            Network::Live => 7075,
            Network::Beta => 54000,
            Network::Dev => 44000,
            Network::Test => 17075,
        }
    }

    /// The lower-case name used on the command line and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Network::Live => "live",
            Network::Beta => "beta",
            Network::Dev => "dev",
            Network::Test => "test",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A network name that is not one of live, beta, dev, test.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?} (expected live, beta, dev or test)")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Network::Live),
            "beta" => Ok(Network::Beta),
            "dev" => Ok(Network::Dev),
            "test" => Ok(Network::Test),
            other => Err(UnknownNetwork(other.to_string())),
        }
    }
}

/// Hex text that does not decode to the expected number of bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Not hex at all.
    #[error("invalid hex: {0}")]
    Invalid(String),
    /// Hex of the wrong length.
    #[error("expected {expected} bytes of hex, got {got}")]
    Length {
        /// Bytes expected.
        expected: usize,
        /// Bytes found.
        got: usize,
    },
}

/// Decodes hex (either case) into exactly `N` bytes.
pub fn hex_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let v = hex::decode(s.trim()).map_err(|e| HexError::Invalid(e.to_string()))?;
    v.as_slice().try_into().map_err(|_| HexError::Length {
        expected: N,
        got: v.len(),
    })
}

macro_rules! bytes_newtype {
    ($(#[$m:meta])* $name:ident, $n:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// All zero bytes.
            pub const ZERO: $name = $name([0u8; $n]);

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }

            /// True when every byte is zero.
            pub fn is_zero(&self) -> bool {
                self.0.iter().all(|&b| b == 0)
            }

            /// Upper-case hex, wire order.
            pub fn to_hex(&self) -> String {
                hex::encode_upper(self.0)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::ZERO
            }
        }

        impl From<[u8; $n]> for $name {
            fn from(b: [u8; $n]) -> Self {
                $name(b)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02X}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                hex_array::<$n>(s).map($name)
            }
        }
    };
}

bytes_newtype!(
    /// A 32-byte block hash (also used for roots, links, vote hashes and genesis hashes).
    BlockHash,
    32
);
bytes_newtype!(
    /// A 32-byte Ed25519 public key: an account, a representative or a node id.
    PublicKey,
    32
);
bytes_newtype!(
    /// A 64-byte Ed25519-Blake2b signature, R ‖ S.
    Signature,
    64
);
bytes_newtype!(
    /// 32 random bytes: a syn cookie or a handshake salt.
    Cookie,
    32
);

/// An amount in raw (1 nano = 10^30 raw); 16 bytes big-endian on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(pub u128);

impl Amount {
    /// Big-endian wire bytes.
    pub const fn to_be_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// From big-endian wire bytes.
    pub const fn from_be_bytes(b: [u8; 16]) -> Amount {
        Amount(u128::from_be_bytes(b))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_ids_round_trip() {
        for n in Network::ALL {
            assert_eq!(Network::from_id(n.id()), Some(n));
            assert_eq!(n.name().parse::<Network>().unwrap(), n);
        }
        assert_eq!(Network::from_id(0x0000), None);
        assert_eq!(Network::Dev.id().to_be_bytes(), *b"RA");
        assert!("main".parse::<Network>().is_err());
    }

    #[test]
    fn hex_is_upper_case_and_checked() {
        let h: BlockHash = "991cf190094c00f0b68e2e5f75f6bee95a2e0bd93ceaa4a6734db9f19b728948"
            .parse()
            .unwrap();
        assert_eq!(
            h.to_string(),
            "991CF190094C00F0B68E2E5F75F6BEE95A2E0BD93CEAA4A6734DB9F19B728948"
        );
        assert!("00".parse::<BlockHash>().is_err());
        assert!("zz".parse::<Signature>().is_err());
    }
}
