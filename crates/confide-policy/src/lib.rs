//! Retention policy for Confide conversations: disappearing-message timers carried and
//! enforced by the protocol, in-band timer changes, remote delete ("unsend"), conversation
//! close, and a sans-IO expiry scheduler.
//!
//! The facade puts a [`ContentFrame`] inside every end-to-end encrypted session plaintext.
//! Every frame carries the timer it was sent under, so the receiver enforces the sender's
//! intent even when frames are reordered, and a frame without a timer cannot be encoded or
//! decoded: missing timer information never reads as "off". [`ConversationPolicy`] keeps one
//! conversation's state: the agreed [`TimerSetting`] (versioned, concurrent changes resolve
//! the same way on both sides), each message's absolute deadline computed from *local* time,
//! authorship for unsend, pending deletes, tombstones, and the close flag. It never reads a
//! clock: every call takes `now`.
//!
//! The rules (start rules, organisation bounds, version resolution, the clock-skew rule, the
//! unsend window, close, crypto-shredding) and the byte layouts are in `docs/policy.md`.
//!
//! ```
//! use confide_crypto::{Duration, Timestamp};
//! use confide_policy::{
//!     ConversationPolicy, Incoming, MessageId, MessageText, OrgBounds, PolicyEvent,
//!     RetentionPolicy, Side, UserContent,
//! };
//!
//! let org = OrgBounds::UNRESTRICTED;
//! let mut client = ConversationPolicy::new(Side::Initiator, org, RetentionPolicy::Off);
//! let mut counselor = ConversationPolicy::new(Side::Responder, org, RetentionPolicy::Off);
//! let t0 = Timestamp::from_millis(1_750_000_000_000);
//!
//! // The client turns on a one-hour timer; the frame goes through the session to the counselor.
//! let change = client
//!     .set_timer(RetentionPolicy::after_send(Duration::from_hours(1)), MessageId::from_bytes([1; 16]), t0)
//!     .unwrap();
//! assert!(matches!(client.poll_event(), Some(PolicyEvent::TimerChanged { .. })));
//! assert_eq!(counselor.handle_incoming(change.as_bytes(), t0).unwrap(), Incoming::Control);
//! assert!(matches!(counselor.poll_event(), Some(PolicyEvent::TimerChanged { .. })));
//!
//! // A text stamped with the new timer.
//! let id = MessageId::from_bytes([2; 16]);
//! let frame = client.send_text(id, b"I need to talk", t0).unwrap();
//! let Incoming::Message(message) = counselor.handle_incoming(frame.as_bytes(), t0).unwrap() else {
//!     panic!("expected a message");
//! };
//! assert_eq!(message.content, UserContent::Text(MessageText::new(b"I need to talk".to_vec())));
//! assert_eq!(message.deadline, Some(t0.saturating_add(Duration::from_hours(1))));
//!
//! // An hour later, both sides are told to erase it, and skipped session keys that old go too.
//! let later = t0.saturating_add(Duration::from_hours(1));
//! assert_eq!(counselor.poll_timeout(), Some(later));
//! counselor.handle_timeout(later);
//! client.handle_timeout(later);
//! assert_eq!(counselor.poll_event(), Some(PolicyEvent::Expired { id }));
//! assert_eq!(client.poll_event(), Some(PolicyEvent::Expired { id }));
//! assert!(counselor.skipped_key_cutoff(later).is_some());
//!
//! // The counselor closes the conversation: the client must erase the session keys.
//! let (close, _erase_ours) = counselor.close(MessageId::from_bytes([3; 16]), later).unwrap();
//! assert!(matches!(
//!     client.handle_incoming(close.as_bytes(), later).unwrap(),
//!     Incoming::Closed(_)
//! ));
//! assert!(client.send_text(MessageId::from_bytes([4; 16]), b"hello?", later).is_err());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod content;
pub mod conversation;
pub mod error;
pub mod limits;
pub mod queue;
pub mod retention;
pub mod typed;

pub use content::{Body, ContentEncodeError, ContentFrame, MessageId, MessageText};
pub use conversation::{
    ConversationPolicy, EraseSessionKeys, Incoming, OutgoingFrame, PolicyEvent, ReceivedMessage,
    after_send_start,
};
pub use error::{
    CloseError, IncomingError, ReceiptError, SendError, StateEncodeError, TimerChangeError,
    UnsendError,
};
pub use queue::ExpiryQueue;
pub use retention::{OrgBounds, RetentionDuration, RetentionPolicy, Side, StartRule, TimerSetting};
pub use typed::{CodeStep, Referral, ReferralAnswer, Urgency, UserContent};
