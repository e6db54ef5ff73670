//! One error enum per operation. Errors carry counts, versions and sides, never content or ids.

use crate::retention::Side;
use confide_crypto::codec::DecodeError;
use thiserror::Error;

/// Why an incoming content frame was refused. The state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IncomingError {
    /// The frame is malformed.
    #[error("malformed content frame: {0}")]
    Decode(#[from] DecodeError),
    /// The conversation is closed; nothing more is accepted.
    #[error("the conversation was closed by the {by:?}")]
    Closed {
        /// Who closed it.
        by: Side,
    },
    /// The frame's timer names this side as proposer of a setting this side never made.
    #[error("timer version {version} is attributed to us but we never proposed it")]
    ForgedTimer {
        /// The claimed version.
        version: u64,
    },
    /// A timer change names this side as its proposer.
    #[error("timer change to version {version} names the receiver as proposer")]
    ForgedProposer {
        /// The proposed version.
        version: u64,
    },
    /// A timer version jumps further ahead of ours than
    /// [`MAX_TIMER_VERSION_STEP`](crate::limits::MAX_TIMER_VERSION_STEP) allows.
    #[error("timer version {version} is more than the allowed step ahead of {current}")]
    TimerVersionJump {
        /// The claimed version.
        version: u64,
        /// Our current version.
        current: u64,
    },
    /// A text reuses the id of a message this side wrote.
    #[error("the message id is already used by one of our own messages")]
    IdConflict,
    /// A delete targets a message its sender did not write.
    #[error("only the author may delete a message")]
    NotAuthor,
    /// A delete came after the unsend window of its target.
    #[error("the unsend window of the target has closed")]
    UnsendWindowClosed,
    /// Too many messages are tracked to accept another one.
    #[error("{limit} messages are already tracked")]
    TooManyTrackedMessages {
        /// The limit.
        limit: usize,
    },
}

/// Why a text could not be sent. The state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The conversation is closed.
    #[error("the conversation was closed by the {by:?}")]
    Closed {
        /// Who closed it.
        by: Side,
    },
    /// The id is already used in this conversation (live, deleted, expired or awaited by a
    /// delete).
    #[error("the message id is already in use")]
    IdInUse,
    /// The text is too long for one frame.
    #[error("text of {len} bytes exceeds the maximum {max}")]
    TextTooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Too many messages are tracked to send another one.
    #[error("{limit} messages are already tracked")]
    TooManyTrackedMessages {
        /// The limit.
        limit: usize,
    },
    /// The content is outside its limits (a referral's party or note too long, or empty).
    #[error("the {kind} is outside its length limits")]
    ContentOutOfLimits {
        /// The content's kind ("referral").
        kind: &'static str,
    },
}

/// Why the timer could not be changed. The state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TimerChangeError {
    /// The conversation is closed.
    #[error("the conversation was closed by the {by:?}")]
    Closed {
        /// Who closed it.
        by: Side,
    },
    /// The version counter is at its maximum.
    #[error("the timer version counter is exhausted")]
    VersionExhausted,
}

/// Why a message could not be unsent. The state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UnsendError {
    /// The conversation is closed.
    #[error("the conversation was closed by the {by:?}")]
    Closed {
        /// Who closed it.
        by: Side,
    },
    /// No such message is tracked (never sent, already gone, or past its window).
    #[error("no such message is tracked")]
    UnknownMessage,
    /// The message was written by the other side.
    #[error("only the author may delete a message")]
    NotAuthor,
    /// The unsend window has closed.
    #[error("the unsend window has closed")]
    WindowClosed,
}

/// Why an acknowledgement or read receipt could not be built. The state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The conversation is closed.
    #[error("the conversation was closed by the {by:?}")]
    Closed {
        /// Who closed it.
        by: Side,
    },
    /// No ids were given.
    #[error("no message ids given")]
    NoIds,
    /// More distinct ids than fit one frame.
    #[error("{count} ids exceed the maximum {max} per frame")]
    TooManyIds {
        /// Distinct ids given.
        count: usize,
        /// The maximum.
        max: usize,
    },
}

/// Why the conversation could not be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CloseError {
    /// It is closed already.
    #[error("the conversation was already closed by the {by:?}")]
    AlreadyClosed {
        /// Who closed it.
        by: Side,
    },
}

/// Why the state could not be serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StateEncodeError {
    /// Events are waiting in [`crate::ConversationPolicy::poll_event`]; persisting now would
    /// lose them. Drain them first.
    #[error("{count} events not yet polled")]
    EventsNotDrained {
        /// Number of waiting events.
        count: usize,
    },
}
