//! The `nanopeer` command line.

use std::fmt;
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};

use super::api::SharedNode;
use super::config::{ConfigError, Layers, Loaded, NanoReport, NodeConfig, default_toml};
use super::http::{HttpError, HttpServer, ServerOptions};
use super::logging::{self, DEFAULT_FILTER, LogFormat, QUIET_FILTER};
use super::rpc::NodeApi;
use crate::io::Fault;
use crate::node::{Node, NodeOptions};
use crate::types::{Cookie, Network};

/// nanopeer: the peering layer of a Nano node.
#[derive(Debug, Parser)]
#[command(name = "nanopeer", version, about, long_about = None)]
pub struct Cli {
    /// Log lines on stderr (`run`, `bench`, `tune`) as compact text, or one JSON object per
    /// line for log shippers. `RUST_LOG` filters them (default: `info` for `run`, `warn` for
    /// `bench` and `tune`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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
    /// Benchmark a node in-process (or --target): handshakes/s against simulated peers, or
    /// votes/s or blocks/s streamed on long-lived channels (--workload).
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

/// The arguments of `nanopeer run`. Precedence: nano-node's `config-node.toml` and
/// `config-rpc.toml` in the data directory, the `--config FILE`, then each
/// `--config key=value` in order, then the other flags.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Network: live, beta, dev or test [default: live, or `node.network` of the config].
    #[arg(long)]
    pub network: Option<Network>,
    /// Data directory (peer store, node ID key; nano-node's config-node.toml and
    /// config-rpc.toml are read from it) [default: $HOME/.nanopeer/NETWORK].
    #[arg(long, visible_alias = "data_path", value_name = "DIR")]
    pub data_path: Option<PathBuf>,
    /// Peering listen address; an address alone keeps the configured port [default: all
    /// addresses (IPv6 ::, dual-stack) on the network's port, or nano-node's peering_port].
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub listen: Option<ListenArg>,
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
    /// A TOML config FILE (at most one), or a `section.key=value` override (repeatable; an
    /// argument with `=` is always an override). nano-node's keys are mapped
    /// (`node.peering_port=7075`).
    #[arg(long = "config", value_name = "FILE|KEY=VALUE")]
    pub config: Vec<String>,
    /// Test hook, hidden from `--help`: make a node thread fail after start,
    /// `THREAD:panic` or `THREAD:stall=MS`, optionally `@MS` later (`shard-0:panic@500`).
    /// See [`parse_fault`].
    #[doc(hidden)]
    #[arg(long, hide = true, value_name = "SPEC")]
    pub inject_fault: Option<String>,
}

/// Exit status of `nanopeer run` when a node thread died (sysexits' `EX_SOFTWARE`): distinct
/// from 1 (could not start) and 2 (bad configuration), non-zero for `Restart=on-failure`.
pub const EXIT_THREAD_DIED: u8 = 70;

/// Parses a `--inject-fault` spec: `THREAD:panic` or `THREAD:stall=MS`, optionally followed by
/// `@MS` (delay after start). THREAD is `shard-N` or `crawler`. Test hook.
#[doc(hidden)]
pub fn parse_fault(spec: &str) -> Result<(String, Fault, Duration), String> {
    let bad = || {
        format!(
            "bad --inject-fault {spec:?}: expected THREAD:panic or THREAD:stall=MS, optionally @MS"
        )
    };
    let (body, delay) = match spec.split_once('@') {
        Some((b, d)) => (b, Duration::from_millis(d.parse().map_err(|_| bad())?)),
        None => (spec, Duration::ZERO),
    };
    let (thread, fault) = body.split_once(':').ok_or_else(bad)?;
    let valid_thread = thread == "crawler"
        || thread
            .strip_prefix("shard-")
            .is_some_and(|i| i.parse::<usize>().is_ok());
    if !valid_thread {
        return Err(bad());
    }
    let fault = match fault.split_once('=') {
        None if fault == "panic" => Fault::Panic,
        Some(("stall", ms)) => Fault::Stall(Duration::from_millis(ms.parse().map_err(|_| bad())?)),
        _ => return Err(bad()),
    };
    Ok((thread.to_string(), fault, delay))
}

