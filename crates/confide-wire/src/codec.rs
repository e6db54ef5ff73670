//! A strict, canonical byte codec.
//!
//! Every Confide wire format is built from the pieces here: fixed-width big-endian integers,
//! fixed-length byte strings, and byte strings prefixed by a big-endian `u16` or `u32` length.
//! Decoding is strict: a length that runs past the end is an error, a value outside its
//! domain is an error, and [`Reader::finish`] refuses trailing bytes. There is exactly one
//! encoding of every value, so re-encoding a decoded value gives back the input bytes.

use thiserror::Error;

/// Why bytes could not be decoded. Carries positions and counts, never content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("input ended early: needed {needed} more bytes at offset {offset}")]
    UnexpectedEnd {
        /// Offset at which the read started.
        offset: usize,
        /// Bytes that were still needed.
        needed: usize,
    },
    /// Bytes were left over after the value.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// Number of bytes left over.
        count: usize,
    },
    /// A version byte names a format this build does not know.
    #[error("unknown version {found} of {what}")]
    UnknownVersion {
        /// Which structure.
        what: &'static str,
        /// The version found.
        found: u8,
    },
    /// A field held a value outside its domain (unknown tag, bad flag, invalid key...).
    #[error("invalid value in field {field}")]
    InvalidValue {
        /// Which field.
        field: &'static str,
    },
    /// A length field exceeded the documented maximum for that field.
    #[error("length {len} exceeds the maximum {max} for {field}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// The length that was found.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

/// Reads values from a byte slice, front to back.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    input: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the front of `input`.
    #[must_use]
    pub fn new(input: &'a [u8]) -> Self {
        Self { input, offset: 0 }
    }

    /// Bytes not yet read.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.offset)
    }

    /// Current offset from the start of the input.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Takes the next `len` bytes.
    pub fn bytes(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .offset
            .checked_add(len)
            .ok_or(DecodeError::UnexpectedEnd {
                offset: self.offset,
                needed: len,
            })?;
        let out = self
            .input
            .get(self.offset..end)
            .ok_or(DecodeError::UnexpectedEnd {
                offset: self.offset,
                needed: end.saturating_sub(self.input.len()),
            })?;
        self.offset = end;
        Ok(out)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array::<1>()?))
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array::<2>()?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array::<4>()?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array::<8>()?))
    }

    /// Reads a boolean encoded as exactly `0x00` or `0x01`.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidValue { field }),
        }
    }

    /// Reads a `u16` length, checks it against `max`, then takes that many bytes.
    pub fn var16(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        self.bytes(len)
    }

    /// Reads a `u32` length, checks it against `max`, then takes that many bytes.
    pub fn var32(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        self.bytes(len)
    }

    /// Reads a `u16` count of items, refusing more than `max`.
    pub fn count16(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        Ok(len)
    }

    /// Reads a `u32` count of items, refusing more than `max`.
    pub fn count32(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        Ok(len)
    }

    /// Takes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = self.input.get(self.offset..).unwrap_or_default();
        self.offset = self.input.len();
        out
    }

    /// Succeeds only if every byte has been read.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A variable-length field is longer than its length prefix (or its documented limit) allows.
    #[error("field {field} of {len} bytes exceeds the maximum {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

/// Appends values to a growing buffer.
///
/// Serialised state holds secrets (identity seeds, root, chain and message keys), so the
/// writer never leaves a copy of what it wrote in freed memory: when it needs more room it
/// copies into a new, larger buffer and wipes the old one before freeing it (a plain `Vec`
/// would let the allocator free the old block unwiped), and dropping a writer wipes its
/// buffer. [`Writer::into_zeroizing`] hands the bytes over in a buffer that is wiped when
/// dropped; [`Writer::into_vec`] is for public encodings (messages, bundles).
#[derive(Default, Clone)]
pub struct Writer {
    out: Vec<u8>,
}

impl core::fmt::Debug for Writer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The content may be secret: only its length is shown.
        let Self { out } = self;
        f.debug_struct("Writer")
            .field("len", &out.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.out);
    }
}

/// Smallest buffer a growing writer allocates.
const MIN_GROWTH: usize = 64;

