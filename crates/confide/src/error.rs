//! One error enum per operation. Errors carry counts and kinds, never content or identifiers.

use crate::event::Party;
use confide_crypto::codec::{DecodeError, EncodeError};
use thiserror::Error;

/// Why [`Endpoint::new`](crate::Endpoint::new) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NewEndpointError {
    /// The sender certificate names another identity key than the endpoint's.
    #[error("the sender certificate is for another identity")]
    CertificateIdentityMismatch,
    /// The acknowledgement policy's parameters are out of bounds (a batching window of zero
    /// or longer than [`MAX_ACK_BATCH_WINDOW`](crate::consts::MAX_ACK_BATCH_WINDOW)).
    #[error("acknowledgement policy out of bounds")]
    InvalidAckPolicy,
}

/// Why [`Endpoint::start_conversation`](crate::Endpoint::start_conversation) refused. Nothing
/// changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The certified bundle is malformed, or its certificate does not validate or does not
    /// name the peer's address and the bundle's identity.
    #[error("certified bundle refused: {0}")]
    Certified(#[from] crate::endpoint::CertifiedBundleError),
    /// The bundle is malformed, badly signed, ours, or not the expected identity.
    #[error("bundle refused: {0}")]
    Bundle(#[from] confide_session::BundleError),
    /// The handshake could not be computed from the bundle.
    #[error("session setup failed: {0}")]
    Setup(#[from] confide_session::SessionSetupError),
    /// An open conversation with this address already exists.
    #[error("an open conversation with this peer already exists")]
    ConversationExists,
    /// [`crate::consts::MAX_CONVERSATIONS`] conversations are already open.
    #[error("{max} conversations already open")]
    TooManyConversations {
        /// The limit.
        max: usize,
    },
    /// A referral's party was refused when the referral was accepted (its certificate
    /// expired or was revoked since it arrived, say): nothing started; ask the referrer for
    /// a new referral.
    #[error("the referred party is refused: {0}")]
    Referral(crate::ReferralError),
    /// Accepting a referral: the conversation it arrived in cannot take the answer (unknown,
    /// closed, outbox full, our certificate expired) or the summary is too long. Nothing
    /// started.
    #[error("the referral cannot be answered: {0}")]
    Referrer(CommandError),
}

/// Why a command on a conversation (send, set_timer, unsend, mark_read, close) refused.
/// Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No conversation with this id.
    #[error("unknown conversation")]
    UnknownConversation,
    /// The conversation is closed.
    #[error("the conversation is closed")]
    Closed {
        /// Who closed it.
        by: Party,
    },
    /// The text is longer than [`confide_policy::limits::MAX_TEXT_LEN`].
    #[error("text of {len} bytes exceeds the maximum {max}")]
    TextTooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The outbox or the queue of frames waiting for persistence is full; confirm
    /// persistence, let acknowledgements arrive, or wait for give-ups.
    #[error("outbox full")]
    OutboxFull,
    /// The retention policy layer refused (unknown message, not the author, window closed,
    /// too many tracked messages or ids, timer versions exhausted).
    #[error("refused by the conversation policy")]
    Policy,
    /// The session refused to encrypt (sending chain exhausted or invalid ratchet key).
    #[error("session refused to encrypt")]
    Session,
    /// Our sender certificate expired at `expired_at`: obtain a renewed one and call
    /// [`Endpoint::set_certificate`](crate::Endpoint::set_certificate), then send again.
    #[error("our sender certificate expired; renew it before sending")]
    CertificateExpired {
        /// When it expired.
        expired_at: confide_crypto::Timestamp,
    },
    /// We started this session more than
    /// [`UNANSWERED_SESSION_MAX_AGE`](crate::consts::UNANSWERED_SESSION_MAX_AGE) ago and the
    /// peer never answered: fetch a new prekey bundle of the peer and call
    /// [`Endpoint::renew_session`](crate::Endpoint::renew_session); waiting texts are
    /// re-encrypted in the new session.
    #[error("the peer never answered this session; fetch a new bundle and renew it")]
    SessionStale,
    /// The conversation had [`MAX_CODE_FAILURES`](crate::consts::MAX_CODE_FAILURES) failed
    /// code attempts: verify by comparing safety numbers instead.
    #[error("no code attempts left; compare safety numbers instead")]
    CodeAttemptsExhausted {
        /// The limit.
        max: u8,
    },
    /// Only a counselor or a bot refers a client to someone else.
    #[error("only a counselor or a bot can refer")]
    NotAllowedToRefer,
    /// The referred party's certified bundle does not validate (see
    /// [`ReferralError`](crate::ReferralError) for which check failed).
    #[error("the referred party is not certified: {0}")]
    Referral(crate::ReferralError),
}

/// Why [`Endpoint::renew_session`](crate::Endpoint::renew_session) refused. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RenewError {
    /// No open conversation with this id.
    #[error("no open conversation with this id")]
    UnknownConversation,
    /// The certified bundle is malformed, or its certificate does not validate or does not
    /// name the peer's address and the bundle's identity.
    #[error("certified bundle refused: {0}")]
    Certified(#[from] crate::endpoint::CertifiedBundleError),
    /// The bundle is malformed, badly signed, or not the peer's identity (an identity change
    /// is never accepted through a renewal).
    #[error("bundle refused: {0}")]
    Bundle(#[from] confide_session::BundleError),
    /// The handshake could not be computed from the bundle.
    #[error("session setup failed: {0}")]
    Setup(#[from] confide_session::SessionSetupError),
}

/// Why [`Endpoint::accept_identity_change`](crate::Endpoint::accept_identity_change) or
/// [`Endpoint::reject_identity_change`](crate::Endpoint::reject_identity_change) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdentityChangeError {
    /// No conversation with this id.
    #[error("unknown conversation")]
    UnknownConversation,
    /// No message with a changed identity is held for this conversation.
    #[error("no identity change is pending")]
    NothingPending,
}

/// Why [`Endpoint::export_state`](crate::Endpoint::export_state) failed. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A component exceeded its encoding limit.
    #[error("state component too large: {0}")]
    Encode(#[from] EncodeError),
    /// The conversation policy state could not be encoded.
    #[error("conversation policy state could not be encoded")]
    Policy,
    /// The configured retention policy has no encoding in this version.
    #[error("unsupported retention configuration")]
    UnsupportedConfig,
}

/// Why [`Endpoint::import_state`](crate::Endpoint::import_state) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The storage blob did not open (wrong key, tampered, wrong kind, truncated).
    #[error("stored state did not open: {0}")]
    Storage(#[from] confide_session::StateError),
    /// The decrypted state is not a valid endpoint state.
    #[error("malformed endpoint state: {0}")]
    Decode(#[from] DecodeError),
    /// The stored certificate does not match the stored identity.
    #[error("the stored certificate is for another identity")]
    CertificateIdentityMismatch,
}

impl From<StartError> for RenewError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Certified(e) => Self::Certified(e),
            StartError::Bundle(e) => Self::Bundle(e),
            StartError::Setup(e) => Self::Setup(e),
            // `verify_certified` returns only the three kinds above.
            StartError::ConversationExists
            | StartError::TooManyConversations { .. }
            | StartError::Referral(_)
            | StartError::Referrer(_) => Self::UnknownConversation,
        }
    }
}
