//! Logging: `tracing` events to stderr, compact, filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber: compact lines on stderr, filtered by `RUST_LOG`
/// (default [`DEFAULT_FILTER`]). Returns false if a subscriber was already installed (the call
/// is then a no-op), so tests and repeated calls are harmless.
pub fn init() -> bool {
    init_with(std::env::var("RUST_LOG").ok().as_deref())
}

/// Like [`init`], with the filter directives given (`None`: [`DEFAULT_FILTER`]). An invalid
/// directive string falls back to the default with a warning on stderr.
pub fn init_with(directives: Option<&str>) -> bool {
    let filter = match directives {
        Some(d) if !d.trim().is_empty() => EnvFilter::try_new(d).unwrap_or_else(|e| {
            eprintln!("RUST_LOG {d:?} is invalid ({e}); using {DEFAULT_FILTER:?}");
            EnvFilter::new(DEFAULT_FILTER)
        }),
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    tracing_subscriber::fmt()
        .compact()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .try_init()
        .is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn second_init_is_a_no_op() {
        let _first = super::init_with(Some("warn"));
        assert!(!super::init_with(None));
        tracing::info!("logging works after a repeated init");
    }
}
