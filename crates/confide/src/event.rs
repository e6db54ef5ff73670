//! What the endpoint reports, takes as input and gives as output.

use core::fmt;

use confide_crypto::Timestamp;
use confide_policy::{MessageId, MessageText, RetentionPolicy, Side, TimerSetting};
use confide_sealed::Role;

use crate::endpoint::{DropReason, ReceivedReferral, ReferralError};
use confide_attachment::AttachmentPointer;

/// A local handle for one conversation. It is a counter assigned by this endpoint, so it
/// says nothing about the peer and may be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConversationId(pub(crate) u64);

impl ConversationId {
    /// The handle as a number (stable across export and import).
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conversation#{}", self.0)
    }
}

/// An input to [`Endpoint::handle_input`](crate::Endpoint::handle_input): the run-loop
/// contract's input (`confide_transport::driver`).
pub use confide_transport::driver::Input;

/// One output of [`Endpoint::poll_output`](crate::Endpoint::poll_output): the run-loop
/// contract's output (`confide_transport::driver`) with this crate's [`Event`].
pub type Output = confide_transport::driver::Output<Event>;

/// Who did something in a conversation, in the words an app shows: us (this endpoint's
/// user) or the peer. (The protocol's `Side`, initiator or responder, is not for screens.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// This endpoint's user.
    Us,
    /// The other person (or service) in the conversation.
    Peer,
}

impl Party {
    /// `by` as seen from the party whose own side is `local`.
    #[must_use]
    pub fn of(local: Side, by: Side) -> Self {
        if local == by { Self::Us } else { Self::Peer }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Us => "you",
            Self::Peer => "the other person",
        })
    }
}

