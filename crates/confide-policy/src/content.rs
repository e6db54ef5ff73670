//! The content frame: what the facade puts inside the end-to-end encrypted session plaintext.
//!
//! Layout (all integers big-endian; `docs/policy.md` has the full table):
//!
//! ```text
//! u8     version = 0x01
//! [16]   message id (chosen by the sender)
//! u64    claimed send time, ms since the epoch (sender's clock)
//! timer  the setting the message was sent under: u64 version, u8 proposer, policy
//! u8     body tag, then the body
//! ```
//!
//! There is no encoding for "no timer": the timer field is mandatory and its policy tag `0x00`
//! is refused, so a frame can never be read as "timer off" by omission.

use crate::limits::{CONTENT_FRAME_VERSION, MAX_IDS_PER_FRAME, MAX_TEXT_LEN};
use crate::retention::TimerSetting;
use crate::typed::{CodeStep, Referral, ReferralAnswer};
use confide_attachment::AttachmentPointer;
use confide_crypto::codec::{DecodeError, Reader, Writer};
use confide_crypto::{FrameId, Timestamp};
use core::fmt;
use thiserror::Error;
use zeroize::Zeroizing;

/// A message id: 16 bytes chosen by the sender (random), unique within a conversation.
///
/// `Debug` shows only the first four bytes, enough to tell ids apart in a test log.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId([u8; 16]);

impl MessageId {
    /// Length in bytes.
    pub const LEN: usize = 16;

    /// From raw bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// A fresh random id.
    pub fn random<R: confide_crypto::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(confide_crypto::random_array(rng))
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self(r.array()?))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, ..] = self.0;
        write!(f, "MessageId({a:02x}{b:02x}{c:02x}{d:02x}..)")
    }
}

/// The text of a message: zeroized on drop; `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageText(Zeroizing<Vec<u8>>);

impl MessageText {
    /// Takes the bytes (UTF-8 is the app's convention; this layer does not check it).
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Borrows the bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for MessageText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(text) = self;
        write!(f, "MessageText({} bytes, [REDACTED])", text.len())
    }
}

/// What a content frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// A user message (tag `0x01`).
    Text(MessageText),
    /// A proposal to change the conversation timer (tag `0x02`). Its version must exceed the
    /// version of the frame's own timer field.
    TimerChange(TimerSetting),
    /// The author takes back one of their messages (tag `0x03`).
    Delete {
        /// The message to delete.
        target: MessageId,
    },
    /// The sender ends the conversation (tag `0x04`).
    Close,
    /// End-to-end delivery acknowledgements (tag `0x05`): 1..=`MAX_IDS_PER_FRAME` transport
    /// frame ids in strictly ascending order.
    Ack {
        /// The acknowledged frames' transport ids.
        ids: Vec<FrameId>,
    },
    /// Read receipts (tag `0x06`): same id list rules as [`Body::Ack`].
    Read {
        /// Read message ids.
        ids: Vec<MessageId>,
    },
    /// Sent once after the sender imported a stored state (tag `0x07`): the ids of the most
    /// recent frames of the recipient that the sender's state holds, 0..=`MAX_IDS_PER_FRAME`
    /// in strictly ascending order. The recipient compares them with what it saw
    /// acknowledged, to tell the app which of its messages a restored backup lost.
    Resume {
        /// Transport ids of the recipient's frames that the sender holds.
        received: Vec<FrameId>,
    },
    /// An attachment (tag `0x08`): its pointer, [`confide_attachment::POINTER_LEN`] bytes.
    Attachment(AttachmentPointer),
    /// The sender took a screenshot of the conversation (tag `0x09`, empty).
    ScreenshotNotice,
    /// The sender introduces the recipient to another certified party (tag `0x0a`).
    Referral(Referral),
    /// The answer to a referral (tag `0x0b`): accepted or declined, nothing else.
    ReferralAnswer(ReferralAnswer),
    /// One step of a verification by short code (tag `0x0c`).
    Code(CodeStep),
}

impl Body {
    const TAG_TEXT: u8 = 0x01;
    const TAG_TIMER_CHANGE: u8 = 0x02;
    const TAG_DELETE: u8 = 0x03;
    const TAG_CLOSE: u8 = 0x04;
    const TAG_ACK: u8 = 0x05;
    const TAG_READ: u8 = 0x06;
    const TAG_RESUME: u8 = 0x07;
    const TAG_ATTACHMENT: u8 = 0x08;
    const TAG_SCREENSHOT_NOTICE: u8 = 0x09;
    const TAG_REFERRAL: u8 = 0x0a;
    const TAG_REFERRAL_ANSWER: u8 = 0x0b;
    const TAG_CODE: u8 = 0x0c;

