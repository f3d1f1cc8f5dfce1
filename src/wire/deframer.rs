//! The TCP deframer: turns a byte stream, received in chunks of any size, into frames
//! (a validated header and its payload).

use super::error::DecodeError;
use super::header::{HEADER_LEN, Header, MAX_PAYLOAD};
use crate::types::Network;

/// Spill capacity kept between messages; a larger spill buffer (left by a big message
/// that straddled two receives) is freed once that message is delivered, so idle
/// connections stay small.
pub const SPILL_RETAIN: usize = 2048;

/// Splits one connection's byte stream into frames.
///
/// Feed it each received buffer once, in order ([`Deframer::feed`]). Frames that lie
/// whole in the buffer are handed out as slices of it (zero copy); only a message cut at
/// the end of a buffer is copied, into a per-connection spill buffer of at most
/// 8 + 66 560 bytes, and handed out when its last byte arrives.
///
/// Headers are checked as soon as their 8 bytes are in (§2.7 order). A header error is
/// fatal: `feed` returns it, the connection must close, and every later `feed` returns
/// the same error without reading input. Payloads are not decoded here; a payload error
/// found later by [`Message::decode`](super::Message::decode) only drops that message.
#[derive(Debug)]
pub struct Deframer {
    network: Network,
    max_payload: usize,
    /// Bytes of a header cut by the end of a buffer (`head_len < 8`, no `current`).
    head: [u8; HEADER_LEN],
    head_len: usize,
    /// The header whose payload is being collected in `spill`.
    current: Option<Header>,
    spill: Vec<u8>,
    failed: Option<DecodeError>,
}

impl Deframer {
    /// A deframer for a connection on `network` with the default payload limit.
    pub fn new(network: Network) -> Deframer {
        Deframer::with_max_payload(network, MAX_PAYLOAD)
    }

    /// A deframer with a payload limit below the default (larger values are lowered to
    /// [`MAX_PAYLOAD`]), e.g. to bound memory before a peer is authenticated.
    pub fn with_max_payload(network: Network, max_payload: usize) -> Deframer {
        Deframer {
            network,
            max_payload: max_payload.min(MAX_PAYLOAD),
            head: [0; HEADER_LEN],
            head_len: 0,
            current: None,
            spill: Vec::new(),
            failed: None,
        }
    }

    /// The network this deframer accepts.
    pub fn network(&self) -> Network {
        self.network
    }

    /// Bytes held from an unfinished message.
    pub fn buffered(&self) -> usize {
        if self.current.is_some() {
            HEADER_LEN + self.spill.len()
        } else {
            self.head_len
        }
    }

    /// Bytes allocated for the spill buffer.
    pub fn spill_capacity(&self) -> usize {
        self.spill.capacity()
    }

    /// The fatal error, once one happened.
    pub fn error(&self) -> Option<&DecodeError> {
        self.failed.as_ref()
    }

    #[inline]
    fn header(&mut self, bytes: &[u8; HEADER_LEN]) -> Result<Header, DecodeError> {
        Header::decode_with_limit(bytes, self.network, self.max_payload).inspect_err(|e| {
            self.failed = Some(e.clone());
            self.head_len = 0;
            self.current = None;
            self.spill = Vec::new();
        })
    }

