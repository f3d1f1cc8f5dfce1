//! The operator surface: command line, decoding for inspection, configuration, logging.

pub mod cli;
pub mod decode;