    const ANSWER_ACCEPTED: u8 = 0x01;
    const ANSWER_DECLINED: u8 = 0x02;
}

/// One content frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentFrame {
    /// The message id.
    pub id: MessageId,
    /// When the sender says it sent the frame (its own clock; trusted only within
    /// [`crate::limits::MAX_CLOCK_SKEW`]).
    pub claimed_send_time: Timestamp,
    /// The timer the frame was sent under.
    pub timer: TimerSetting,
    /// What the frame carries.
    pub body: Body,
}

/// Why a content frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ContentEncodeError {
    /// The text is longer than [`MAX_TEXT_LEN`].
    #[error("text of {len} bytes exceeds the maximum {max}")]
    TextTooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// An id list is empty, longer than [`MAX_IDS_PER_FRAME`] or not strictly ascending.
    #[error("id list of {count} ids is empty, too long or not strictly ascending")]
    IdListNotCanonical {
        /// Number of ids.
        count: usize,
    },
    /// A referral's party is empty or longer than
    /// [`MAX_REFERRAL_PARTY_LEN`](crate::limits::MAX_REFERRAL_PARTY_LEN), or its note longer
    /// than [`MAX_REFERRAL_NOTE_LEN`](crate::limits::MAX_REFERRAL_NOTE_LEN).
    #[error("referral party or note outside its length limits")]
    ReferralOutOfLimits,
    /// A timer change does not move the version forward.
    #[error("timer change to version {proposed} does not exceed the frame's version {current}")]
    TimerVersionNotIncreasing {
        /// Version in the body.
        proposed: u64,
        /// Version in the frame's timer field.
        current: u64,
    },
}

/// A 16-byte id an id list can carry: a content [`MessageId`] or a transport [`FrameId`].
pub(crate) trait ListedId: Copy + Ord {
    fn id_bytes(&self) -> &[u8; 16];
    fn from_id_bytes(bytes: [u8; 16]) -> Self;
}

impl ListedId for MessageId {
    fn id_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    fn from_id_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl ListedId for FrameId {
    fn id_bytes(&self) -> &[u8; 16] {
        self.as_bytes()
    }
    fn from_id_bytes(bytes: [u8; 16]) -> Self {
        Self::from_bytes(bytes)
    }
}

/// Whether `ids` is a canonical id list: non-empty, bounded, strictly ascending.
pub(crate) fn ids_are_canonical<T: ListedId>(ids: &[T]) -> bool {
    !ids.is_empty()
        && ids.len() <= MAX_IDS_PER_FRAME
        && ids.windows(2).all(|w| w.first() < w.get(1))
}

fn write_ids<T: ListedId>(w: &mut Writer, ids: &[T]) -> Result<(), ContentEncodeError> {
    if !ids_are_canonical(ids) {
        return Err(ContentEncodeError::IdListNotCanonical { count: ids.len() });
    }
    let count = u16::try_from(ids.len())
        .map_err(|_| ContentEncodeError::IdListNotCanonical { count: ids.len() })?;
    w.u16(count);
    for id in ids {
        w.bytes(id.id_bytes());
    }
    Ok(())
}

fn read_ids<T: ListedId>(r: &mut Reader<'_>) -> Result<Vec<T>, DecodeError> {
    let count = r.count16("id list", MAX_IDS_PER_FRAME)?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(T::from_id_bytes(r.array()?));
    }
    if !ids_are_canonical(&ids) {
        return Err(DecodeError::InvalidValue { field: "id list" });
    }
    Ok(ids)
}

fn write_header(w: &mut Writer, id: MessageId, claimed_send_time: Timestamp, timer: &TimerSetting) {
    w.u8(CONTENT_FRAME_VERSION)
        .bytes(&id.0)
        .u64(claimed_send_time.as_millis());
    timer.write(w);
}

