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
//! A store of many small records (the endpoint's, one per conversation and per waiting frame)
//! seals them with a [`RecordSealer`] instead: one key per store slot and kind, derived once,
//! and a random 24-byte nonce per record (version 3):
//!
//! ```text
//! record blob = magic "CFDS" || version:u8 (=3) || kind:u8 || key_check[16] || nonce[24]
//!               || XChaCha20-Poly1305(k, nonce, aad = magic..kind (6 bytes) || record, state)
//! salt      = SHA-256("Confide_v1_StateSlot" || slot)
//! k         = HKDF-SHA256(salt, storage_key, "Confide_v1_RecordEncryption" || kind, 32)
//! key_check = HKDF-SHA256(salt, storage_key, "Confide_v1_RecordKeyCheck"   || kind, 16)
//! ```
//!
//! `record` names the record within the slot (its key in the store). Opening one of a
//! thousand records then costs its AEAD and nothing else, where a version 2 blob costs an
//! HKDF and a hash more. 192 random nonce bits make a repeat under the long-lived `k`
//! negligible however many records a store writes over its life (and whatever state an app
//! restores: nothing is counted).
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
use core::fmt;
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
/// Format version of a record blob ([`RecordSealer`]): one store-wide key, a random
/// extended nonce per record, the record's name in the associated data.
pub const RECORD_STORAGE_VERSION: u8 = 3;
/// First kind byte available to apps; every byte below it is reserved for the library.
///
/// Reason: one fixed split means a kind an app defines today can never collide with a kind a
/// later library version adds, and the check happens when the kind is constructed.
pub const FIRST_APP_KIND: u8 = 0x80;
const SALT_LEN: usize = 32;
const CHECK_LEN: usize = 16;
const HEADER_LEN: usize = 4 + 1 + 1 + SALT_LEN;
/// A record blob's authenticated header: magic, version, kind.
const RECORD_HEADER_LEN: usize = 4 + 1 + 1;
/// Bytes a record blob adds to its state: header, key check, nonce, tag (62).
pub const RECORD_OVERHEAD: usize =
    RECORD_HEADER_LEN + CHECK_LEN + aead::EXTENDED_NONCE_LEN + aead::TAG_LEN;

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
    let salt = check_header(header, STORAGE_VERSION, kind.to_byte())?;
    let (k, expected_check) = derive(key, salt, kind.to_byte());
    if !ct_eq(check, &expected_check) {
        return Err(StateError::WrongKey);
    }
    let aad = associated_data(header, context);
    aead::open_authenticated(&k, &[0; aead::NONCE_LEN], &aad, ciphertext)
        .map_err(|_| StateError::Tampered)
}

/// Seals and opens the records of one store slot (version 3 blobs, see the module docs):
/// the key is derived once, when the sealer is made, so that a load or a change set of many
/// records pays one HKDF instead of one per record. Holds the derived key (wiped when
/// dropped).
pub struct RecordSealer {
    key: AeadKey,
    check: [u8; CHECK_LEN],
    kind: u8,
}

impl fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            key: _,
            check: _,
            kind,
        } = self;
        f.debug_struct("RecordSealer")
            .field("kind", kind)
            .finish_non_exhaustive()
    }
}

impl RecordSealer {
    /// The sealer of the records of `kind` in the slot named by `slot` under `key`.
    #[must_use]
    pub fn new(key: &StorageKey, kind: StateKind, slot: &[u8]) -> Self {
        let kind = kind.to_byte();
        let salt = sha256(&[labels::STATE_SLOT, slot]);
        let mut k = Zeroizing::new([0u8; 32]);
        let mut check = [0u8; CHECK_LEN];
        // Output lengths are far below HKDF's limit.
        let _ = hkdf_sha256_multi_outputs(
            Some(&salt),
            key.expose(),
            &mut [
                (&[labels::RECORD_ENCRYPTION, &[kind]], &mut *k),
                (&[labels::RECORD_KEY_CHECK, &[kind]], &mut check),
            ],
        );
        Self {
            key: AeadKey::copy_from(&k),
            check,
            kind,
        }
    }

