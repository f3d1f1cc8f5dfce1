//! Properties checked by the fuzz targets in `fuzz/` and, on the committed corpus, by
//! `tests/fuzz_corpus.rs`. Each function panics when a property fails — that is the signal a
//! fuzzer looks for — and otherwise returns quietly.

use super::{Deframer, HEADER_LEN, Header, Message, decode_message};
use crate::types::Network;

/// Any bytes, decoded as one whole message on every network: never panics; whatever
/// decodes re-encodes and decodes again to the same message.
pub fn check_decode(data: &[u8]) {
    for network in Network::ALL {
        let Ok((header, message)) = decode_message(data, network) else {
            continue;
        };
        assert_eq!(header.network, network);
        let again = message.encode(network);
        let (header2, message2) = decode_message(&again, network)
            .unwrap_or_else(|e| panic!("re-encoded {message:?} does not decode: {e}"));
        assert_eq!(message2, message, "round trip changed the message");
        assert_eq!(header2.message_type, header.message_type);
    }
    // The payload decoder alone, under any header that frames this many bytes.
    if data.len() >= HEADER_LEN {
        let (head, payload) = data.split_at(HEADER_LEN);
        let head: &[u8; HEADER_LEN] = head.try_into().expect("8 bytes");
        for network in Network::ALL {
            if let Ok(header) = Header::decode(head, network) {
                let _ = Message::decode(&header, payload);
            }
        }
    }
}

/// Any stream: deframed whole and in the splits chosen by its first byte, the frames and
/// the final error are the same; never panics.
pub fn check_deframer(data: &[u8]) {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let whole = deframe(stream, &[stream.len().max(1)]);
    let chunk = usize::from(split % 64) + 1;
    let sizes = [chunk, chunk * 7 + 3, 1];
    let pieces = deframe(stream, &sizes);
    assert_eq!(whole, pieces, "a split changed what the deframer yields");
}

type Deframed = (Vec<(Header, Vec<u8>)>, Option<String>);

fn deframe(stream: &[u8], sizes: &[usize]) -> Deframed {
    let mut d = Deframer::new(Network::Dev);
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    let mut error = None;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        let (now, later) = rest.split_at(n);
        rest = later;
        if let Err(e) = d.feed(now, |h, p| frames.push((h, p.to_vec()))) {
            error = Some(e.to_string());
            break;
        }
    }
    (frames, error)
}
