//! Acknowledgements outside the session: a list of transport frame ids sealed directly in a
//! symmetric envelope of the acknowledging side's current epoch (`docs/endpoint.md`,
//! "Acknowledgements", and `docs/sealed-sender.md` §9.10).
//!
//! An acknowledgement names frames the peer sent us and nothing else, so it does not need the
//! session's ratchet: the symmetric envelope already authenticates it as the peer's (its key
//! comes from an epoch seed and the session's envelope secret, both known to the two parties
//! only) and makes a replay fail (each tag opens once). Sealed this way an acknowledgement of
//! one frame is 54 bytes of envelope instead of a padded session message, and neither side
//! pays a ratchet step for it.

use confide_crypto::codec::{DecodeError, Reader, Writer};
use confide_policy::limits::MAX_IDS_PER_FRAME;
use confide_transport::FrameId;

use crate::consts::{
    BARE_ACK_VERSION, KIND_ACKS_AND_SESSION, KIND_BARE_ACK, KIND_RESET_REQUEST,
    KIND_TOKEN_AND_SESSION,
};

/// The envelope payload of an acknowledgement sealed outside the session:
/// `version:u8 (= 0x01) || kind:u8 (= 0x22) || count:u16 || count × id[16]`, with
/// `1 <= count <= MAX_IDS_PER_FRAME` and the ids strictly ascending (so every list has one
/// encoding), nothing after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcknowledgementPayload {
    ids: Vec<FrameId>,
}

