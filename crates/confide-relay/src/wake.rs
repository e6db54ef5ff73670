//! Wake-ups: content-free signals that a mailbox has a newly committed frame.
//!
//! A mailbox is named in wake-ups by a [`WakeKey`], a truncated SHA-256 of its address, never
//! by the address itself: the key is what travels in PostgreSQL `NOTIFY` payloads (which a
//! database server may log) and what keys the server's table of connected owners.

use core::fmt;

use confide_crypto::kdf::sha256;

use crate::consts::WAKE_KEY_LEN;

/// Domain-separation label of [`WakeKey::of`].
pub const WAKE_KEY_LABEL: &[u8] = b"Confide_v1_RelayWakeKey";

/// The name of a mailbox in wake-ups: the first [`WAKE_KEY_LEN`] bytes of
/// `SHA-256("Confide_v1_RelayWakeKey" || address)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WakeKey([u8; WAKE_KEY_LEN]);

impl fmt::Debug for WakeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A key is stable per mailbox, so it would link log lines: not printed.
        f.write_str("WakeKey(..)")
    }
}

impl WakeKey {
    /// The key of the mailbox at `address`.
    #[must_use]
    pub fn of(address: &[u8]) -> Self {
        let digest = sha256(&[WAKE_KEY_LABEL, address]);
        let mut key = [0u8; WAKE_KEY_LEN];
        for (k, d) in key.iter_mut().zip(digest.iter()) {
            *k = *d;
        }
        Self(key)
    }

    /// The key's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; WAKE_KEY_LEN] {
        &self.0
    }

    /// Lowercase hex, as carried in a `NOTIFY` payload (32 characters).
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses [`Self::to_hex`]'s output; `None` for anything else.
    #[must_use]
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 2 * WAKE_KEY_LEN || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let bytes = hex::decode(text).ok()?;
        <[u8; WAKE_KEY_LEN]>::try_from(bytes.as_slice())
            .ok()
            .map(Self)
    }
}

/// What a wake-up source (the PostgreSQL listener) tells the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wake {
    /// A frame for this mailbox was committed (possibly by another relay process).
    Mailbox(WakeKey),
    /// Wake-ups may have been missed (the listener reconnected): wake every connected owner
    /// once, so each re-reads its mailbox.
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_hex_and_differs_per_address() {
        let a = WakeKey::of(b"mailbox-a");
        assert_eq!(WakeKey::from_hex(&a.to_hex()), Some(a));
        assert_ne!(a, WakeKey::of(b"mailbox-b"));
        assert_eq!(a.to_hex().len(), 32);
        assert!(!a.to_hex().contains(&hex::encode(b"mailbox-a")));
        assert_eq!(WakeKey::from_hex(&a.to_hex().to_uppercase()), None);
        assert_eq!(WakeKey::from_hex("00"), None);
        assert_eq!(format!("{a:?}"), "WakeKey(..)");
    }
}
