//! Versioned state serialization and serde support.
//!
//! Every state type ([`crate::Session`], [`crate::SessionRecord`], [`crate::PreKeyStore`])
//! has a canonical binary form (`to_bytes` / `from_bytes`) that starts with a version byte:
//! [`SESSION_STATE_VERSION`] for sessions and records, [`STATE_VERSION`] for prekey stores. Their serde implementations carry that binary form as one byte string,
//! so any serde format stores exactly the canonical bytes. The plain form contains secrets:
//! store it only through [`crate::storage`].

use confide_crypto::{
    codec::{DecodeError, Reader},
    identity::IdentityPublicKey,
    stored::AuthenticatedReader,
    x25519::X25519KeyPair,
};

/// Version byte that starts a serialized prekey store.
///
/// Version 3 stores each X25519 prekey's public key after its secret (`secret || public`,
/// checked to match unless read from authenticated storage), so a restored store does not
/// recompute them. Version 2 stored the seen base keys sorted by `(signed prekey id, base
/// key)`, each under a retained signed prekey (checked when read). Versions 2 (secrets only)
/// and 1 (as 2, seen base keys in insertion order) are still read and written back as 3.
pub const STATE_VERSION: u8 = 3;

/// Version byte that starts a serialized [`crate::Session`] and [`crate::SessionRecord`].
///
/// Version 2 added the chain-fork state, the previous sending chain's fork record, the
/// receive-step counter and the per-key fork nonce and step stamp of skipped keys. Version 3
/// added, on responder sessions, the digest of the prekey header that created the session.
/// Version 4 added the envelope secret the session exports for symmetric sealed-sender
/// envelopes ([`crate::Session::envelope_secret`]); version 3 is still read (without it) and
/// written back as version 4.
pub const SESSION_STATE_VERSION: u8 = 4;

/// The previous session and record state version, still read: a session of this version has
/// no envelope secret (it cannot be derived again: the root at establishment is gone).
pub const SESSION_STATE_VERSION_WITHOUT_ENVELOPE_SECRET: u8 = 3;

/// Where serialized state is read from, which decides how much is re-checked.
///
/// Plain bytes (from anywhere) get every check: identity binding signatures and that each
/// stored ratchet public key is its secret's. State that came back through authenticated
/// storage encryption ([`confide_crypto::stored`], [`crate::storage::open`]) was checked when
/// it was written, so those two checks are skipped; nothing else is.
pub(crate) enum StateSource<'r, 'a> {
    /// Any bytes: every signature and key-pair consistency is checked.
    Untrusted(&'r mut Reader<'a>),
    /// Authenticated stored state this library wrote.
    Authenticated(&'r mut AuthenticatedReader<'a>),
}

impl<'a> StateSource<'_, 'a> {
    /// An identity: verified unless the state is authenticated.
    pub(crate) fn identity(&mut self) -> Result<IdentityPublicKey, DecodeError> {
        match self {
            Self::Untrusted(r) => IdentityPublicKey::read(r),
            Self::Authenticated(r) => IdentityPublicKey::read_authenticated(r),
        }
    }

    /// `secret || public`: checked to match unless the state is authenticated.
    pub(crate) fn x25519_pair(&mut self) -> Result<X25519KeyPair, DecodeError> {
        match self {
            Self::Untrusted(r) => X25519KeyPair::read_checked(r),
            Self::Authenticated(r) => X25519KeyPair::read_authenticated(r),
        }
    }
}

impl<'a> core::ops::Deref for StateSource<'_, 'a> {
    type Target = Reader<'a>;

    fn deref(&self) -> &Reader<'a> {
        match self {
            Self::Untrusted(r) => r,
            Self::Authenticated(r) => r,
        }
    }
}

impl core::ops::DerefMut for StateSource<'_, '_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Self::Untrusted(r) => r,
            Self::Authenticated(r) => r,
        }
    }
}

macro_rules! serde_via_bytes {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let bytes = self.to_bytes();
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
