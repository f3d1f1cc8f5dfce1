//! The `nanopeer` command line: parse, then hand over to [`nanopeer::ops::cli::run`].

use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nanopeer::ops::cli::run(nanopeer::ops::cli::Cli::parse())
}
