//! The `nanopeer` command line.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::types::{Cookie, Network};

/// nanopeer: the peering layer of a Nano node.
#[derive(Debug, Parser)]
#[command(name = "nanopeer", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode captured messages (hex, header included) into JSON.
    ///
    /// With `-` instead of HEX, reads one hex message per line from stdin and prints one JSON
    /// object per line; a line that does not decode prints {"error": "..."} and reading goes on.
    Decode {
        /// The network the message was captured on.
        #[arg(long, default_value = "live")]
        network: Network,
        /// The syn cookie a handshake response signs (hex), to check its signature.
        #[arg(long, value_name = "HEX")]
        cookie: Option<Cookie>,
        /// The message as hex, or `-` to read lines from stdin.
        #[arg(value_name = "HEX")]
        hex: String,
    },
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Decode {
            network,
            cookie,
            hex,
        } => decode(network, cookie.as_ref(), &hex),
    }
}

fn decode(network: Network, cookie: Option<&Cookie>, hex: &str) -> ExitCode {
    use super::decode::decode_hex;
    if hex != "-" {
        return match decode_hex(hex, network, cookie) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("stdin: {e}");
                return ExitCode::FAILURE;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let v = match decode_hex(&line, network, cookie) {
            Ok(v) => v,
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        if writeln!(out, "{v}").is_err() {
            // stdout closed (e.g. piped into head): stop quietly
            return ExitCode::SUCCESS;
        }
    }
    ExitCode::SUCCESS
}