    /// The payload limit in force for the next header.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Changes the payload limit for headers not read yet (values above [`MAX_PAYLOAD`] are
    /// lowered to it).
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.max_payload = max_payload.min(MAX_PAYLOAD);
    }

    /// Consumes `input` and calls `f` with each complete frame, in stream order. Returns
    /// the first header error (after delivering the frames before it); the connection
    /// must then close.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut f: impl FnMut(Header, &[u8]),
    ) -> Result<(), DecodeError> {
        self.feed_ctl(input, |h, p| {
            f(h, p);
            None
        })
    }

    /// [`feed`](Self::feed) where the callback may change the payload limit for the frames
    /// after the one it was given (return `Some(limit)`): e.g. a small limit until a peer is
    /// authenticated, raised within the same buffer once it is.
    pub fn feed_ctl(
        &mut self,
        input: &[u8],
        mut f: impl FnMut(Header, &[u8]) -> Option<usize>,
    ) -> Result<(), DecodeError> {
        let mut f = |h: Header, p: &[u8], max: &mut usize| {
            if let Some(n) = f(h, p) {
                *max = n.min(MAX_PAYLOAD);
            }
        };
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut input = input;

        // 1. Finish a message cut by the previous buffer.
        if self.current.is_none() && self.head_len > 0 {
            let take = (HEADER_LEN - self.head_len).min(input.len());
            let (now, rest) = input.split_at(take);
            self.head[self.head_len..self.head_len + take].copy_from_slice(now);
            self.head_len += take;
            input = rest;
            if self.head_len < HEADER_LEN {
                return Ok(());
            }
            let head = self.head;
            let header = self.header(&head)?;
            self.head_len = 0;
            if header.payload_len() == 0 {
                f(header, &[], &mut self.max_payload);
            } else {
                self.spill.reserve_exact(header.payload_len());
                self.current = Some(header);
            }
        }
        if let Some(header) = self.current {
            let need = header.payload_len() - self.spill.len();
            let take = need.min(input.len());
            let (now, rest) = input.split_at(take);
            self.spill.extend_from_slice(now);
            input = rest;
            if take < need {
                return Ok(());
            }
            f(header, &self.spill, &mut self.max_payload);
            self.current = None;
            self.spill.clear();
            if self.spill.capacity() > SPILL_RETAIN {
                self.spill = Vec::new();
            }
        }

        // 2. Whole messages straight from the input.
        while let Some((head, after)) = input.split_first_chunk::<HEADER_LEN>() {
            let header = self.header(head)?;
            let len = header.payload_len();
            match after.split_at_checked(len) {
                Some((payload, rest)) => {
                    f(header, payload, &mut self.max_payload);
                    input = rest;
                }
                None => {
                    // 3a. A cut payload: keep it.
                    self.spill.reserve_exact(len);
                    self.spill.extend_from_slice(after);
                    self.current = Some(header);
                    return Ok(());
                }
            }
        }

        // 3b. A cut header: keep its bytes.
        self.head[..input.len()].copy_from_slice(input);
        self.head_len = input.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::header::{Extensions, MessageType};

    fn asc(len: u16) -> Vec<u8> {
        let h = Header::new(Network::Dev, MessageType::AscPullAck, Extensions(len));
        let mut v = h.encode().to_vec();
        v.push(1);
        v.extend_from_slice(&[0; 8]);
        v.resize(h.frame_len(), 0x5A);
        v
    }

    #[test]
    fn spill_is_bounded_and_released() {
        let big = asc(u16::MAX); // the largest frame any header allows
        assert_eq!(big.len(), 8 + 65_544);
        let mut d = Deframer::new(Network::Dev);
        let mut seen = Vec::new();
        for c in big.chunks(1500) {
            d.feed(c, |h, p| seen.push((h.message_type, p.len())))
                .unwrap();
            assert!(d.spill_capacity() <= MAX_PAYLOAD + HEADER_LEN);
        }
        assert_eq!(seen, [(MessageType::AscPullAck, 65_544)]);
        assert_eq!(
            d.spill_capacity(),
            0,
            "released after a large spilled frame"
        );
        // Small spilled frames keep their (small) buffer for reuse.
        let small = asc(100);
        d.feed(&small[..50], |_, _| {}).unwrap();
        d.feed(&small[50..], |_, _| {}).unwrap();
        let cap = d.spill_capacity();
        assert!(cap > 0 && cap <= SPILL_RETAIN);
    }

    #[test]
    fn header_split_across_feeds_then_zero_copy_rest() {
        let mut stream = asc(3);
        stream.extend(asc(4));
        stream.extend(asc(5));
        let mut d = Deframer::new(Network::Dev);
        let mut lens = Vec::new();
        d.feed(&stream[..3], |_, p| lens.push(p.len())).unwrap();
        d.feed(&stream[3..], |_, p| lens.push(p.len())).unwrap();
        assert_eq!(lens, [12, 13, 14]);
    }
}