/// Encodes a text frame straight from borrowed text (one copy, into a buffer of exact size
/// that is zeroized on drop). Same bytes as [`ContentFrame::encode`] of the same frame.
pub(crate) fn encode_text_frame(
    id: MessageId,
    claimed_send_time: Timestamp,
    timer: &TimerSetting,
    text: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ContentEncodeError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(ContentEncodeError::TextTooLong {
            len: text.len(),
            max: MAX_TEXT_LEN,
        });
    }
    let mut w = Writer::with_capacity(crate::limits::MAX_FRAME_OVERHEAD.saturating_add(text.len()));
    write_header(&mut w, id, claimed_send_time, timer);
    w.u8(Body::TAG_TEXT);
    w.var32("text", MAX_TEXT_LEN, text)
        .map_err(|_| ContentEncodeError::TextTooLong {
            len: text.len(),
            max: MAX_TEXT_LEN,
        })?;
    Ok(w.into_zeroizing())
}

impl ContentFrame {
    /// The canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, ContentEncodeError> {
        let text_len = match &self.body {
            Body::Text(text) => text.len(),
            _ => 0,
        };
        let mut w =
            Writer::with_capacity(crate::limits::MAX_FRAME_OVERHEAD.saturating_add(text_len));
        write_header(&mut w, self.id, self.claimed_send_time, &self.timer);
        match &self.body {
            Body::Text(text) => {
                w.u8(Body::TAG_TEXT);
                w.var32("text", MAX_TEXT_LEN, text.as_bytes())
                    .map_err(|_| ContentEncodeError::TextTooLong {
                        len: text.len(),
                        max: MAX_TEXT_LEN,
                    })?;
            }
            Body::TimerChange(setting) => {
                if setting.version <= self.timer.version {
                    return Err(ContentEncodeError::TimerVersionNotIncreasing {
                        proposed: setting.version,
                        current: self.timer.version,
                    });
                }
                w.u8(Body::TAG_TIMER_CHANGE);
                setting.write(&mut w);
            }
            Body::Delete { target } => {
                w.u8(Body::TAG_DELETE).bytes(&target.0);
            }
            Body::Close => {
                w.u8(Body::TAG_CLOSE);
            }
            Body::Ack { ids } => {
                w.u8(Body::TAG_ACK);
                write_ids(&mut w, ids)?;
            }
            Body::Read { ids } => {
                w.u8(Body::TAG_READ);
                write_ids(&mut w, ids)?;
            }
            Body::Resume { received } => {
                w.u8(Body::TAG_RESUME);
                if received.is_empty() {
                    w.u16(0);
                } else {
                    write_ids(&mut w, received)?;
                }
            }
            Body::Attachment(pointer) => {
                w.u8(Body::TAG_ATTACHMENT).bytes(&pointer.to_bytes());
            }
            Body::ScreenshotNotice => {
                w.u8(Body::TAG_SCREENSHOT_NOTICE);
            }
            Body::Referral(referral) => {
                if !referral.is_within_limits() {
                    return Err(ContentEncodeError::ReferralOutOfLimits);
                }
                w.u8(Body::TAG_REFERRAL);
                referral
                    .write(&mut w)
                    .map_err(|_| ContentEncodeError::ReferralOutOfLimits)?;
            }
            Body::ReferralAnswer(answer) => {
                w.u8(Body::TAG_REFERRAL_ANSWER)
                    .bytes(&answer.referral.0)
                    .u8(if answer.accepted {
                        Body::ANSWER_ACCEPTED
                    } else {
                        Body::ANSWER_DECLINED
                    });
            }
            Body::Code(step) => {
                w.u8(Body::TAG_CODE);
                step.write(&mut w);
            }
        }
        Ok(w.into_vec())
    }

    /// Whether the encoded frame carries a referral, read from its header without decoding
    /// the body (`false` for a header that does not parse). Lets the endpoint validate a
    /// referral's party before the policy accepts the frame.
    #[must_use]
    pub fn carries_referral(bytes: &[u8]) -> bool {
        let mut r = Reader::new(bytes);
        let header = r.u8().is_ok_and(|v| v == CONTENT_FRAME_VERSION)
            && MessageId::read(&mut r).is_ok()
            && r.u64().is_ok()
            && TimerSetting::read(&mut r).is_ok();
        header && r.u8().is_ok_and(|tag| tag == Body::TAG_REFERRAL)
    }

    /// Strict decoding: unknown versions and tags, out-of-range timers, non-canonical id
    /// lists and trailing bytes are refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != CONTENT_FRAME_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "content frame",
                found: version,
            });
        }
        let id = MessageId::read(&mut r)?;
        let claimed_send_time = Timestamp::from_millis(r.u64()?);
        let timer = TimerSetting::read(&mut r)?;
        let body = match r.u8()? {
            Body::TAG_TEXT => Body::Text(MessageText::new(r.var32("text", MAX_TEXT_LEN)?.to_vec())),
            Body::TAG_TIMER_CHANGE => {
                let setting = TimerSetting::read(&mut r)?;
                if setting.version <= timer.version {
                    return Err(DecodeError::InvalidValue {
                        field: "timer change version",
                    });
                }
                Body::TimerChange(setting)
            }
            Body::TAG_DELETE => Body::Delete {
                target: MessageId::read(&mut r)?,
            },
            Body::TAG_CLOSE => Body::Close,
            Body::TAG_ACK => Body::Ack {
                ids: read_ids(&mut r)?,
            },
            Body::TAG_READ => Body::Read {
                ids: read_ids(&mut r)?,
            },
            Body::TAG_RESUME => {
                let count = r.count16("resume id list", MAX_IDS_PER_FRAME)?;
                let mut received = Vec::with_capacity(count);
                for _ in 0..count {
                    received.push(FrameId::from_bytes(r.array()?));
                }
                if !received.is_empty() && !ids_are_canonical(&received) {
                    return Err(DecodeError::InvalidValue {
                        field: "resume id list",
                    });
                }
                Body::Resume { received }
            }
            Body::TAG_ATTACHMENT => {
                let pointer = r.bytes(confide_attachment::POINTER_LEN)?;
                Body::Attachment(AttachmentPointer::from_bytes(pointer)?)
            }
            Body::TAG_SCREENSHOT_NOTICE => Body::ScreenshotNotice,
            Body::TAG_REFERRAL => Body::Referral(Referral::read(&mut r)?),
            Body::TAG_REFERRAL_ANSWER => {
                let referral = MessageId::read(&mut r)?;
                let accepted = match r.u8()? {
                    Body::ANSWER_ACCEPTED => true,
                    Body::ANSWER_DECLINED => false,
                    _ => {
                        return Err(DecodeError::InvalidValue {
                            field: "referral answer",
                        });
                    }
                };
                Body::ReferralAnswer(ReferralAnswer { referral, accepted })
            }
            Body::TAG_CODE => Body::Code(CodeStep::read(&mut r)?),
            _ => return Err(DecodeError::InvalidValue { field: "body tag" }),
        };
        r.finish()?;
        Ok(Self {
            id,
            claimed_send_time,
            timer,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::{RetentionPolicy, Side};
    use confide_crypto::Duration;

    fn frame(body: Body) -> ContentFrame {
        ContentFrame {
            id: MessageId::from_bytes([7; 16]),
            claimed_send_time: Timestamp::from_millis(1_700_000_000_000),
            timer: TimerSetting {
                version: 3,
                proposer: Side::Responder,
                policy: RetentionPolicy::after_send(Duration::from_hours(1)),
            },
            body,
        }
    }

    #[test]
    fn round_trips_every_body() {
        let bodies = [
            Body::Text(MessageText::new(b"hello".to_vec())),
            Body::TimerChange(TimerSetting {
                version: 4,
                proposer: Side::Initiator,
                policy: RetentionPolicy::Off,
            }),
            Body::Delete {
                target: MessageId::from_bytes([1; 16]),
            },
            Body::Close,
            Body::Ack {
                ids: vec![FrameId::from_bytes([1; 16]), FrameId::from_bytes([2; 16])],
            },
            Body::Read {
                ids: vec![MessageId::from_bytes([9; 16])],
            },
            Body::Resume { received: vec![] },
            Body::Resume {
                received: vec![FrameId::from_bytes([3; 16]), FrameId::from_bytes([4; 16])],
            },
        ];
        for body in bodies {
            let f = frame(body);
            let bytes = f.encode().unwrap();
            assert_eq!(ContentFrame::decode(&bytes).unwrap(), f);
        }
    }

    #[test]
    fn absent_timer_cannot_be_encoded_or_decoded() {
        let bytes = frame(Body::Close).encode().unwrap();
        // The policy kind byte sits after version(1) + id(16) + time(8) + version(8) + proposer(1).
        let mut absent = bytes.clone();
        absent[34] = 0x00;
        assert!(ContentFrame::decode(&absent).is_err());
        // Cutting the timer away entirely is refused too.
        let mut cut = bytes[..25].to_vec();
        cut.push(0x04);
        assert!(ContentFrame::decode(&cut).is_err());
    }

    #[test]
    fn non_canonical_inputs_are_refused() {
        let bytes = frame(Body::Close).encode().unwrap();
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(ContentFrame::decode(&trailing).is_err());
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(ContentFrame::decode(&version).is_err());
        let unsorted = frame(Body::Ack {
            ids: vec![FrameId::from_bytes([2; 16]), FrameId::from_bytes([1; 16])],
        });
        assert!(unsorted.encode().is_err());
        let mut sorted = frame(Body::Ack {
            ids: vec![FrameId::from_bytes([1; 16]), FrameId::from_bytes([2; 16])],
        })
        .encode()
        .unwrap();
        // Swap the two ids on the wire: decode must refuse.
        let n = sorted.len();
        sorted[n - 32..n - 16].copy_from_slice(&[2; 16]);
        sorted[n - 16..].copy_from_slice(&[1; 16]);
        assert!(ContentFrame::decode(&sorted).is_err());
        let stale = frame(Body::TimerChange(TimerSetting {
            version: 3,
            proposer: Side::Initiator,
            policy: RetentionPolicy::Off,
        }));
        assert!(stale.encode().is_err());
    }

    #[test]
    fn debug_hides_text_and_most_of_the_id() {
        let f = frame(Body::Text(MessageText::new(b"my secret worry".to_vec())));
        let shown = format!("{f:?}");
        assert!(!shown.contains("secret"));
        assert!(!shown.contains("07070707070707"));
    }

    fn referral() -> Body {
        Body::Referral(crate::typed::Referral {
            urgency: crate::typed::Urgency::Urgent,
            party: vec![0xce; 40],
            note: MessageText::new(b"tonight".to_vec()),
        })
    }

    #[test]
    fn only_a_referral_frame_is_flagged_as_carrying_one() {
        // Under both timer layouts (Off stamps no duration; after-send stamps 8 bytes more).
        for timer in [
            RetentionPolicy::Off,
            RetentionPolicy::after_send(Duration::from_hours(1)),
        ] {
            let mut f = frame(referral());
            f.timer.policy = timer;
            let bytes = f.encode().unwrap();
            assert!(ContentFrame::carries_referral(&bytes));
            // Each header field is checked on the way to the tag.
            let mut other_version = bytes.clone();
            other_version[0] = 2;
            assert!(!ContentFrame::carries_referral(&other_version));
            let mut bad_proposer = bytes.clone();
            bad_proposer[33] = 0x07;
            assert!(!ContentFrame::carries_referral(&bad_proposer));
            // Cut anywhere before the body tag (at 35 or 43): not flagged.
            for cut in 0..35 {
                assert!(!ContentFrame::carries_referral(&bytes[..cut]));
            }
        }
        for body in [
            Body::Text(MessageText::new(b"a referral?".to_vec())),
            Body::ScreenshotNotice,
            Body::Close,
            Body::ReferralAnswer(crate::typed::ReferralAnswer {
                referral: MessageId::from_bytes([1; 16]),
                accepted: true,
            }),
        ] {
            assert!(!ContentFrame::carries_referral(
                &frame(body).encode().unwrap()
            ));
        }
    }

    #[test]
    fn typed_bodies_round_trip_and_answers_are_strict() {
        for accepted in [true, false] {
            let f = frame(Body::ReferralAnswer(crate::typed::ReferralAnswer {
                referral: MessageId::from_bytes([5; 16]),
                accepted,
            }));
            let bytes = f.encode().unwrap();
            assert_eq!(ContentFrame::decode(&bytes).unwrap(), f);
            for answer in [0x00, 0x03, 0xff] {
                let mut bad = bytes.clone();
                *bad.last_mut().unwrap() = answer;
                assert!(ContentFrame::decode(&bad).is_err(), "answer {answer:#04x}");
            }
        }
        for body in [
            referral(),
            Body::ScreenshotNotice,
            Body::Code(crate::typed::CodeStep::Exchange([0x41; 33])),
            Body::Code(crate::typed::CodeStep::Confirm(Zeroizing::new([0xc0; 32]))),
        ] {
            let f = frame(body);
            let bytes = f.encode().unwrap();
            assert_eq!(ContentFrame::decode(&bytes).unwrap(), f);
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(ContentFrame::decode(&longer).is_err());
        }
        // A code step tag this version does not define is refused.
        let mut bytes = frame(Body::Code(crate::typed::CodeStep::Exchange([0x41; 33])))
            .encode()
            .unwrap();
        let at = bytes.len() - 34;
        bytes[at] = 0x03;
        assert!(ContentFrame::decode(&bytes).is_err());
    }
}
