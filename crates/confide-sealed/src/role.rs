//! What kind of party a sender certificate vouches for.

/// The role a server vouches for in a [`SenderCertificate`](crate::SenderCertificate).
///
/// Wire encoding (one byte): `0x01` client, `0x02` counselor, `0x03` bot. `0x00` is reserved
/// and refused. Every other value decodes as [`Role::Other`] so that a service can introduce
/// a new role without breaking older apps; such apps must treat `Other` as the least trusted
/// role (never as a counselor). [`Role::Other`] with a value of `0x00`..=`0x03` has no
/// encoding and is refused when issuing, so every role has exactly one encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A person seeking help (may be pseudonymous).
    Client,
    /// A counselor whose identity the service has verified.
    Counselor,
    /// An automated party (intake bot, scheduler): not a person.
    Bot,
    /// A role this build does not know, by its wire value. Treat as least trusted.
    Other(u8),
}

/// Wire value of [`Role::Client`].
const CLIENT: u8 = 0x01;
/// Wire value of [`Role::Counselor`].
const COUNSELOR: u8 = 0x02;
/// Wire value of [`Role::Bot`].
const BOT: u8 = 0x03;

impl Role {
    /// The wire byte.
    #[must_use]
    pub const fn to_wire(self) -> u8 {
        match self {
            Self::Client => CLIENT,
            Self::Counselor => COUNSELOR,
            Self::Bot => BOT,
            Self::Other(v) => v,
        }
    }

    /// Decodes a wire byte; `None` for the reserved value `0x00`.
    #[must_use]
    pub const fn from_wire(value: u8) -> Option<Self> {
        match value {
            0 => None,
            CLIENT => Some(Self::Client),
            COUNSELOR => Some(Self::Counselor),
            BOT => Some(Self::Bot),
            v => Some(Self::Other(v)),
        }
    }

    /// Whether this value has a canonical encoding (false for `Other(0..=3)`).
    #[must_use]
    pub const fn is_canonical(self) -> bool {
        match self {
            Self::Other(v) => v > BOT,
            _ => true,
        }
    }

    /// Whether the service vouches that this sender is a verified counselor.
    #[must_use]
    pub const fn is_verified_counselor(self) -> bool {
        matches!(self, Self::Counselor)
    }

    /// Whether the service vouches that this sender is a person (client or counselor), not a
    /// bot or an unknown kind of party.
    #[must_use]
    pub const fn is_person(self) -> bool {
        matches!(self, Self::Client | Self::Counselor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_decodes_canonically_or_is_refused() {
        for v in 0..=u8::MAX {
            match Role::from_wire(v) {
                None => assert_eq!(v, 0),
                Some(role) => {
                    assert!(role.is_canonical());
                    assert_eq!(role.to_wire(), v);
                }
            }
        }
        assert!(!Role::Other(2).is_canonical());
        assert!(!Role::Other(0).is_canonical());
        assert_eq!(Role::from_wire(9), Some(Role::Other(9)));
        assert!(!Role::Other(9).is_person());
        assert!(!Role::Other(9).is_verified_counselor());
        assert!(!Role::Bot.is_person());
        assert!(Role::Counselor.is_verified_counselor());
    }
}
