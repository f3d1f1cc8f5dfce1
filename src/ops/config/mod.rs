//! Node configuration: a TOML file, `--config key=value` overrides, then command-line flags.
//!
//! Every key that maps to a protocol value is optional: unset means "the network's default",
//! taken from [`ProtoConfig::for_network`](crate::proto::config::ProtoConfig::for_network) (one
//! source of truth). Keys for the I/O runtime default to
//! [`ShardConfig::default`](crate::io::ShardConfig). [`default_toml`] prints every key with
//! its default and a comment; keys whose default depends on the network are printed commented
//! out.
//!
//! Below them all lie nano-node's `config-node.toml` and `config-rpc.toml` when the data
//! directory holds them ([`nano`]): precedence is defaults < data-directory files <
//! `--config FILE` < `--config key=value` < flags.
//!
//! By job: `schema` (the sections and their serde form), `keys` (the documented keys and the
//! default document), `load` (TOML text, files, overrides and the layers), `nano` (nano-node's
//! keys mapped onto ours), `validate` (ranges and addresses), `resolve` (the network's
//! defaults, and the translation into the protocol and shard settings), `error`.

mod error;
mod keys;
mod load;
pub mod nano;
mod resolve;
mod schema;
mod validate;

pub use error::ConfigError;
pub use keys::{all_keys, default_toml, keys_without_default};
pub use load::{Layers, Loaded};
pub use nano::{IgnoredKey, NanoReport};
pub use resolve::preconfigured_peers;
pub use schema::{
    IoSection, LimitsSection, NodeConfig, NodeSection, RepCrawlerSection, RpcSection,
    ServerSection, TimingSection, VerifySection,
};
pub use validate::{parse_bind, split_host_port};
