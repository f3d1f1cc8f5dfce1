//! The one error of configuration loading and checking; each variant names the file, the
//! override or the dotted key at fault.

use std::net::SocketAddr;

/// What failed while loading or checking a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {message}")]
    Read {
        /// The path as given (`--config FILE`).
        path: String,
        /// The OS error.
        message: String,
    },
    /// The TOML text does not parse.
    #[error("config {source_name} is not valid TOML: {message}")]
    Syntax {
        /// The file name, or `override` for a `key=value` argument.
        source_name: String,
        /// The parser's message.
        message: String,
    },
    /// A `--config` override is not of the form `section.key=value`.
    #[error("config override {0:?} is not of the form section.key=value")]
    OverrideForm(String),
    /// A key that the configuration does not have.
    #[error("unknown config key `{0}`")]
    UnknownKey(String),
    /// A key whose value has the wrong type or is out of range.
    #[error("config key `{key}`: {message}")]
    BadValue {
        /// The dotted key.
        key: String,
        /// What was expected.
        message: String,
    },
    /// A nano-node key nanopeer maps, with a value it cannot use.
    #[error("{origin}: nano-node key `{key}`: {message}")]
    NanoValue {
        /// The file (`…/config-node.toml`, `…/config-rpc.toml`) or `--config` (an override).
        origin: String,
        /// nano-node's dotted key (`node.peering_port`, `port`).
        key: String,
        /// What was expected.
        message: String,
    },
    /// More than one configuration file was given.
    #[error("only one config file may be given ({0} and {1})")]
    TwoFiles(String, String),
    /// An RPC or metrics address that is not loopback, without `allow_remote = true`.
    #[error(
        "config key `{key}`: {addr} is not a loopback address; set `{section}.allow_remote = true` to allow it"
    )]
    RemoteBind {
        /// `rpc.address` or `metrics.address`.
        key: String,
        /// The section (`rpc` or `metrics`).
        section: String,
        /// The non-loopback address that was refused.
        addr: SocketAddr,
    },
}
