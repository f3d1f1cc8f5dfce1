//! Logging: `tracing` events to stderr, filtered by `RUST_LOG`, as compact text lines or (for
//! log shippers) one JSON object per line.

use tracing_subscriber::EnvFilter;

/// The filter `run` uses when `RUST_LOG` is unset or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// The filter `bench` and `tune` use when `RUST_LOG` is unset or invalid: only warnings, so
/// that the node they start in-process does not interleave its start-up lines with their
/// output.
pub const QUIET_FILTER: &str = "warn";

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Compact text lines: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields` with `message`),
    /// for log shippers.
    Json,
}

/// Installs the global subscriber: compact text lines on stderr, filtered by `RUST_LOG`
/// (default [`DEFAULT_FILTER`]). Returns false if a subscriber was already installed (the call
/// is then a no-op), so tests and repeated calls are harmless.
pub fn init() -> bool {
    init_as(LogFormat::Text, DEFAULT_FILTER)
}

/// Like [`init`], in `format`, with `default` as the filter when `RUST_LOG` is unset or
/// invalid.
pub fn init_as(format: LogFormat, default: &str) -> bool {
    init_with_format(std::env::var("RUST_LOG").ok().as_deref(), format, default)
}

/// Like [`init`], with the filter directives given (`None`: [`DEFAULT_FILTER`]). An invalid
/// directive string falls back to the default with a warning on stderr.
pub fn init_with(directives: Option<&str>) -> bool {
    init_with_format(directives, LogFormat::Text, DEFAULT_FILTER)
}

/// The subscriber of [`init_as`] with the directives given (`None`: `default`).
pub fn init_with_format(directives: Option<&str>, format: LogFormat, default: &str) -> bool {
    let filter = match directives {
        Some(d) if !d.trim().is_empty() => EnvFilter::try_new(d).unwrap_or_else(|e| {
            eprintln!("RUST_LOG {d:?} is invalid ({e}); using {default:?}");
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
            .is_ok(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(false)
            .try_init()
            .is_ok(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn second_init_is_a_no_op() {
        let _first = super::init_with(Some("warn"));
        assert!(!super::init_with(None));
        assert!(!super::init_as(super::LogFormat::Json, super::QUIET_FILTER));
        tracing::info!("logging works after a repeated init");
    }
}
