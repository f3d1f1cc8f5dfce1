//! The operator surface: command line, decoding for inspection, configuration, logging,
//! metrics, JSON RPC and the HTTP server that carries both.

pub mod api;
pub mod cli;
pub mod config;
pub mod decode;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod rpc;
