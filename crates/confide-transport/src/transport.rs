//! The boundary apps implement: moving opaque frames to and from mailboxes.

use core::fmt;

use thiserror::Error;

use crate::Address;
use crate::consts::RELAY_TOKEN_LEN;

confide_wire::define_secret!(
    /// The access token a sender presents to the relay with a frame for a mailbox: the
    /// mailbox owner's delivery token, which the owner shares with its contacts (end to end)
    /// and whose hash it registers with the relay. The relay learns that the sender is one of
    /// the owner's contacts, not which one. The transport carries it and never interprets it.
    pub struct RelayToken(RELAY_TOKEN_LEN);
);

/// Frame bytes to hand to the network, with their destination mailbox and the relay token
/// for that mailbox (when the sender knows one).
#[derive(Clone, PartialEq, Eq)]
#[must_use = "a transmit must be handed to the transport"]
pub struct Transmit {
    /// Destination mailbox.
    pub to: Address,
    /// An encoded [`Frame`](crate::Frame).
    pub frame: Vec<u8>,
    /// The destination's relay token, to present with the frame; `None` when the sender has
    /// none (a relay that requires one then refuses the frame, and the delivery machine
    /// retransmits).
    pub token: Option<RelayToken>,
}

impl fmt::Debug for Transmit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { to, frame, token } = self;
        f.debug_struct("Transmit")
            .field("to", to)
            .field("frame_len", &frame.len())
            .field("has_token", &token.is_some())
            .finish()
    }
}

/// Why a transport could not move a frame. Carries kinds, never addresses or content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The transport is not connected (or the connection was lost). The delivery machine
    /// retransmits later, so the caller may simply carry on.
    #[error("not connected")]
    Disconnected,
    /// The frame is larger than the transport accepts.
    #[error("frame of {len} bytes exceeds the transport's maximum {max}")]
    FrameTooLarge {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The transport's queue is full; try again later.
    #[error("transport queue full")]
    Busy,
    /// The peer or relay sent bytes that break the transport's own framing.
    #[error("transport protocol violation")]
    ProtocolViolation,
    /// An operating-system I/O error, by kind.
    #[error("i/o error: {0:?}")]
    Io(std::io::ErrorKind),
}

/// What an app implements to carry Confide frames: any store-and-forward channel between
/// mailboxes (a relay over TCP or WebSocket, a push service, a test network).
///
/// Contract:
///
/// 1. [`Transport::send`] queues or writes one frame for the mailbox `to`, presenting `token`
///    to the relay if there is one, and returns without waiting for delivery. Delivery is best effort: loss, duplication and reordering are all
///    allowed, because the delivery machine retransmits and dedups. An `Err` means the frame
///    was not accepted; the caller does not need to retry it.
/// 2. [`Transport::recv`] never blocks: it returns `Ok(Some(frame))` for each frame that
///    arrived for this endpoint's own mailbox, `Ok(None)` when nothing is waiting, and `Err`
///    when the transport has failed (the caller may reconnect).
/// 3. Frames are passed through unchanged; the transport never interprets them. A transport
///    may refuse frames longer than [`MAX_FRAME_LEN`](crate::consts::MAX_FRAME_LEN).
pub trait Transport {
    /// Sends one encoded frame to the mailbox `to`, with the relay token for it (if any).
    fn send(
        &mut self,
        to: &Address,
        token: Option<&RelayToken>,
        frame: &[u8],
    ) -> Result<(), TransportError>;

    /// Takes the next received frame, if any, without blocking.
    fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn send(
        &mut self,
        to: &Address,
        token: Option<&RelayToken>,
        frame: &[u8],
    ) -> Result<(), TransportError> {
        (**self).send(to, token, frame)
    }

    fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        (**self).recv()
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(
        &mut self,
        to: &Address,
        token: Option<&RelayToken>,
        frame: &[u8],
    ) -> Result<(), TransportError> {
        (**self).send(to, token, frame)
    }

    fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        (**self).recv()
    }
}
