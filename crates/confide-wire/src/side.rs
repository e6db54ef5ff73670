//! Which party of a conversation.

/// Which party of a conversation: the one that started its session (used the other's prekey
/// bundle) or the one that answered. The session layer's role and the policy layer's author of
/// a frame are this one type. Apps show [`Side`]s to users through the facade's words ("you",
/// "the other person"), never these names.
///
/// Not `non_exhaustive`: a conversation has exactly two parties (groups will have their own
/// type), so matches need no wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The party that initiated the session.
    Initiator,
    /// The party that responded to it.
    Responder,
}

impl Side {
    /// The other party.
    #[must_use]
    pub const fn peer(self) -> Self {
        match self {
            Self::Initiator => Self::Responder,
            Self::Responder => Self::Initiator,
        }
    }

    /// The one-byte encoding every stored state uses: `0x01` initiator, `0x02` responder.
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Initiator => 0x01,
            Self::Responder => 0x02,
        }
    }

    /// Decodes [`Side::to_byte`]; `None` for any other byte.
    #[must_use]
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(Self::Initiator),
            0x02 => Some(Self::Responder),
            _ => None,
        }
    }
}
