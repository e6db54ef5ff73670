//! The typed bodies a content frame carries besides text and the timer controls: an attachment,
//! a screenshot notice, a referral and its answer, and the steps of a verification by short
//! code (`docs/policy.md` §9.1–9.3). Each is versioned by the content frame's version byte and
//! its own body tag, and parsed strictly.

use crate::content::{MessageId, MessageText};
use crate::limits::{
    CODE_CONFIRMATION_LEN, CODE_EXCHANGE_LEN, MAX_REFERRAL_NOTE_LEN, MAX_REFERRAL_PARTY_LEN,
};
use confide_attachment::AttachmentPointer;
use confide_crypto::codec::{DecodeError, Reader, Writer};
use core::fmt;
use zeroize::Zeroizing;

/// A user-visible message: what the policy tracks, times and lets its author take back.
/// Everything a person sees in the conversation is one of these; controls (timer changes,
/// deletes, acknowledgements, referral answers, verification steps) are not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserContent {
    /// A text.
    Text(MessageText),
    /// An attachment (a voice note, an image, a file) stored encrypted on the relay.
    Attachment(AttachmentPointer),
    /// The sender's device reported that the sender took a screenshot of the conversation.
    ScreenshotNotice,
    /// The sender introduces the recipient to another certified party.
    Referral(Referral),
}

impl UserContent {
    /// A short name of the kind, for logs and errors (never the content).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text(_) => "text",
            Self::Attachment(_) => "attachment",
            Self::ScreenshotNotice => "screenshot notice",
            Self::Referral(_) => "referral",
        }
    }
}

/// How soon a referral should be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Urgency {
    /// An ordinary referral or handover (wire value `0x01`).
    Routine,
    /// A crisis referral: an app surfaces it before anything else (wire value `0x02`).
    Urgent,
}

impl Urgency {
    fn to_wire(self) -> u8 {
        match self {
            Self::Routine => 0x01,
            Self::Urgent => 0x02,
        }
    }

    fn from_wire(byte: u8) -> Result<Self, DecodeError> {
        match byte {
            0x01 => Ok(Self::Routine),
            0x02 => Ok(Self::Urgent),
            _ => Err(DecodeError::InvalidValue {
                field: "referral urgency",
            }),
        }
    }
}

/// A referral: the sender (a counselor or a bot) introduces the recipient to another certified
/// party. `party` is that party's certified bundle, as the endpoint encodes it; this layer
/// bounds its length and carries it, the endpoint parses it strictly and validates its
/// certificate before the referral reaches an app. Its `Debug` shows neither the note nor the
/// party.
#[derive(Clone, PartialEq, Eq)]
pub struct Referral {
    /// How soon to act on it.
    pub urgency: Urgency,
    /// The referred party's certified bundle (at most [`MAX_REFERRAL_PARTY_LEN`] bytes).
    pub party: Vec<u8>,
    /// A short note from the referrer for the person referred (at most
    /// [`MAX_REFERRAL_NOTE_LEN`] bytes; may be empty).
    pub note: MessageText,
}

impl fmt::Debug for Referral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            urgency,
            party,
            note,
        } = self;
        f.debug_struct("Referral")
            .field("urgency", urgency)
            .field("party_len", &party.len())
            .field("note", note)
            .finish()
    }
}

impl Referral {
    /// Whether the lengths are within the limits (the only rule this layer checks).
    pub(crate) fn is_within_limits(&self) -> bool {
        !self.party.is_empty()
            && self.party.len() <= MAX_REFERRAL_PARTY_LEN
            && self.note.len() <= MAX_REFERRAL_NOTE_LEN
    }

    pub(crate) fn write(&self, w: &mut Writer) -> Result<(), DecodeError> {
        w.u8(self.urgency.to_wire());
        w.var16("referral party", MAX_REFERRAL_PARTY_LEN, &self.party)
            .map_err(|_| DecodeError::InvalidValue {
                field: "referral party",
            })?;
        w.var16("referral note", MAX_REFERRAL_NOTE_LEN, self.note.as_bytes())
            .map_err(|_| DecodeError::InvalidValue {
                field: "referral note",
            })?;
        Ok(())
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let urgency = Urgency::from_wire(r.u8()?)?;
        let party = r.var16("referral party", MAX_REFERRAL_PARTY_LEN)?.to_vec();
        if party.is_empty() {
            return Err(DecodeError::InvalidValue {
                field: "referral party",
            });
        }
        let note = MessageText::new(r.var16("referral note", MAX_REFERRAL_NOTE_LEN)?.to_vec());
        Ok(Self {
            urgency,
            party,
            note,
        })
    }
}