/// `--listen`: `ADDR:PORT`, or an address alone (`127.0.0.1`, `::1`, `[::1]`) that keeps the
/// port the configuration gives (`node.listen`, nano-node's `peering_port`, or the network's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenArg {
    /// Address and port.
    Addr(SocketAddr),
    /// An address; the port comes from the configuration.
    Ip(IpAddr),
}

impl FromStr for ListenArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(a) = s.parse() {
            return Ok(ListenArg::Addr(a));
        }
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        bare.parse()
            .map(ListenArg::Ip)
            .map_err(|_| format!("{s:?} is not ADDR:PORT or an IP address"))
    }
}

impl fmt::Display for ListenArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenArg::Addr(a) => write!(f, "{a}"),
            ListenArg::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl From<SocketAddr> for ListenArg {
    fn from(a: SocketAddr) -> Self {
        ListenArg::Addr(a)
    }
}

/// Whether a `--config` argument is a `key=value` override (else a file name): it is if it
/// holds `=`. nano-node's dotted keys (`node.network.max_peers_per_ip=8`) are thus keys, never
/// file names; a file whose name holds `=` cannot be given.
pub fn is_override(arg: &str) -> bool {
    arg.contains('=')
}

impl RunArgs {
    /// Loads the configuration: the data directory's nano-node files, file, overrides, then
    /// flags; checked.
    pub fn load_config(&self) -> Result<NodeConfig, ConfigError> {
        self.load_config_report().map(|l| l.config)
    }

    /// Like [`load_config`](Self::load_config), with what nano-node's configuration
    /// contributed (files read, keys ignored).
    pub fn load_config_report(&self) -> Result<Loaded, ConfigError> {
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
        let mut loaded = NodeConfig::load_layers(&Layers {
            file: file.map(Path::new),
            overrides: &overrides,
            network: self.network,
            data_path: self.data_path.as_deref(),
        })?;
        self.apply(&mut loaded.config);
        loaded.config.validate()?;
        Ok(loaded)
    }