impl Writer {
    /// An empty writer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `capacity` bytes.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
        }
    }

    /// Makes room for `additional` more bytes without ever freeing an unwiped buffer: the
    /// content moves into a new buffer (at least twice as large, so appends stay amortised
    /// O(1)) and the old one is wiped, spare capacity included, before it is freed.
    fn reserve(&mut self, additional: usize) {
        let needed = self.out.len().saturating_add(additional);
        if needed <= self.out.capacity() {
            return;
        }
        let capacity = needed
            .max(self.out.capacity().saturating_mul(2))
            .max(MIN_GROWTH);
        let mut grown = Vec::with_capacity(capacity);
        grown.extend_from_slice(&self.out);
        let mut old = core::mem::replace(&mut self.out, grown);
        zeroize::Zeroize::zeroize(&mut old);
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.reserve(bytes.len());
        self.out.extend_from_slice(bytes);
        self
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }

    /// Appends a big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a big-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends `0x01` for true and `0x00` for false.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// Appends a `u16` length and the bytes; refuses more than `max` (itself at most `u16::MAX`).
    pub fn var16(
        &mut self,
        field: &'static str,
        max: usize,
        bytes: &[u8],
    ) -> Result<&mut Self, EncodeError> {
        let max = max.min(usize::from(u16::MAX));
        let len = u16::try_from(bytes.len())
            .ok()
            .filter(|l| usize::from(*l) <= max)
            .ok_or(EncodeError::TooLong {
                field,
                len: bytes.len(),
                max,
            })?;
        self.u16(len);
        Ok(self.bytes(bytes))
    }

    /// Appends a `u32` length and the bytes; refuses more than `max`.
    pub fn var32(
        &mut self,
        field: &'static str,
        max: usize,
        bytes: &[u8],
    ) -> Result<&mut Self, EncodeError> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|_| bytes.len() <= max)
            .ok_or(EncodeError::TooLong {
                field,
                len: bytes.len(),
                max,
            })?;
        self.u32(len);
        Ok(self.bytes(bytes))
    }

    /// Bytes written so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing has been written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Borrows what has been written.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        &self.out
    }

    /// Finishes, returning the buffer as a plain `Vec`: for public encodings only.
    #[must_use]
    pub fn into_vec(mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// Finishes, returning the buffer in a wrapper that wipes it when dropped: for anything
    /// that holds a secret (serialised state).
    #[must_use]
    pub fn into_zeroizing(mut self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(core::mem::take(&mut self.out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trailing_bytes_are_refused() {
        let mut r = Reader::new(&[0, 1, 2]);
        assert_eq!(r.u16().unwrap(), 1);
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes { count: 1 }));
    }

    #[test]
    fn lengths_past_the_end_are_refused() {
        let mut r = Reader::new(&[0, 5, 1, 2]);
        assert!(matches!(
            r.var16("x", 100),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(r.var32("x", 10), Err(DecodeError::TooLong { .. })));
    }

    #[test]
    fn bool_is_canonical() {
        assert_eq!(Reader::new(&[1]).bool("b"), Ok(true));
        assert!(Reader::new(&[2]).bool("b").is_err());
    }

    #[test]
    fn writer_debug_shows_no_content() {
        let mut w = Writer::new();
        w.bytes(b"secret seed");
        let shown = format!("{w:?}");
        assert!(!shown.contains("115"), "{shown}");
        assert!(shown.contains("len: 11"), "{shown}");
    }

    #[test]
    fn writer_growth_keeps_content() {
        let mut w = Writer::with_capacity(1);
        for i in 0..1000u32 {
            w.u32(i);
        }
        let bytes = w.into_zeroizing();
        assert_eq!(bytes.len(), 4000);
        assert_eq!(&bytes[3996..], &999u32.to_be_bytes());
    }

    #[test]
    fn writer_refuses_oversized_fields() {
        let mut w = Writer::new();
        assert!(w.var16("f", 3, &[0; 4]).is_err());
        assert!(w.is_empty(), "a refused field writes nothing");
    }

    proptest! {
        #[test]
        fn round_trip(a in any::<u8>(), b in any::<u16>(), c in any::<u32>(), d in any::<u64>(),
                      v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut w = Writer::new();
            w.u8(a).u16(b).u32(c).u64(d);
            w.var16("v", 1000, &v).unwrap();
            w.var32("v", 1000, &v).unwrap();
            let bytes = w.into_vec();
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.u8().unwrap(), a);
            prop_assert_eq!(r.u16().unwrap(), b);
            prop_assert_eq!(r.u32().unwrap(), c);
            prop_assert_eq!(r.u64().unwrap(), d);
            prop_assert_eq!(r.var16("v", 1000).unwrap(), &v[..]);
            prop_assert_eq!(r.var32("v", 1000).unwrap(), &v[..]);
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.u8();
            let _ = r.var16("v", 10);
            let _ = r.var32("v", 10);
            let _ = r.u64();
            let _ = r.finish();
        }
    }
}