/// The answer to a referral: only whether it was accepted travels back to the referrer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferralAnswer {
    /// The referral's message id.
    pub referral: MessageId,
    /// Accepted (`true`) or declined.
    pub accepted: bool,
}

/// One step of a verification by short code (`docs/endpoint.md`, "Verification with a short
/// code"). Both carry no secret that outlives the attempt; the exchange message is the PAKE's
/// public message, the confirmation a key-derived value. Neither is shown to a user.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeStep {
    /// The sender's PAKE message (tag `0x01`): [`CODE_EXCHANGE_LEN`] bytes.
    Exchange([u8; CODE_EXCHANGE_LEN]),
    /// The sender's key confirmation (tag `0x02`): [`CODE_CONFIRMATION_LEN`] bytes.
    Confirm(Zeroizing<[u8; CODE_CONFIRMATION_LEN]>),
}

impl fmt::Debug for CodeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Exchange(_) => "CodeStep::Exchange(..)",
            Self::Confirm(_) => "CodeStep::Confirm([REDACTED])",
        })
    }
}

impl CodeStep {
    const TAG_EXCHANGE: u8 = 0x01;
    const TAG_CONFIRM: u8 = 0x02;

    pub(crate) fn write(&self, w: &mut Writer) {
        match self {
            Self::Exchange(message) => {
                w.u8(Self::TAG_EXCHANGE).bytes(message);
            }
            Self::Confirm(confirmation) => {
                w.u8(Self::TAG_CONFIRM).bytes(&confirmation[..]);
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            Self::TAG_EXCHANGE => Ok(Self::Exchange(r.array()?)),
            Self::TAG_CONFIRM => Ok(Self::Confirm(Zeroizing::new(r.array()?))),
            _ => Err(DecodeError::InvalidValue {
                field: "code step tag",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_note_party_and_confirmation() {
        let referral = Referral {
            urgency: Urgency::Urgent,
            party: b"party-bytes-secret".to_vec(),
            note: MessageText::new(b"ask for Sam".to_vec()),
        };
        let shown = format!("{referral:?}");
        assert!(!shown.contains("Sam"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
        let step = CodeStep::Confirm(Zeroizing::new([0xab; CODE_CONFIRMATION_LEN]));
        assert!(!format!("{step:?}").contains("ab"));
    }

    #[test]
    fn referral_limits_are_enforced_both_ways() {
        let mut referral = Referral {
            urgency: Urgency::Routine,
            party: vec![1; MAX_REFERRAL_PARTY_LEN],
            note: MessageText::new(vec![b'n'; MAX_REFERRAL_NOTE_LEN]),
        };
        assert!(referral.is_within_limits());
        let mut w = Writer::new();
        referral.write(&mut w).unwrap();
        let bytes = w.into_vec();
        let mut r = Reader::new(&bytes);
        assert_eq!(Referral::read(&mut r).unwrap(), referral);
        r.finish().unwrap();
        referral.party.push(1);
        assert!(!referral.is_within_limits());
        assert!(referral.write(&mut Writer::new()).is_err());
        // An empty party and an unknown urgency are refused on the wire.
        let mut empty = vec![0x01, 0, 0, 0, 0];
        assert!(Referral::read(&mut Reader::new(&empty)).is_err());
        empty = vec![0x03, 0, 1, 7, 0, 0];
        assert!(Referral::read(&mut Reader::new(&empty)).is_err());
    }

    /// The referral limits are the documented wire limits (docs/policy.md §11): a certified
    /// bundle of today's size (about 2.6 KiB with its ML-KEM key) fits with room.
    #[test]
    fn referral_limits_are_the_documented_ones() {
        assert_eq!(MAX_REFERRAL_PARTY_LEN, 8192);
        assert_eq!(MAX_REFERRAL_NOTE_LEN, 1024);
    }

    #[test]
    fn each_kind_has_its_own_name() {
        let kinds = [
            UserContent::Text(MessageText::new(Vec::new())).kind(),
            UserContent::ScreenshotNotice.kind(),
            UserContent::Referral(Referral {
                urgency: Urgency::Routine,
                party: vec![1],
                note: MessageText::new(Vec::new()),
            })
            .kind(),
        ];
        assert_eq!(kinds, ["text", "screenshot notice", "referral"]);
    }
}
