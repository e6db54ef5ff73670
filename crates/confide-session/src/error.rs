use confide_crypto::{CryptoError, codec::DecodeError};
use thiserror::Error;

/// Why a prekey bundle was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bytes are not a well-formed bundle.
    #[error("malformed bundle: {0}")]
    Decode(#[from] DecodeError),
    /// The signed X25519 prekey's signature does not verify.
    #[error("signed prekey signature invalid")]
    BadSignedPreKeySignature,
    /// The ML-KEM prekey's signature does not verify.
    #[error("KEM prekey signature invalid")]
    BadKemPreKeySignature,
    /// The bundle belongs to another identity than the one the app expected.
    #[error("bundle identity is not the expected one")]
    UnexpectedIdentity,
    /// The bundle is our own.
    #[error("bundle is our own identity")]
    OwnIdentity,
}

/// Why a session could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SessionSetupError {
    /// A Diffie-Hellman with the bundle's keys gave a non-contributory result.
    #[error("key agreement failed: {0}")]
    Agreement(CryptoError),
    /// The first message could not be encrypted.
    #[error("encryption failed: {0}")]
    Encrypt(#[from] EncryptError),
}

/// Why a message could not be encrypted. Nothing changed in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The plaintext is longer than [`confide_crypto::padding::MAX_PLAINTEXT_LEN`].
    #[error("plaintext of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// Plaintext length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The sending chain has used every counter value.
    #[error("sending chain exhausted")]
    ChainExhausted,
    /// The remote ratchet key is invalid (low order); the session cannot continue.
    #[error("ratchet key agreement failed")]
    Agreement,
}

/// Why a message could not be decrypted. In every case the session state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The bytes are not a well-formed session message.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// Authentication failed: forged, tampered, or for another session.
    #[error("message authentication failed")]
    Authentication,
    /// This message was already decrypted (or its key was discarded as too old).
    #[error("duplicate message")]
    Duplicate,
    /// The message is further ahead in its chain than [`crate::consts::MAX_FORWARD_JUMP`].
    #[error("message is {ahead} ahead of the chain, more than the maximum {max}")]
    TooFarAhead {
        /// How far ahead.
        ahead: u64,
        /// The limit.
        max: u32,
    },
    /// A prekey message named a signed prekey this store does not have.
    #[error("unknown signed prekey")]
    UnknownSignedPreKey,
    /// A prekey message named a one-time prekey this store does not have (used or never issued).
    #[error("unknown one-time prekey")]
    UnknownOneTimePreKey,
    /// A prekey message named a KEM prekey this store does not have (used or never issued).
    #[error("unknown KEM prekey")]
    UnknownKemPreKey,
    /// A prekey message that was already accepted was sent again.
    #[error("replayed initial message")]
    ReplayedInitialMessage,
    /// An initial message without one-time keys arrived under a signed prekey whose list of
    /// remembered base keys is full
    /// ([`crate::consts::MAX_SEEN_BASE_KEYS_PER_SIGNED_PREKEY`]): accepting it would mean
    /// forgetting a base key whose replay must stay refused. Nothing changed. Rotate the signed
    /// prekey ([`crate::PreKeyStore::rotate_signed_prekey`]) and publish new bundles; the
    /// sender can start again from a new bundle.
    #[error("replay list of signed prekey {signed_prekey_id} is full: rotate the signed prekey")]
    ReplayListFull {
        /// The signed prekey the message named.
        signed_prekey_id: u32,
    },
    /// A prekey message for a session we already hold differs from the one that created it
    /// (identity, base key, prekey ids, KEM ciphertext): only its exact repeats are accepted.
    #[error("prekey message differs from the one that started the session")]
    AlteredPreKeyMessage,
    /// The sender's identity differs from the one this conversation knows; the app decides.
    #[error("remote identity changed")]
    IdentityChanged,
    /// A prekey message arrived from our own identity.
    #[error("message from our own identity")]
    OwnIdentity,
    /// A key agreement with the message's keys gave a non-contributory result.
    #[error("key agreement failed")]
    Agreement,
    /// The padding inside the authenticated plaintext is not canonical.
    #[error("invalid padding")]
    Padding,
    /// A ratchet message arrived but there is no session to decrypt it with.
    #[error("no session")]
    NoSession,
    /// The peer restored an older state than the one we have heard from: its message forks a
    /// chain at a position we already received a message for (or at another base than a fork
    /// we already follow), so the peer has lost whatever it did after that state.
    ///
    /// This verdict is given from the message header alone, before authentication (the keys
    /// it would need are no longer held). It is therefore only meaningful when the message
    /// arrived inside an envelope already authenticated as the peer (sealed sender, which is
    /// how the endpoint receives every session message); an unauthenticated caller must treat it
    /// like [`DecryptError::Authentication`]. Nothing changed in the session.
    #[error("peer restored an older state")]
    PeerRolledBack,
    /// The message belongs to a branch of its chain that the sender abandoned when it restored
    /// an older state: its position is at or past the point where the chain was forked. It is
    /// refused (like [`DecryptError::Duplicate`]) without authentication; the same caveat as
    /// for [`DecryptError::PeerRolledBack`] applies.
    #[error("message from an abandoned branch of its chain")]
    StaleBranch,
}

/// Why stored state could not be restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StateError {
    /// Shorter than the fixed header plus tag.
    #[error("stored state truncated")]
    Truncated,
    /// Not a Confide state blob (bad magic).
    #[error("not a Confide state blob")]
    BadMagic,
    /// Written by an unknown format version.
    #[error("unknown state format version {0}")]
    UnknownVersion(u8),
    /// A blob of another kind (e.g. a prekey store given where a session was expected).
    #[error("stored state is of kind {found}, expected {expected}")]
    WrongKind {
        /// Kind byte found.
        found: u8,
        /// Kind byte expected.
        expected: u8,
    },
    /// The storage key is not the one the state was written with.
    #[error("wrong storage key")]
    WrongKey,
    /// The blob was modified after it was written, or it belongs to another storage slot
    /// (it was sealed with a different context; the two are indistinguishable).
    #[error("stored state was tampered with or belongs to another slot")]
    Tampered,
    /// An app-defined kind was given a byte the library reserves (below
    /// [`crate::storage::FIRST_APP_KIND`]); pick one at or above it.
    #[error("state kind {0} is reserved for the library; app kinds start at 0x80")]
    ReservedKind(u8),
    /// The decrypted (or plain) serialization is malformed.
    #[error("malformed state: {0}")]
    Decode(#[from] DecodeError),
}
