//! Encrypted state for storage at rest, under a key the app supplies (for example one kept in
//! the platform keystore), bound to the slot the app stores it in.
//!
//! ```text
//! blob = magic "CFDS" || version:u8 (=2) || kind:u8 || salt[32] || key_check[16]
//!        || ChaCha20-Poly1305(k, nonce = 0^12, aad = magic..salt (38 bytes) || slot[32], state)
//! k         = HKDF-SHA256(salt, storage_key, "Confide_v1_StateEncryption" || kind, 32)
//! key_check = HKDF-SHA256(salt, storage_key, "Confide_v1_StateKeyCheck"   || kind, 16)
//! slot      = SHA-256("Confide_v1_StateSlot" || context)
//! ```
//!
//! A fresh random salt per blob makes every `k` single-use, so the fixed nonce is safe. The
//! key check tells a wrong storage key ([`StateError::WrongKey`]) from a modified ciphertext
//! ([`StateError::Tampered`]); it reveals nothing about the key beyond what a ciphertext does.
//! A modified header (salt or check value) reads as a wrong key.
//!
//! `context` is bytes the caller chooses to name the slot the blob lives in (a conversation or
//! peer id, an account id). It is not stored in the blob; it is authenticated: a blob written
//! for one slot does not open for another ([`StateError::Tampered`]), so whoever can write to
//! the app's storage cannot swap two peers' session records, or put an old blob of one slot in
//! another. It does not stop a rollback of one slot to an older blob of the same slot (the
//! session layer's restore handling covers that: `docs/spec.md` §5.1).
//!
//! Kinds: the library's own kinds are below [`FIRST_APP_KIND`]; an app's kinds
//! ([`AppStateKind`]) are at or above it and checked when constructed, so an app can never
//! seal a blob that opens as one of the library's.

use confide_crypto::{
    CryptoRng, aead, define_secret,
    kdf::{hkdf_sha256_multi_outputs, labels, sha256},
    secret::{AeadKey, ct_eq},
    stored::AuthenticatedPlaintext,
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
///
/// Version 2 binds the caller's slot context into the associated data and splits the kind
/// byte into library and app ranges. Version 1 blobs (no slot) are refused as
/// [`StateError::UnknownVersion`]: opening them would let a version-1 blob be moved between
/// slots.
pub const STORAGE_VERSION: u8 = 2;
/// First kind byte available to apps; every byte below it is reserved for the library.
///
/// Reason: one fixed split means a kind an app defines today can never collide with a kind a
/// later library version adds, and the check happens when the kind is constructed.
pub const FIRST_APP_KIND: u8 = 0x80;
const SALT_LEN: usize = 32;
const CHECK_LEN: usize = 16;
const HEADER_LEN: usize = 4 + 1 + 1 + SALT_LEN;

/// A kind byte an app chose for its own state: always at least [`FIRST_APP_KIND`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppStateKind(u8);

impl AppStateKind {
    /// `byte` as an app kind; a byte below [`FIRST_APP_KIND`] (the library's range, which
    /// includes every built-in kind) is refused with [`StateError::ReservedKind`].
    pub fn new(byte: u8) -> Result<Self, StateError> {
        if byte < FIRST_APP_KIND {
            return Err(StateError::ReservedKind(byte));
        }
        Ok(Self(byte))
    }

    /// The kind byte.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        self.0
    }
}

/// What a blob holds, so one kind is never restored as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateKind {
    /// A [`crate::Session`] (kind byte 1).
    Session,
    /// A [`crate::SessionRecord`] (2).
    SessionRecord,
    /// A [`crate::PreKeyStore`] (3).
    PreKeyStore,
    /// A whole endpoint (4, used by the facade crate).
    Endpoint,
    /// One record of an endpoint stored record by record (5, used by the facade crate; the
    /// record's identity is part of the slot context).
    EndpointRecord,
    /// An app's own state ([`FIRST_APP_KIND`] and up).
    App(AppStateKind),
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
            Self::EndpointRecord => 5,
            Self::App(k) => k.to_byte(),
        }
    }
}

fn derive(key: &StorageKey, salt: &[u8], kind: u8) -> (AeadKey, [u8; CHECK_LEN]) {
    let mut k = Zeroizing::new([0u8; 32]);
    let mut check = [0u8; CHECK_LEN];
    // One extraction for both outputs (loading an account opens one record per
    // conversation); output lengths are far below HKDF's limit.
    let _ = hkdf_sha256_multi_outputs(
        Some(salt),
        key.expose(),
        &mut [
            (&[labels::STATE_ENCRYPTION, &[kind]], &mut *k),
            (&[labels::STATE_KEY_CHECK, &[kind]], &mut check),
        ],
    );
    (AeadKey::copy_from(&k), check)
}

/// The associated data: the 38-byte header, then the slot digest.
fn associated_data(header: &[u8], context: &[u8]) -> Vec<u8> {
    let slot = sha256(&[labels::STATE_SLOT, context]);
    let mut aad = Vec::with_capacity(header.len().saturating_add(slot.len()));
    aad.extend_from_slice(header);
    aad.extend_from_slice(&slot);
    aad
}

/// Encrypts serialized state for the slot named by `context`.
pub fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &StorageKey,
    kind: StateKind,
    context: &[u8],
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
    let aad = associated_data(&out, context);
    out.extend_from_slice(&check);
    out.extend_from_slice(&aead::seal(&k, &[0; aead::NONCE_LEN], &aad, state));
    out
}

/// Decrypts a blob from [`seal`], checking its kind and its slot (`context` must be the one
/// it was sealed with). The plaintext carries the proof that it authenticated, so the
/// state types can be restored from it without re-running checks made when it was written
/// (see [`confide_crypto::stored`]).
pub fn open(
    key: &StorageKey,
    kind: StateKind,
    context: &[u8],
    blob: &[u8],
) -> Result<AuthenticatedPlaintext, StateError> {
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
    let aad = associated_data(header, context);
    aead::open_authenticated(&k, &[0; aead::NONCE_LEN], &aad, ciphertext)
        .map_err(|_| StateError::Tampered)
}

macro_rules! encrypted_state {
    ($t:ty, $kind:expr, $from:expr) => {
        impl $t {
            /// Serializes and encrypts under `key` for storage at rest in the slot named by
            /// `context` (for example the peer or conversation id): the blob opens only for
            /// that same context.
            pub fn to_encrypted<R: CryptoRng + ?Sized>(
                &self,
                rng: &mut R,
                key: &StorageKey,
                context: &[u8],
            ) -> Vec<u8> {
                seal(rng, key, $kind, context, &self.to_bytes())
            }

            /// Decrypts and restores state written by `to_encrypted` for the same `context`.
            pub fn from_encrypted(
                key: &StorageKey,
                context: &[u8],
                blob: &[u8],
            ) -> Result<Self, StateError> {
                let plain = open(key, $kind, context, blob)?;
                Ok($from(&plain)?)
            }
        }
    };
}

encrypted_state!(
    crate::Session,
    StateKind::Session,
    |p: &AuthenticatedPlaintext| { crate::Session::from_authenticated(p.reader()) }
);
encrypted_state!(
    crate::SessionRecord,
    StateKind::SessionRecord,
    |p: &AuthenticatedPlaintext| crate::SessionRecord::from_authenticated(p.reader())
);
encrypted_state!(
    crate::PreKeyStore,
    StateKind::PreKeyStore,
    |p: &AuthenticatedPlaintext| crate::PreKeyStore::from_authenticated(p.reader())
);
