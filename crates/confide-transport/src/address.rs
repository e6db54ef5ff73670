//! Opaque mailbox addresses.

use core::fmt;

use confide_wire::codec::{DecodeError, Reader, Writer};
use thiserror::Error;

use crate::consts::MAX_ADDRESS_LEN;

/// An opaque mailbox address: 1 to [`MAX_ADDRESS_LEN`] bytes that the app's transport (or the
/// relay) knows how to reach.
///
/// The transport layer never interprets the bytes. An address identifies a person's mailbox,
/// so `Debug` prints only its length: `Address(<redacted, 32 bytes>)`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(Vec<u8>);

/// Why bytes are not a valid [`Address`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddressError {
    /// An address must hold at least one byte.
    #[error("an address cannot be empty")]
    Empty,
    /// The address is longer than [`MAX_ADDRESS_LEN`].
    #[error("address of {len} bytes exceeds the maximum {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

impl Address {
    /// Wraps `bytes` as an address, refusing empty or over-long input.
    pub fn new(bytes: &[u8]) -> Result<Self, AddressError> {
        if bytes.is_empty() {
            return Err(AddressError::Empty);
        }
        if bytes.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong {
                len: bytes.len(),
                max: MAX_ADDRESS_LEN,
            });
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The address bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (never zero).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an address holds at least one byte. Present for API symmetry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Encodes as one length byte (1..=[`MAX_ADDRESS_LEN`]) followed by the bytes.
    pub(crate) fn write(&self, w: &mut Writer) {
        // The constructor keeps the length within 1..=MAX_ADDRESS_LEN, which fits a byte.
        w.u8(u8::try_from(self.0.len()).unwrap_or(u8::MAX));
        w.bytes(&self.0);
    }

    /// Decodes the form written by [`Address::write`], strictly.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = usize::from(r.u8()?);
        if len == 0 {
            return Err(DecodeError::InvalidValue { field: "address" });
        }
        if len > MAX_ADDRESS_LEN {
            return Err(DecodeError::TooLong {
                field: "address",
                len,
                max: MAX_ADDRESS_LEN,
            });
        }
        Ok(Self(r.bytes(len)?.to_vec()))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address(<redacted, {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let a = Address::new(b"counselor-mailbox-7").unwrap();
        let shown = format!("{a:?}");
        assert_eq!(shown, "Address(<redacted, 19 bytes>)");
        assert!(!shown.contains("counselor"));
    }

    #[test]
    fn bounds_are_enforced() {
        assert_eq!(Address::new(&[]), Err(AddressError::Empty));
        assert!(Address::new(&[1; MAX_ADDRESS_LEN]).is_ok());
        assert_eq!(
            Address::new(&[1; MAX_ADDRESS_LEN + 1]),
            Err(AddressError::TooLong {
                len: MAX_ADDRESS_LEN + 1,
                max: MAX_ADDRESS_LEN
            })
        );
    }

    #[test]
    fn codec_is_strict() {
        let a = Address::new(&[9; 5]).unwrap();
        let mut w = Writer::new();
        a.write(&mut w);
        let bytes = w.into_vec();
        assert_eq!(bytes, [5, 9, 9, 9, 9, 9]);
        let mut r = Reader::new(&bytes);
        assert_eq!(Address::read(&mut r).unwrap(), a);
        assert!(r.finish().is_ok());
        assert!(Address::read(&mut Reader::new(&[0])).is_err());
        assert!(Address::read(&mut Reader::new(&[65; 66])).is_err());
        assert!(Address::read(&mut Reader::new(&[3, 1, 2])).is_err());
    }
}