    /// Applies the explicit flags to `config` (they win over file and overrides).
    pub fn apply(&self, config: &mut NodeConfig) {
        if let Some(n) = self.network {
            config.node.network = n;
        }
        if let Some(p) = &self.data_path {
            config.node.data_path = Some(p.clone());
        }
        match self.listen {
            Some(ListenArg::Addr(a)) => config.node.listen = Some(a),
            Some(ListenArg::Ip(ip)) => {
                config.node.listen = Some(SocketAddr::new(ip, config.listen_addr().port()));
            }
            None => {}
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
    match &cli.command {
        Command::Run(_) => {
            logging::init_as(cli.log_format, DEFAULT_FILTER);
        }
        Command::Bench(_) | Command::Tune(_) => {
            logging::init_as(cli.log_format, QUIET_FILTER);
        }
        Command::Decode { .. } | Command::Config { .. } => {}
    }
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
        } => match args.load_config_report() {
            Ok(l) => {
                print!("{}", show_text(&l));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nanopeer: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `config show`: every key resolved, under comment lines naming the nano-node files read and
/// the nano-node keys ignored.
pub fn show_text(loaded: &Loaded) -> String {
    let mut out = String::new();
    let nano = &loaded.nano;
    if !nano.files.is_empty() {
        out.push_str(&format!(
            "# nano-node configuration read: {}\n",
            nano.files_text()
        ));
    }
    if !nano.ignored.is_empty() {
        out.push_str(&format!(
            "# nano-node keys nanopeer does not use (ignored): {}\n",
            nano.ignored_text()
        ));
    }
    out.push_str(&loaded.config.resolved().to_toml());
    out
}

/// Logs (info, one line) the nano-node files read and the nano-node keys ignored, if any.
fn log_nano(nano: &NanoReport) {
    if nano.is_empty() {
        return;
    }
    let files = if nano.files.is_empty() {
        "none".to_string()
    } else {
        nano.files_text()
    };
    let ignored = if nano.ignored.is_empty() {
        "none".to_string()
    } else {
        nano.ignored_text()
    };
    tracing::info!(
        %files,
        %ignored,
        "nano-node configuration mapped onto nanopeer's; the keys listed as ignored are not used"
    );
}

/// How often `run` looks at the signal flag.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The node options a configuration asks for: network, data directory, listen address, shards,
/// preconfigured peers (`node.peers` / `--peer` replace the network's list), verify batching,
/// protocol and io settings, pinning, weights file and online-weight minimum.
pub fn node_options(config: &NodeConfig) -> NodeOptions {
    let mut o = NodeOptions::new(config.node.network, config.data_path());
    o.listen = config.listen_addr();
    o.shards = Some(config.shard_count());
    o.preconfigured_peers = Some(config.peers());
    o.batch_max = config.verify.batch_max;
    o.batch_delay_us = config.verify.batch_delay_us;
    o.proto = config.proto_config();
    o.io = config.shard_config();
    o.crawler_core = config.node.crawler_core;
    o.weights_file = config.rep_crawler.weights_file.clone();
    o.online_weight_minimum = config.rep_crawler.online_weight_minimum;
    o
}

/// The HTTP servers `run` starts: RPC (`POST /`) and metrics (`GET /metrics`) on their own
/// addresses, or one server for both when the addresses are equal. `enable_control`
/// (`rpc.enable_control`) goes to the server that serves RPC.
fn start_http(
    rpc: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    enable_control: bool,
    api: &SharedNode,
) -> Result<Vec<Served>, HttpError> {
    let mut plan: Vec<(SocketAddr, bool, bool)> = Vec::new();
    match (rpc, metrics) {
        (Some(r), Some(m)) if r == m => plan.push((r, true, true)),
        _ => {
            if let Some(r) = rpc {
                plan.push((r, true, false));
            }
            if let Some(m) = metrics {
                plan.push((m, false, true));
            }
        }
    }
    let mut servers = Vec::new();
    for (addr, rpc, metrics) in plan {
        let options = ServerOptions {
            rpc,
            metrics,
            enable_control: rpc && enable_control,
            ..ServerOptions::default()
        };
        let api: Arc<dyn NodeApi> = Arc::new(api.clone());
        // On error the servers already started are dropped, which stops them.
        let server = HttpServer::start(addr, api, options)?;
        servers.push(Served {
            server,
            rpc,
            metrics,
        });
    }
    Ok(servers)
}

/// A started HTTP server and what it serves.
struct Served {
    server: HttpServer,
    rpc: bool,
    metrics: bool,
}

/// The bound address of the server that serves `what`, or `off`.
fn served_text(servers: &[Served], what: impl Fn(&Served) -> bool) -> String {
    servers
        .iter()
        .find(|s| what(s))
        .map_or_else(|| "off".to_string(), |s| s.server.local_addr().to_string())
}

/// `nanopeer run` (logging is set up by [`run`]): configuration (exit 2 if invalid), the node
/// (exit 1 if it cannot start, e.g. an open-file limit too small for even a minimal
/// configuration), the RPC and metrics servers; then waits for SIGTERM or SIGINT and stops
/// everything (exit 0). A second signal while stopping ends the process at once (exit 1).
/// SIGHUP is logged and otherwise ignored (there is no configuration to reload, and log
/// lines go to stderr, so there is no file to reopen). A node thread (shard or crawler)
/// that dies stops the node too, with exit status [`EXIT_THREAD_DIED`], so that a supervisor
/// (systemd `Restart=on-failure`) restarts it rather than leave a half-alive node.
fn run_node(args: &RunArgs) -> ExitCode {
    let config = match args.load_config_report() {
        Ok(l) => {
            log_nano(&l.nano);
            l.config
        }
        Err(e) => {
            eprintln!("nanopeer: {e}");
            return ExitCode::from(2);
        }
    };
    let mut fault = match args.inject_fault.as_deref().map(parse_fault).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("nanopeer: {e}");
            return ExitCode::from(2);
        }
    };
    let (rpc, metrics) = match (config.rpc_addr(), config.metrics_addr()) {
        (Ok(r), Ok(m)) => (r, m),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("nanopeer: {e}");
            return ExitCode::from(2);
        }
    };
    // Installed before the node starts, so that a signal during start-up is not lost.
    let term = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        let installed = signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&term))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&term)));
        if let Err(e) = installed {
            eprintln!("nanopeer: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    }
    // SIGHUP's default action would end the process: log it instead (below).
    let hangup = Arc::new(AtomicBool::new(false));
    if let Err(e) = crate::node::catch_hangup(&hangup) {
        eprintln!("nanopeer: cannot install the SIGHUP handler: {e}");
        return ExitCode::FAILURE;
    }
    let opts = node_options(&config);
    let preconfigured = opts.preconfigured_peers.clone().unwrap_or_default();
    let node = match Node::start(opts) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("nanopeer: cannot start the node: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shared = SharedNode::new(node);
    let servers = match start_http(rpc, metrics, config.rpc.enable_control, &shared) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nanopeer: {e}");
            if let Err(e) = shared.stop() {
                tracing::error!(error = %e, "stopping the node failed");
            }
            return ExitCode::FAILURE;
        }
    };
    if let Some((node_id, listen, data_path)) = shared.with(|n| {
        (
            n.node_id_text().to_string(),
            n.local_addr(),
            n.data_path().display().to_string(),
        )
    }) {
        tracing::info!(
            network = %config.node.network,
            %node_id,
            %listen,
            shards = config.shard_count(),
            %data_path,
            peers = ?preconfigured,
            rpc = %served_text(&servers, |s| s.rpc),
            rpc_control = config.rpc.enable_control,
            metrics = %served_text(&servers, |s| s.metrics),
            "nanopeer running; SIGTERM or SIGINT stops it"
        );
    }
    let started = Instant::now();
    let mut died = None;
    while !term.load(Ordering::Relaxed) {
        crate::node::log_hangup(&hangup);
        if let Some((thread, f, after)) = &fault
            && started.elapsed() >= *after
        {
            tracing::warn!(%thread, fault = ?f, "injecting a fault (--inject-fault)");
            if let Some(Err(e)) = shared.with(|n| n.inject_fault(thread, *f)) {
                tracing::error!(error = %e, "cannot inject the fault");
            }
            fault = None;
        }
        if let Some(failure) = shared.with(Node::failed_thread).flatten() {
            died = Some(failure);
            break;
        }
        std::thread::sleep(SIGNAL_POLL);
    }
    let t0 = Instant::now();
    match &died {
        Some(failure) => tracing::error!(
            thread = %failure.thread,
            "{failure}; stopping the node (exit status {EXIT_THREAD_DIED}, for a supervisor to restart it)"
        ),
        None => tracing::info!("signal received, stopping"),
    }
    for s in servers {
        s.server.stop();
    }
    let result = shared.stop();
    let took_ms = t0.elapsed().as_millis() as u64;
    if died.is_some() {
        if let Err(e) = result {
            tracing::info!(took_ms, error = %e, "stopped after a thread died");
        }
        return ExitCode::from(EXIT_THREAD_DIED);
    }
    match result {
        Ok(()) => {
            tracing::info!(took_ms, "stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(took_ms, error = %e, "stopped with an error");
            ExitCode::FAILURE
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_parse_or_are_refused() {
        assert_eq!(
            parse_fault("shard-1:panic"),
            Ok(("shard-1".into(), Fault::Panic, Duration::ZERO))
        );
        assert_eq!(
            parse_fault("crawler:stall=2500@300"),
            Ok((
                "crawler".into(),
                Fault::Stall(Duration::from_millis(2500)),
                Duration::from_millis(300)
            ))
        );
        for bad in [
            "",
            "shard-1",
            "shard-x:panic",
            "resolve:panic",
            "shard-0:hang",
            "shard-0:stall=",
            "shard-0:panic@soon",
        ] {
            assert!(parse_fault(bad).is_err(), "{bad:?}");
        }
    }
}
