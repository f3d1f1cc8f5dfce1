//! The `nanopeer` command line: parse, then hand over to [`nanopeer::ops::cli::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    nanopeer::ops::cli::run(nanopeer::ops::cli::Cli::parse())
}
