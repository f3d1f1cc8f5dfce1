//! The `nanopeer` command line.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use super::config::{ConfigError, NodeConfig, default_toml};
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
    /// Run the node.
    Run(RunArgs),
    /// Configuration tools.
    Config {
        /// What to do.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Benchmark handshakes/s: a node in-process (or --target) against simulated peers.
    Bench(crate::bench::cli::BenchArgs),
    /// Sweep shard counts × batch sizes with the bench and recommend a setting.
    Tune(crate::bench::cli::TuneArgs),
}

/// `nanopeer config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the default configuration (TOML): every key, its default and a comment.
    Default {
        /// The network whose defaults are shown.
        #[arg(long, default_value = "live")]
        network: Network,
    },
    /// Print the configuration `run` would use with these arguments (every key resolved).
    Show(RunArgs),
}

/// The arguments of `nanopeer run`. Precedence: the `--config FILE`, then each
/// `--config section.key=value` in order, then the other flags.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Network: live, beta, dev or test [default: live, or `node.network` of the config].
    #[arg(long)]
    pub network: Option<Network>,
    /// Data directory (peer store, node ID key) [default: $HOME/.nanopeer/NETWORK].
    #[arg(long, value_name = "DIR")]
    pub data_path: Option<PathBuf>,
    /// Peering listen address [default: all addresses (IPv6 ::, dual-stack) on the network's port].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Number of shards [default: one per core, less one].
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// A preconfigured peer (repeatable); replaces the network's list.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Serve JSON RPC over HTTP here (a bare PORT means 127.0.0.1) [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    pub rpc: Option<String>,
    /// Serve Prometheus metrics at /metrics here (a bare PORT means 127.0.0.1) [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// A TOML config FILE (at most one), or a `section.key=value` override (repeatable).
    #[arg(long = "config", value_name = "FILE|KEY=VALUE")]
    pub config: Vec<String>,
}

/// Whether a `--config` argument is a `section.key=value` override (else a file name).
pub fn is_override(arg: &str) -> bool {
    let Some((key, _)) = arg.split_once('=') else {
        return false;
    };
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    matches!(key.trim().split_once('.'), Some((a, b)) if ok(a) && ok(b))
}

impl RunArgs {
    /// Loads the configuration: file, overrides, then flags; checked.
    pub fn load_config(&self) -> Result<NodeConfig, ConfigError> {
        let mut file: Option<&str> = None;
        let mut overrides = Vec::new();
        for a in &self.config {
            if is_override(a) {
                overrides.push(a.clone());
            } else if let Some(f) = file {
                return Err(ConfigError::TwoFiles(f.to_string(), a.clone()));
            } else {
                file = Some(a);
            }
        }
        let mut c = NodeConfig::load(file.map(Path::new), &overrides)?;
        self.apply(&mut c);
        c.validate()?;
        Ok(c)
    }

    /// Applies the explicit flags to `config` (they win over file and overrides).
    pub fn apply(&self, config: &mut NodeConfig) {
        if let Some(n) = self.network {
            config.node.network = n;
        }
        if let Some(p) = &self.data_path {
            config.node.data_path = Some(p.clone());
        }
        if let Some(l) = self.listen {
            config.node.listen = Some(l);
        }
        if let Some(s) = self.shards {
            config.node.shards = s;
        }
        if !self.peers.is_empty() {
            config.node.peers = Some(self.peers.clone());
        }
        if let Some(r) = &self.rpc {
            config.rpc.address = Some(r.clone());
        }
        if let Some(m) = &self.metrics {
            config.metrics.address = Some(m.clone());
        }
    }
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Decode {
            network,
            cookie,
            hex,
        } => decode(network, cookie.as_ref(), &hex),
        Command::Run(args) => run_node(&args),
        Command::Bench(args) => crate::bench::cli::run_bench(&args),
        Command::Tune(args) => crate::bench::cli::run_tune(&args),
        Command::Config {
            command: ConfigCommand::Default { network },
        } => {
            print!("{}", default_toml(network));
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Show(args),
        } => match args.load_config() {
            Ok(c) => {
                print!("{}", c.resolved().to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nanopeer: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `nanopeer run`: logging, configuration, then the node (not wired on this branch yet).
fn run_node(args: &RunArgs) -> ExitCode {
    super::logging::init();
    let config = match args.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nanopeer: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        network = %config.node.network,
        listen = %config.listen_addr(),
        shards = config.shard_count(),
        "configuration loaded"
    );
    tracing::error!("nanopeer run: not wired yet (the node module is missing on this branch)");
    ExitCode::FAILURE
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