impl AcknowledgementPayload {
    /// The payload acknowledging `ids` (sorted, duplicates removed). `None` if there is none
    /// or more than [`MAX_IDS_PER_FRAME`].
    #[must_use]
    pub fn new(ids: &[FrameId]) -> Option<Self> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        (!ids.is_empty() && ids.len() <= MAX_IDS_PER_FRAME).then_some(Self { ids })
    }

    /// The acknowledged frame ids, ascending.
    #[must_use]
    pub fn ids(&self) -> &[FrameId] {
        &self.ids
    }

    /// The canonical encoding.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4usize.saturating_add(self.ids.len().saturating_mul(16)));
        // `new` and `from_bytes` bound the count by MAX_IDS_PER_FRAME, far below u16::MAX.
        let count = u16::try_from(self.ids.len()).unwrap_or(u16::MAX);
        w.u8(BARE_ACK_VERSION).u8(KIND_BARE_ACK).u16(count);
        for id in &self.ids {
            w.bytes(id.as_bytes());
        }
        w.into_vec()
    }

    /// The envelope payload that carries these acknowledgements in front of `inner`, a
    /// session message (with or without the sender's delivery token in front):
    /// `version:u8 (= 0x01) || kind:u8 (= 0x23) || count:u16 || count × id[16] || inner`.
    #[must_use]
    pub fn in_front_of(&self, inner: &[u8]) -> Vec<u8> {
        let mut out = self.to_bytes();
        if let Some(kind) = out.get_mut(1) {
            *kind = KIND_ACKS_AND_SESSION;
        }
        out.extend_from_slice(inner);
        out
    }

    /// Splits an envelope payload of kind `0x23` ([`AcknowledgementPayload::in_front_of`])
    /// into its acknowledgements and the payload behind them, which must be a session
    /// message (kind below `0x20`) or a session message behind the sender's token (`0x21`).
    ///
    /// # Errors
    /// [`DecodeError`] if the kind is not `0x23`, the list is malformed, or the inner payload
    /// is missing or of another kind.
    pub fn split_in_front(payload: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(payload);
        let acks = Self::read(&mut r, KIND_ACKS_AND_SESSION)?;
        let inner = r.rest();
        match inner.get(1) {
            Some(&kind) if kind < KIND_RESET_REQUEST || kind == KIND_TOKEN_AND_SESSION => {
                Ok((acks, inner))
            }
            _ => Err(DecodeError::InvalidValue {
                field: "payload behind acknowledgements",
            }),
        }
    }

    /// Strict decoding: the version and kind bytes, a count within bounds, ids strictly
    /// ascending, no trailing bytes.
    ///
    /// # Errors
    /// [`DecodeError`] naming what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let acks = Self::read(&mut r, KIND_BARE_ACK)?;
        r.finish()?;
        Ok(acks)
    }

    fn read(r: &mut Reader<'_>, kind: u8) -> Result<Self, DecodeError> {
        if r.u8()? != BARE_ACK_VERSION {
            return Err(DecodeError::InvalidValue {
                field: "acknowledgement payload version",
            });
        }
        if r.u8()? != kind {
            return Err(DecodeError::InvalidValue {
                field: "acknowledgement payload kind",
            });
        }
        let count = usize::from(r.u16()?);
        if count == 0 || count > MAX_IDS_PER_FRAME {
            return Err(DecodeError::InvalidValue {
                field: "acknowledgement count",
            });
        }
        let mut ids: Vec<FrameId> = Vec::with_capacity(count);
        for _ in 0..count {
            let id = FrameId::from_bytes(r.array()?);
            if ids.last().is_some_and(|last| *last >= id) {
                return Err(DecodeError::InvalidValue {
                    field: "acknowledged ids (not strictly ascending)",
                });
            }
            ids.push(id);
        }
        Ok(Self { ids })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn id(b: u8) -> FrameId {
        FrameId::from_bytes([b; 16])
    }

    #[test]
    fn encoding_is_canonical_and_strict() {
        let p = AcknowledgementPayload::new(&[id(3), id(1), id(3)]).unwrap();
        assert_eq!(p.ids(), &[id(1), id(3)]);
        let bytes = p.to_bytes();
        assert_eq!(bytes.len(), 4 + 32);
        assert_eq!(&bytes[..4], &[0x01, 0x22, 0x00, 0x02]);
        assert_eq!(AcknowledgementPayload::from_bytes(&bytes).unwrap(), p);

        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(AcknowledgementPayload::from_bytes(&trailing).is_err());
        let mut descending = bytes.clone();
        descending[4..20].copy_from_slice(&[3; 16]);
        descending[20..36].copy_from_slice(&[1; 16]);
        assert!(AcknowledgementPayload::from_bytes(&descending).is_err());
        let mut repeated = bytes.clone();
        repeated[20..36].copy_from_slice(&[1; 16]);
        assert!(AcknowledgementPayload::from_bytes(&repeated).is_err());
        assert!(AcknowledgementPayload::from_bytes(&[0x01, 0x22, 0, 0]).is_err());
        assert!(AcknowledgementPayload::from_bytes(&bytes[..35]).is_err());
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(AcknowledgementPayload::from_bytes(&version).is_err());
        let mut kind = bytes;
        kind[1] = 0x21;
        assert!(AcknowledgementPayload::from_bytes(&kind).is_err());
    }

    #[test]
    fn the_documented_example_encodes_as_written() {
        // docs/endpoint.md, "Acknowledgements": one id, 0x11 x 16.
        let p = AcknowledgementPayload::new(&[id(0x11)]).unwrap();
        let mut expected = vec![0x01, 0x22, 0x00, 0x01];
        expected.extend_from_slice(&[0x11; 16]);
        assert_eq!(p.to_bytes(), expected);
        assert_eq!(
            confide_sealed::symmetric_envelope_len(expected.len()),
            Some(57)
        );
    }

    #[test]
    fn acknowledgements_in_front_of_a_session_message_split_strictly() {
        let p = AcknowledgementPayload::new(&[id(2), id(1)]).unwrap();
        let session = [0x01, 0x02, 0xaa, 0xbb];
        let wrapped = p.in_front_of(&session);
        assert_eq!(&wrapped[..4], &[0x01, 0x23, 0x00, 0x02]);
        let (acks, inner) = AcknowledgementPayload::split_in_front(&wrapped).unwrap();
        assert_eq!(acks, p);
        assert_eq!(inner, &session);
        let with_token = p.in_front_of(&[0x01, 0x21, 0x00]);
        assert!(AcknowledgementPayload::split_in_front(&with_token).is_ok());
        // Nothing behind, a reset request, acknowledgements again: refused.
        for inner in [
            &[][..],
            &[0x01, 0x20, 0x00],
            &[0x01, 0x22, 0x00],
            &[0x01, 0x23],
        ] {
            assert!(AcknowledgementPayload::split_in_front(&p.in_front_of(inner)).is_err());
        }
        // Kind 0x22 is not a wrapper, and 0x23 is not a standalone acknowledgement.
        assert!(AcknowledgementPayload::split_in_front(&p.to_bytes()).is_err());
        assert!(AcknowledgementPayload::from_bytes(&wrapped).is_err());
    }

    #[test]
    fn the_count_is_bounded() {
        assert!(AcknowledgementPayload::new(&[]).is_none());
        let many: Vec<FrameId> = (0..=MAX_IDS_PER_FRAME)
            .map(|i| {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&(i as u64).to_be_bytes());
                FrameId::from_bytes(b)
            })
            .collect();
        assert!(AcknowledgementPayload::new(&many).is_none());
        let most = AcknowledgementPayload::new(&many[..MAX_IDS_PER_FRAME]).unwrap();
        let bytes = most.to_bytes();
        assert_eq!(AcknowledgementPayload::from_bytes(&bytes).unwrap(), most);
        let mut over = bytes;
        over[2..4].copy_from_slice(&u16::try_from(MAX_IDS_PER_FRAME + 1).unwrap().to_be_bytes());
        over.extend_from_slice(&[0xff; 16]);
        assert!(AcknowledgementPayload::from_bytes(&over).is_err());
    }
}
