//! Replays the committed fuzz corpus (fuzz/corpus/*) through the fuzz targets' checks, so
//! every input a fuzzer ever found interesting stays a regression test.

use std::path::Path;

fn replay(dir: &str, check: fn(&[u8])) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(dir);
    let mut n = 0;
    for entry in std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
        let file = entry.expect("corpus entry").path();
        let data = std::fs::read(&file).expect("corpus file");
        check(&data);
        n += 1;
    }
    n
}

#[test]
fn decode_corpus() {
    let n = replay("decode", nanopeer::wire::fuzzing::check_decode);
    assert!(n >= 10, "the decode seed corpus has {n} files");
}

#[test]
fn deframer_corpus() {
    let n = replay("deframer", nanopeer::wire::fuzzing::check_deframer);
    assert!(n >= 10, "the deframer seed corpus has {n} files");
}
