//! A bounds-checked cursor over a payload. Every read returns `Result`, so no input can
//! panic; callers check the total length first, so the per-read checks never fail in
//! practice and mostly fold away.

use super::error::DecodeError;
use super::header::MessageType;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    total: usize,
    message_type: MessageType,
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn new(message_type: MessageType, buf: &'a [u8]) -> Self {
        Reader {
            buf,
            total: buf.len(),
            message_type,
        }
    }

    #[cold]
    fn short(&self, n: usize) -> DecodeError {
        DecodeError::PayloadTooShort {
            message_type: self.message_type,
            expected: self.total - self.buf.len() + n,
            got: self.total,
        }
    }

    #[inline]
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        match self.buf.split_first_chunk::<N>() {
            Some((a, rest)) => {
                self.buf = rest;
                Ok(*a)
            }
            None => Err(self.short(N)),
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    #[inline]
    pub(crate) fn u16_le(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    #[inline]
    pub(crate) fn u32_le(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    #[inline]
    pub(crate) fn u32_be(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    #[inline]
    pub(crate) fn u64_le(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    #[inline]
    pub(crate) fn u64_be(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    #[inline]
    pub(crate) fn u128_be(&mut self) -> Result<u128, DecodeError> {
        self.array().map(u128::from_be_bytes)
    }

    /// The unread bytes.
    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Ok when everything was read; leftover bytes give [`DecodeError::TrailingBytes`].
    #[inline]
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                message_type: self.message_type,
                expected: self.total - self.buf.len(),
                got: self.total,
            })
        }
    }
}
