//! The wire frame.
//!
//! Wire format of version 1 (all integers big-endian; see `docs/transport.md`):
//!
//! | offset | size | field                                        |
//! |--------|------|----------------------------------------------|
//! | 0      | 1    | version, `0x01`                              |
//! | 1      | 1    | kind, `0x01` = `Data`                        |
//! | 2      | 16   | frame id ([`FrameId`])                       |
//! | 18     | 4    | payload length `n`, at most [`MAX_PAYLOAD_LEN`] |
//! | 22     | n    | payload (opaque; a sealed-sender envelope)   |
//!
//! Nothing may follow the payload.

use core::fmt;

use confide_wire::codec::{DecodeError, Reader, Writer};
use thiserror::Error;

use crate::FrameId;
use crate::consts::{FRAME_HEADER_LEN, FRAME_VERSION, MAX_PAYLOAD_LEN};

/// Kind byte of a [`Frame::Data`].
pub const FRAME_KIND_DATA: u8 = 0x01;

/// One unit on the wire between an endpoint and its transport.
///
/// The payload is opaque to this layer. Acknowledgements are not frames: they travel
/// end-to-end encrypted inside the session, so a relay cannot forge one.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// A message (or an end-to-end acknowledgement: the relay cannot tell them apart).
    Data {
        /// The sender's id for this message; retransmissions repeat it.
        id: FrameId,
        /// Opaque bytes, at most [`MAX_PAYLOAD_LEN`].
        payload: Vec<u8>,
    },
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Data { id, payload } => f
                .debug_struct("Data")
                .field("id", id)
                .field("payload_len", &payload.len())
                .finish(),
        }
    }
}

/// Why a frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameEncodeError {
    /// The payload is longer than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the maximum {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

impl Frame {
    /// Encodes the frame. Fails only if the payload exceeds [`MAX_PAYLOAD_LEN`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, FrameEncodeError> {
        match self {
            Self::Data { id, payload } => encode_data(id, payload),
        }
    }

    /// Decodes one frame strictly: known version and kind, length within bounds, no trailing
    /// bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != FRAME_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "frame",
                found: version,
            });
        }
        let frame = match r.u8()? {
            FRAME_KIND_DATA => {
                let id = FrameId::from_bytes(r.array()?);
                let payload = r.var32("payload", MAX_PAYLOAD_LEN)?.to_vec();
                Self::Data { id, payload }
            }
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "frame kind",
                });
            }
        };
        r.finish()?;
        Ok(frame)
    }
}

/// Encodes a `Data` frame without building a [`Frame`] first (avoids copying the payload).
pub(crate) fn encode_data(id: &FrameId, payload: &[u8]) -> Result<Vec<u8>, FrameEncodeError> {
    let too_large = FrameEncodeError::PayloadTooLarge {
        len: payload.len(),
        max: MAX_PAYLOAD_LEN,
    };
    let mut w = Writer::with_capacity(FRAME_HEADER_LEN.saturating_add(payload.len()));
    w.u8(FRAME_VERSION).u8(FRAME_KIND_DATA).bytes(id.as_bytes());
    w.var32("payload", MAX_PAYLOAD_LEN, payload)
        .map_err(|_| too_large)?;
    Ok(w.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame::Data {
            id: FrameId::from_bytes([0xab; 16]),
            payload: b"sealed envelope".to_vec(),
        }
    }

    #[test]
    fn layout_matches_the_documentation() {
        let bytes = sample().to_bytes().unwrap();
        assert_eq!(bytes.len(), FRAME_HEADER_LEN + 15);
        assert_eq!(&bytes[..2], &[1, 1]);
        assert_eq!(&bytes[2..18], &[0xab; 16]);
        assert_eq!(&bytes[18..22], &[0, 0, 0, 15]);
        assert_eq!(&bytes[22..], b"sealed envelope");
        assert_eq!(Frame::from_bytes(&bytes).unwrap(), sample());
    }

    #[test]
    fn refuses_unknown_version_kind_and_trailing_bytes() {
        let bytes = sample().to_bytes().unwrap();
        let mut v = bytes.clone();
        v[0] = 2;
        assert!(matches!(
            Frame::from_bytes(&v),
            Err(DecodeError::UnknownVersion { found: 2, .. })
        ));
        let mut k = bytes.clone();
        k[1] = 2;
        assert!(matches!(
            Frame::from_bytes(&k),
            Err(DecodeError::InvalidValue { .. })
        ));
        let mut t = bytes.clone();
        t.push(0);
        assert_eq!(
            Frame::from_bytes(&t),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        assert!(Frame::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn payload_limit_is_enforced_both_ways() {
        let id = FrameId::from_bytes([1; 16]);
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            encode_data(&id, &big),
            Err(FrameEncodeError::PayloadTooLarge {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
        let max = encode_data(&id, &big[..MAX_PAYLOAD_LEN]).unwrap();
        assert!(Frame::from_bytes(&max).is_ok());
        let mut over = max.clone();
        over[18..22].copy_from_slice(&u32::try_from(MAX_PAYLOAD_LEN + 1).unwrap().to_be_bytes());
        over.push(0);
        assert!(matches!(
            Frame::from_bytes(&over),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn debug_hides_payload_and_most_of_the_id() {
        let shown = format!("{:?}", sample());
        assert!(!shown.contains("sealed"));
        assert!(shown.contains("abababab.."));
        assert!(!shown.contains("ababababab"));
    }
}