/// Something the app must know or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The state changed: export it ([`Endpoint::export_state`](crate::Endpoint::export_state)),
    /// store it durably, then call
    /// [`Endpoint::confirm_persisted`](crate::Endpoint::confirm_persisted). Until then no new
    /// frame leaves the endpoint (acknowledgements of received messages included).
    PersistRequired,
    /// A peer started a conversation with us (its first message follows as [`Event::Message`]).
    ConversationStarted {
        /// The new conversation.
        conversation: ConversationId,
        /// The peer's certified role.
        peer_role: Role,
    },
    /// A text arrived. Show it until an [`Event::Expired`] or [`Event::Deleted`] names its id.
    Message {
        /// The conversation.
        conversation: ConversationId,
        /// The message id.
        id: MessageId,
        /// The sender's role, as certified by the service.
        sender_role: Role,
        /// The text.
        text: MessageText,
        /// When it expires, if already known (after-read timers start when it is read).
        expires_at: Option<Timestamp>,
        /// When the sender says it sent the message (its own clock: use it to order a
        /// transcript, not as proof of time).
        sent_at: Timestamp,
        /// This conversation's count of messages received before this one (0, 1, 2, ...):
        /// the order in which they arrived here, stable across export and import.
        seq: u64,
    },
    /// An attachment arrived (a voice note, an image, a file). Fetch its blob from the relay
    /// by `pointer.blob_id()` and decrypt it with
    /// `confide_attachment::AttachmentDecryptor::for_pointer`. When an [`Event::Expired`]
    /// or [`Event::Deleted`] names its id, erase the pointer, the blob and everything
    /// decrypted from it, and ask the relay to delete the blob.
    Attachment {
        /// The conversation.
        conversation: ConversationId,
        /// The message id.
        id: MessageId,
        /// The sender's role, as certified by the service.
        sender_role: Role,
        /// Where the blob is and how to decrypt it (`Debug` hides the key).
        pointer: AttachmentPointer,
        /// When it expires, if already known.
        expires_at: Option<Timestamp>,
        /// When the sender says it sent it.
        sent_at: Timestamp,
        /// This conversation's count of messages received before this one.
        seq: u64,
    },
    /// The peer's device reported that the peer took a screenshot of the conversation. Show
    /// it in the conversation like a message, until it expires.
    ScreenshotTaken {
        /// The conversation.
        conversation: ConversationId,
        /// The notice's message id.
        id: MessageId,
        /// The sender's role, as certified by the service.
        sender_role: Role,
        /// When it expires, if already known.
        expires_at: Option<Timestamp>,
        /// When the sender says it took the screenshot.
        sent_at: Timestamp,
        /// This conversation's count of messages received before this one.
        seq: u64,
    },
    /// A counselor or bot referred us to another certified party, whose certificate has
    /// been validated. Show it with the party's role and name (first, if it is urgent); the
    /// user accepts ([`Endpoint::accept_referral`](crate::Endpoint::accept_referral)) or
    /// declines ([`Endpoint::decline_referral`](crate::Endpoint::decline_referral)).
    Referral {
        /// The conversation it arrived in.
        conversation: ConversationId,
        /// The referral's message id.
        id: MessageId,
        /// The referrer's role, as certified by the service.
        sender_role: Role,
        /// The referral.
        referral: ReceivedReferral,
        /// When it expires, if already known.
        expires_at: Option<Timestamp>,
        /// When the sender says it sent it.
        sent_at: Timestamp,
        /// This conversation's count of messages received before this one.
        seq: u64,
    },
    /// A referral that arrived was refused and is not shown: the party it names is not
    /// certified (or not a counselor or bot), or the sender may not refer. Nothing else
    /// changed; the referrer's app may send a new one.
    ReferralRefused {
        /// The conversation it arrived in.
        conversation: ConversationId,
        /// Why.
        reason: ReferralError,
    },
    /// The person we referred answered (that is all the referrer learns).
    ReferralAnswered {
        /// The conversation.
        conversation: ConversationId,
        /// Our referral's message id.
        referral: MessageId,
        /// Accepted or declined.
        accepted: bool,
    },
    /// Both sides entered the same short code: the peer holds the identity key this
    /// conversation shows, and knew the code. [`Endpoint::verification`](crate::Endpoint::verification)
    /// now says `Code`.
    CodeVerified {
        /// The conversation.
        conversation: ConversationId,
    },
    /// The short codes did not match: a typo, or someone in the middle of the conversation.
    /// Say so plainly; the users may try again with a new code while `attempts_left > 0`,
    /// and should compare safety numbers otherwise.
    CodeMismatch {
        /// The conversation.
        conversation: ConversationId,
        /// Attempts this conversation still allows.
        attempts_left: u8,
    },
    /// The peer acknowledged one of our texts (authenticated, end to end).
    Delivered {
        /// The conversation.
        conversation: ConversationId,
        /// Our message.
        id: MessageId,
    },
    /// No acknowledgement arrived within the transport's give-up time; the endpoint stopped
    /// retransmitting the text. If an acknowledgement still arrives later, an
    /// [`Event::Delivered`] for the same id follows (the last word wins).
    DeliveryFailed {
        /// The conversation.
        conversation: ConversationId,
        /// Our message.
        id: MessageId,
    },
    /// The peer has read these messages of ours.
    Read {
        /// The conversation.
        conversation: ConversationId,
        /// Our messages that were read.
        ids: Vec<MessageId>,
    },
    /// A message's timer ran out: erase it (and anything derived from it) now.
    Expired {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        id: MessageId,
    },
    /// A message was deleted by its author: erase it now.
    Deleted {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        id: MessageId,
        /// Its author (who deleted it).
        by: Party,
    },
    /// The conversation timer changed.
    TimerChanged {
        /// The conversation.
        conversation: ConversationId,
        /// The agreed setting.
        setting: TimerSetting,
        /// What this side applies to new messages (the setting within the org bounds).
        effective: RetentionPolicy,
    },
    /// A message arrived from the peer's address under a different identity key. It is held,
    /// unread and unacknowledged; the new identity's safety number is
    /// [`Endpoint::pending_identity_safety_number`](crate::Endpoint::pending_identity_safety_number)
    /// (compare it with the user's contact before accepting). It stays held until the app calls
    /// [`Endpoint::accept_identity_change`](crate::Endpoint::accept_identity_change) (after the
    /// user compared the new safety number), or is dropped with
    /// [`Endpoint::reject_identity_change`](crate::Endpoint::reject_identity_change).
    IdentityChanged {
        /// The conversation.
        conversation: ConversationId,
    },
    /// The conversation is closed; its session keys are erased.
    ConversationClosed {
        /// The conversation.
        conversation: ConversationId,
        /// Who closed it.
        by: Party,
    },
    /// The prekeys changed (consumed, replenished or rotated): upload
    /// [`Endpoint::published_bundles`](crate::Endpoint::published_bundles) to the directory.
    BundlesChanged,
    /// The conversation's session was replaced by a new one because one side restored an
    /// older state (a backup) and the two could no longer follow each other. Messages keep
    /// flowing in the new session; texts of ours that were still waiting were re-encrypted
    /// in it and go out again.
    ///
    /// Both sides then tell each other what they hold (a resume frame); texts of ours the
    /// peer acknowledged and no longer has are reported by [`Event::PeerRestored`].
    SessionReset {
        /// The conversation.
        conversation: ConversationId,
    },
    /// The peer imported an older stored state (a backup) and no longer holds these texts of
    /// ours, which it had acknowledged. Found by comparing the resume frame the peer sends
    /// after an import or a session reset with the acknowledgements we saw. Its app has lost
    /// them: offer the user to send them again.
    PeerRestored {
        /// The conversation.
        conversation: ConversationId,
        /// Our texts the peer acknowledged and no longer holds, oldest first.
        possibly_lost: Vec<MessageId>,
    },
    /// A frame that concerns this conversation was refused (see [`DropReason`] for what each
    /// reason means and what to do). Frames that cannot be attributed to a conversation
    /// (relay garbage, envelopes that do not open) only move the counters of
    /// [`Endpoint::stats`](crate::Endpoint::stats), so a relay cannot flood the app.
    FrameDropped {
        /// The conversation.
        conversation: ConversationId,
        /// Why.
        reason: DropReason,
    },
    /// Our sender certificate expires at `expires_at`, within
    /// [`CERTIFICATE_RENEWAL_WARNING`](crate::consts::CERTIFICATE_RENEWAL_WARNING): obtain a
    /// renewed one and call [`Endpoint::set_certificate`](crate::Endpoint::set_certificate).
    /// Emitted once per certificate (again after an import).
    CertificateExpiring {
        /// When it expires.
        expires_at: Timestamp,
    },
}
