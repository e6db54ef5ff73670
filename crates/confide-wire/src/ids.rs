//! Ids that several layers share.

use core::fmt;

use crate::CryptoRng;

/// The 16-byte random id of one transport frame (a message, a control frame or an
/// acknowledgement), chosen by its sender. The transport dedups and retransmits by it, and
/// an end-to-end acknowledgement names it. Distinct from the policy layer's content
/// `MessageId`, which names a text for the app (unsend, read receipts).
///
/// Ids are random (not counters) so they reveal nothing about how many frames a mailbox
/// sends. `Debug` shows only the first four bytes, enough to match log lines.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameId([u8; FrameId::LEN]);

impl FrameId {
    /// Length of an id in bytes.
    pub const LEN: usize = 16;

    /// A fresh id from the caller's random source.
    #[must_use]
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(crate::random_array(rng))
    }

    /// Wraps given bytes (for decoding ids carried in frames and acknowledgements).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; Self::LEN] {
        self.0
    }

    /// The id's bytes, borrowed.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl fmt::Debug for FrameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, ..] = self.0;
        write!(f, "FrameId({a:02x}{b:02x}{c:02x}{d:02x}..)")
    }
}
