//! Encrypted state for storage at rest, under a key the app supplies (for example one kept in
//! the platform keystore).
//!
//! ```text
//! blob = magic "CFDS" || version:u8 (=1) || kind:u8 || salt[32] || key_check[16]
//!        || ChaCha20-Poly1305(k, nonce = 0^12, aad = magic..salt (38 bytes), state)
//! k         = HKDF-SHA256(salt, storage_key, "Confide_v1_StateEncryption" || kind, 32)
//! key_check = HKDF-SHA256(salt, storage_key, "Confide_v1_StateKeyCheck"   || kind, 16)
//! ```
//!
//! A fresh random salt per blob makes every `k` single-use, so the fixed nonce is safe. The
//! key check tells a wrong storage key ([`StateError::WrongKey`]) from a modified ciphertext
//! ([`StateError::Tampered`]); it reveals nothing about the key beyond what a ciphertext does.
//! A modified header (salt or check value) reads as a wrong key.

use confide_crypto::{
    CryptoRng, aead, define_secret,
    kdf::{hkdf_sha256_multi, labels},
    secret::{AeadKey, ct_eq},
};
use zeroize::Zeroizing;

use crate::error::StateError;

define_secret!(
    /// The app's key for state at rest.
    pub struct StorageKey(32);
);

/// The four bytes that start every encrypted state blob.
pub const MAGIC: &[u8; 4] = b"CFDS";
/// Format version of the encrypted blob.
pub const STORAGE_VERSION: u8 = 1;
const SALT_LEN: usize = 32;
const CHECK_LEN: usize = 16;
const HEADER_LEN: usize = 4 + 1 + 1 + SALT_LEN;

/// What a blob holds, so one kind is never restored as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateKind {
    /// A [`crate::Session`].
    Session,
    /// A [`crate::SessionRecord`].
    SessionRecord,
    /// A [`crate::PreKeyStore`].
    PreKeyStore,
    /// A whole endpoint (used by the facade crate).
    Endpoint,
    /// Another layer's state, by its own number (0x80 and up are free for apps).
    Other(u8),
}

impl StateKind {
    /// The kind byte.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Session => 1,
            Self::SessionRecord => 2,
            Self::PreKeyStore => 3,
            Self::Endpoint => 4,
            Self::Other(b) => b,
        }
    }
}

fn derive(key: &StorageKey, salt: &[u8], kind: u8) -> (AeadKey, [u8; CHECK_LEN]) {
    let mut k = Zeroizing::new([0u8; 32]);
    let mut check = [0u8; CHECK_LEN];
    // Output lengths are far below HKDF's limit.
    let _ = hkdf_sha256_multi(
        Some(salt),
        key.expose(),
        &[labels::STATE_ENCRYPTION, &[kind]],
        &mut *k,
    );
    let _ = hkdf_sha256_multi(
        Some(salt),
        key.expose(),
        &[labels::STATE_KEY_CHECK, &[kind]],
        &mut check,
    );
    (AeadKey::new(*k), check)
}

/// Encrypts serialized state.
pub fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &StorageKey,
    kind: StateKind,
    state: &[u8],
) -> Vec<u8> {
    let salt: [u8; SALT_LEN] = confide_crypto::random_array(rng);
    let kind = kind.to_byte();
    let (k, check) = derive(key, &salt, kind);
    let mut out = Vec::with_capacity(HEADER_LEN + CHECK_LEN + state.len() + aead::TAG_LEN);
    out.extend_from_slice(MAGIC);
    out.push(STORAGE_VERSION);
    out.push(kind);
    out.extend_from_slice(&salt);
    let aad = out.clone();
    out.extend_from_slice(&check);
    out.extend_from_slice(&aead::seal(&k, &[0; aead::NONCE_LEN], &aad, state));
    out
}

/// Decrypts a blob from [`seal`], checking its kind.
pub fn open(
    key: &StorageKey,
    kind: StateKind,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, StateError> {
    let (header, rest) = blob
        .split_at_checked(HEADER_LEN)
        .ok_or(StateError::Truncated)?;
    let (check, ciphertext) = rest
        .split_at_checked(CHECK_LEN)
        .ok_or(StateError::Truncated)?;
    if ciphertext.len() < aead::TAG_LEN {
        return Err(StateError::Truncated);
    }
    let (magic, after) = header.split_at_checked(4).ok_or(StateError::Truncated)?;
    if magic != MAGIC {
        return Err(StateError::BadMagic);
    }
    let (&version, after) = after.split_first().ok_or(StateError::Truncated)?;
    if version != STORAGE_VERSION {
        return Err(StateError::UnknownVersion(version));
    }
    let (&found, salt) = after.split_first().ok_or(StateError::Truncated)?;
    if found != kind.to_byte() {
        return Err(StateError::WrongKind {
            found,
            expected: kind.to_byte(),
        });
    }
    let (k, expected_check) = derive(key, salt, found);
    if !ct_eq(check, &expected_check) {
        return Err(StateError::WrongKey);
    }
    aead::open(&k, &[0; aead::NONCE_LEN], header, ciphertext).map_err(|_| StateError::Tampered)
}

macro_rules! encrypted_state {
    ($t:ty, $kind:expr, $from:ident) => {
        impl $t {
            /// Serializes and encrypts under `key` for storage at rest.
            pub fn to_encrypted<R: CryptoRng + ?Sized>(
                &self,
                rng: &mut R,
                key: &StorageKey,
            ) -> Vec<u8> {
                let plain = Zeroizing::new(self.to_bytes());
                seal(rng, key, $kind, &plain)
            }

            /// Decrypts and restores state written by `to_encrypted`.
            pub fn from_encrypted(key: &StorageKey, blob: &[u8]) -> Result<Self, StateError> {
                let plain = open(key, $kind, blob)?;
                Ok(Self::$from(&plain)?)
            }
        }
    };
}

encrypted_state!(crate::Session, StateKind::Session, from_authenticated_bytes);
encrypted_state!(
    crate::SessionRecord,
    StateKind::SessionRecord,
    from_authenticated_bytes
);
encrypted_state!(crate::PreKeyStore, StateKind::PreKeyStore, from_bytes);
