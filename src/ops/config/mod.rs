//! Node configuration: a TOML file, `--config key=value` overrides, then command-line flags.
//!
//! Every key that maps to a protocol value is optional: unset means "the network's default",
//! taken from [`ProtoConfig::for_network`](crate::proto::config::ProtoConfig::for_network) (one
//! source of truth). Keys for the I/O runtime default to
//! [`ShardConfig::default`](crate::io::ShardConfig). [`default_toml`] prints every key with
//! its default and a comment; keys whose default depends on the network are printed commented
//! out.
//!
//! By job: `schema` (the sections and their serde form), `keys` (the documented keys and the
//! default document), `load` (TOML text, files and overrides), `validate` (ranges and
//! addresses), `resolve` (the network's defaults, and the translation into the protocol and
//! shard settings), `error`.

mod error;
mod keys;
mod load;
mod resolve;
mod schema;
mod validate;

pub use error::ConfigError;
pub use keys::{all_keys, default_toml, keys_without_default};
pub use resolve::preconfigured_peers;
pub use schema::{
    IoSection, LimitsSection, NodeConfig, NodeSection, RepCrawlerSection, ServerSection,
    TimingSection, VerifySection,
};
pub use validate::{parse_bind, split_host_port};
