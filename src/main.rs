//! The `nanopeer` command line.

fn main() {
    eprintln!("nanopeer: no command yet");
    std::process::exit(2);
}