    /// Encrypts `state` as the record named `record` (draws the 24-byte nonce from `rng`).
    pub fn seal<R: CryptoRng + ?Sized>(&self, rng: &mut R, record: &[u8], state: &[u8]) -> Vec<u8> {
        let nonce: [u8; aead::EXTENDED_NONCE_LEN] = confide_crypto::random_array(rng);
        let header = self.header();
        let sealed = aead::seal_extended(&self.key, &nonce, &record_aad(&header, record), state);
        let mut out = Vec::with_capacity(RECORD_OVERHEAD.saturating_add(state.len()));
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.check);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a record blob from [`RecordSealer::seal`] for the record named `record`.
    /// Errors as [`open`]: `Truncated`, `BadMagic`, `UnknownVersion` (a version 2 blob too:
    /// open it with [`open`]), `WrongKind`, `WrongKey`, `Tampered` (modified, or sealed for
    /// another record or slot).
    pub fn open(&self, record: &[u8], blob: &[u8]) -> Result<AuthenticatedPlaintext, StateError> {
        let (header, rest) = blob
            .split_at_checked(RECORD_HEADER_LEN)
            .ok_or(StateError::Truncated)?;
        let (check, rest) = rest
            .split_at_checked(CHECK_LEN)
            .ok_or(StateError::Truncated)?;
        let (nonce, ciphertext) = rest
            .split_at_checked(aead::EXTENDED_NONCE_LEN)
            .ok_or(StateError::Truncated)?;
        if ciphertext.len() < aead::TAG_LEN {
            return Err(StateError::Truncated);
        }
        check_header(header, RECORD_STORAGE_VERSION, self.kind)?;
        if !ct_eq(check, &self.check) {
            return Err(StateError::WrongKey);
        }
        let nonce: [u8; aead::EXTENDED_NONCE_LEN] =
            nonce.try_into().map_err(|_| StateError::Truncated)?;
        aead::open_extended_authenticated(
            &self.key,
            &nonce,
            &record_aad(header, record),
            ciphertext,
        )
        .map_err(|_| StateError::Tampered)
    }

    fn header(&self) -> [u8; RECORD_HEADER_LEN] {
        let [m0, m1, m2, m3] = *MAGIC;
        [m0, m1, m2, m3, RECORD_STORAGE_VERSION, self.kind]
    }
}

/// A record blob's associated data: its 6-byte header, then the record's name.
fn record_aad(header: &[u8], record: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(RECORD_HEADER_LEN.saturating_add(record.len()));
    aad.extend_from_slice(header);
    aad.extend_from_slice(record);
    aad
}

/// Checks the start of a blob's header (magic, `version`, `kind`, in that order, each with
/// its own error) and returns the header bytes after the kind: the shared part of [`open`]
/// and [`RecordSealer::open`].
fn check_header(header: &[u8], version: u8, kind: u8) -> Result<&[u8], StateError> {
    let (magic, after) = header.split_at_checked(4).ok_or(StateError::Truncated)?;
    if magic != MAGIC {
        return Err(StateError::BadMagic);
    }
    let (&found_version, after) = after.split_first().ok_or(StateError::Truncated)?;
    if found_version != version {
        return Err(StateError::UnknownVersion(found_version));
    }
    let (&found, rest) = after.split_first().ok_or(StateError::Truncated)?;
    if found != kind {
        return Err(StateError::WrongKind {
            found,
            expected: kind,
        });
    }
    Ok(rest)
}

/// The format version of a stored blob (its fifth byte), without opening it: tells a
/// version 2 blob ([`open`]) from a record blob ([`RecordSealer::open`]) in a store that
/// holds both (records written before version 3 stay until they next change).
#[must_use]
pub fn blob_version(blob: &[u8]) -> Option<u8> {
    blob.get(4).copied()
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
