//! Versioned state serialization and serde support.
//!
//! Every state type ([`crate::Session`], [`crate::SessionRecord`], [`crate::PreKeyStore`])
//! has a canonical binary form (`to_bytes` / `from_bytes`) that starts with a version byte:
//! [`SESSION_STATE_VERSION`] for sessions and records, [`STATE_VERSION`] for prekey stores. Their serde implementations carry that binary form as one byte string,
//! so any serde format stores exactly the canonical bytes. The plain form contains secrets:
//! store it only through [`crate::storage`].

/// Version byte that starts a serialized prekey store.
pub const STATE_VERSION: u8 = 1;

/// Version byte that starts a serialized [`crate::Session`] and [`crate::SessionRecord`].
///
/// Version 2 added the chain-fork state, the previous sending chain's fork record, the
/// receive-step counter and the per-key fork nonce and step stamp of skipped keys.
pub const SESSION_STATE_VERSION: u8 = 2;

/// Where serialized state comes from, which decides how much is re-checked when reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provenance {
    /// Any bytes: every signature and key-pair consistency is checked.
    Untrusted,
    /// Bytes this library wrote and that were authenticated by storage encryption under the
    /// app's key: identity binding signatures and ratchet public keys are not recomputed.
    Authenticated,
}

macro_rules! serde_via_bytes {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let bytes = zeroize::Zeroizing::new(self.to_bytes());
                s.serialize_bytes(&bytes)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes =
                    zeroize::Zeroizing::new(<Vec<u8> as serde::Deserialize>::deserialize(d)?);
                Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_bytes!(crate::Session);
serde_via_bytes!(crate::SessionRecord);
serde_via_bytes!(crate::PreKeyStore);
