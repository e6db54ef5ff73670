//! The sealed row format of the message store ([`crate::Transcript`]), without SQL: the key
//! hierarchy under the app's storage key, and the two blobs of one stored message. Specified
//! byte for byte in `docs/store.md` ("Sealed rows"), with a vector in
//! `docs/test-vectors/store/transcript.json`.
//!
//! ```text
//! info(label)  = label || u32(len(slot)) || slot
//! wrap_root    = HKDF-SHA256(salt = none, storage_key, info("Confide_v1_Transcript_WrapRoot"), 32)
//! tag_key      = HKDF-SHA256(salt = none, storage_key, info("Confide_v1_Transcript_TagKey"), 32)
//! key_check    = HKDF-SHA256(salt = none, storage_key, info("Confide_v1_Transcript_KeyCheck"), 32)
//! tag          = HMAC-SHA256(tag_key, u64 conversation || message id[16])
//!
//! message_key  = 32 random bytes (one per message)
//! kek          = HKDF-SHA256(salt = key_salt[32] (random), wrap_root, "Confide_v1_Transcript_KeyWrap", 32)
//! aad(purpose) = purpose:u8 || u32(len(slot)) || slot || u64 conversation || tag[32]
//!                || u64 seq || u64 sent_at || u8 has_expiry || u64 expires_at (0 if none)
//! wrapped_key  = 0x01 || key_salt[32] || ChaCha20-Poly1305(kek, 0^12, aad(0x01), message_key)
//! sealed_body  = 0x01 || ChaCha20-Poly1305(message_key, 0^12, aad(0x02),
//!                                          message id[16] || from:u8 || body)
//! ```
//!
//! Every `message_key` and every `kek` encrypts exactly one plaintext, so the fixed nonce is
//! safe. Erasing the wrapped key erases the only copy of `message_key`: the sealed body (and
//! any stale copy of it) is then noise, whoever holds the storage key.

use confide::{MessageId, MessageText, Party, StorageKey};
use confide_crypto::{
    CryptoRng, Timestamp, aead,
    codec::Writer,
    kdf::{hkdf_sha256, hkdf_sha256_multi, hmac_sha256_parts, labels},
    random_array,
    secret::{AeadKey, ct_eq},
};
use thiserror::Error;
use zeroize::Zeroizing;

/// The version byte that starts both blobs of a row.
pub const ROW_VERSION: u8 = 0x01;
/// Length of the random salt of a wrapped key.
pub const KEY_SALT_LEN: usize = 32;
/// Length of a row's lookup tag.
pub const ROW_TAG_LEN: usize = 32;
/// Length of a wrapped key blob: version, salt, the sealed 32-byte message key.
pub const WRAPPED_KEY_LEN: usize = 1 + KEY_SALT_LEN + 32 + aead::TAG_LEN;
/// Bytes a sealed body adds to the message body: version, tag, message id, direction.
pub const BODY_OVERHEAD: usize = 1 + aead::TAG_LEN + MessageId::LEN + 1;
/// Longest body a stored message may have: 128 KiB.
///
/// Reason: at least the longest text an endpoint delivers (a text frame fits the session's
/// 128 KiB padded plaintext), and a bound on what one entry takes in memory when it is
/// decrypted ([`crate::MAX_PAGE_LEN`] entries at most per page).
pub const MAX_BODY_LEN: usize = 128 * 1024;
/// Longest account slot: 1 KiB.
///
/// Reason: a slot names an account (a few bytes); it is hashed into every key and repeated in
/// every row's associated data, so it stays small.
pub const MAX_SLOT_LEN: usize = 1024;

/// Purpose byte of the associated data of a wrapped key.
const PURPOSE_KEY: u8 = 0x01;
/// Purpose byte of the associated data of a sealed body.
const PURPOSE_BODY: u8 = 0x02;
/// Direction byte: a message this app's user wrote.
const FROM_US: u8 = 0x01;
/// Direction byte: a message the peer wrote.
const FROM_PEER: u8 = 0x02;

#[allow(unreachable_pub)]
mod secrets {
    confide_crypto::define_secret!(
        /// The root under which every message key of one account is wrapped.
        pub struct WrapRoot(32);
    );
    confide_crypto::define_secret!(
        /// The key of the lookup tags of one account's rows.
        pub struct TagKey(32);
    );
    confide_crypto::define_secret!(
        /// The value stored to tell a wrong storage key at open (derived, not secret in
        /// itself, but derived from the storage key: kept like a secret).
        pub struct KeyCheck(32);
    );
}
use secrets::{KeyCheck, TagKey, WrapRoot};

/// Why a row could not be sealed or opened. Carries lengths and version bytes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RowError {
    /// The account slot is longer than [`MAX_SLOT_LEN`].
    #[error("account slot of {len} bytes exceeds the maximum {max}")]
    SlotTooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The body is longer than [`MAX_BODY_LEN`].
    #[error("message body of {len} bytes exceeds the maximum {max}")]
    BodyTooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A blob starts with a version this build does not know.
    #[error("unknown row version {0}")]
    UnknownVersion(u8),
    /// A blob has an impossible length.
    #[error("row blob of the wrong length")]
    Length,
    /// The message key did not unwrap: another storage key or account, or the key row was
    /// modified or moved to another message.
    #[error("the message key did not unwrap")]
    KeyRefused,
    /// The body did not open: it was modified, or moved to another message's row.
    #[error("the message body did not open")]
    BodyRefused,
    /// The decrypted plaintext is malformed (an unknown direction byte).
    #[error("the decrypted message is malformed")]
    Malformed,
    /// The decrypted message names another message than the row it was read from.
    #[error("the message belongs to another row")]
    Mismatch,
}

/// The keys of one account's message store, derived from the app's storage key and the
/// account's slot. `Debug` prints nothing.
pub struct TranscriptKeys {
    slot: Vec<u8>,
    wrap_root: WrapRoot,
    tag_key: TagKey,
    check: KeyCheck,
}

impl core::fmt::Debug for TranscriptKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            slot: _,
            wrap_root: _,
            tag_key: _,
            check: _,
        } = self;
        f.debug_struct("TranscriptKeys").finish_non_exhaustive()
    }
}

fn expand(storage_key: &StorageKey, label: &[u8], slot: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    let len = u32::try_from(slot.len()).unwrap_or(u32::MAX).to_be_bytes();
    // 32 bytes is far below HKDF's output limit.
    let _ = hkdf_sha256_multi(None, storage_key.expose(), &[label, &len, slot], &mut *out);
    out
}

impl TranscriptKeys {
    /// Derives the keys of the account named `slot` from the app's storage key.
    pub fn derive(storage_key: &StorageKey, slot: &[u8]) -> Result<Self, RowError> {
        if slot.len() > MAX_SLOT_LEN {
            return Err(RowError::SlotTooLong {
                len: slot.len(),
                max: MAX_SLOT_LEN,
            });
        }
        Ok(Self {
            slot: slot.to_vec(),
            wrap_root: WrapRoot::copy_from(&expand(
                storage_key,
                labels::TRANSCRIPT_WRAP_ROOT,
                slot,
            )),
            tag_key: TagKey::copy_from(&expand(storage_key, labels::TRANSCRIPT_TAG_KEY, slot)),
            check: KeyCheck::copy_from(&expand(storage_key, labels::TRANSCRIPT_KEY_CHECK, slot)),
        })
    }

    /// The account's slot.
    #[must_use]
    pub fn slot(&self) -> &[u8] {
        &self.slot
    }

    /// The lookup tag of message `id` of `conversation`: what the database stores instead of
    /// the message id.
    #[must_use]
    pub fn tag(&self, conversation: u64, id: &MessageId) -> RowTag {
        let tag = hmac_sha256_parts(
            self.tag_key.expose(),
            &[&conversation.to_be_bytes(), &id.to_bytes()],
        );
        RowTag(*tag)
    }

    /// The key-check value the database keeps for the account.
    #[must_use]
    pub fn key_check(&self) -> &[u8; 32] {
        self.check.expose()
    }

    /// Whether `stored` is this key's check value (constant time).
    #[must_use]
    pub fn key_check_matches(&self, stored: &[u8]) -> bool {
        ct_eq(self.check.expose(), stored)
    }

    fn kek(&self, salt: &[u8; KEY_SALT_LEN]) -> AeadKey {
        let mut k = Zeroizing::new([0u8; 32]);
        let _ = hkdf_sha256(
            Some(salt),
            self.wrap_root.expose(),
            labels::TRANSCRIPT_KEY_WRAP,
            &mut *k,
        );
        AeadKey::copy_from(&k)
    }
}

/// A row's lookup tag: a keyed hash of its conversation and message id. `Debug` prints
/// nothing of it; it is compared in constant time.
#[derive(Clone, Copy)]
pub struct RowTag([u8; ROW_TAG_LEN]);

impl RowTag {
    /// From the bytes stored in the database.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; ROW_TAG_LEN]) -> Self {
        Self(bytes)
    }

    /// The bytes.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; ROW_TAG_LEN] {
        self.0
    }

    /// Constant-time equality.
    #[must_use]
    pub fn ct_matches(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl core::fmt::Debug for RowTag {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self(_) = self;
        f.write_str("RowTag(..)")
    }
}

/// The columns of a row that the database keeps in the clear, all bound into both blobs'
/// associated data: a row moved to another conversation, id, position or time, or given
/// another expiry, no longer opens.
#[derive(Debug, Clone, Copy)]
pub struct RowHeader {
    /// The conversation (the app's number for it).
    pub conversation: u64,
    /// The lookup tag ([`TranscriptKeys::tag`]).
    pub tag: RowTag,
    /// The row's position in the account's transcript (assigned by the store, increasing).
    pub seq: u64,
    /// When the message was sent (the sender's clock).
    pub sent_at: Timestamp,
    /// When it expires, if it does.
    pub expires_at: Option<Timestamp>,
}

impl RowHeader {
    fn aad(&self, keys: &TranscriptKeys, purpose: u8) -> Vec<u8> {
        let mut w =
            Writer::with_capacity(1 + 4 + keys.slot.len() + 8 + ROW_TAG_LEN + 8 + 8 + 1 + 8);
        w.u8(purpose)
            .u32(u32::try_from(keys.slot.len()).unwrap_or(u32::MAX))
            .bytes(&keys.slot)
            .u64(self.conversation)
            .bytes(&self.tag.0)
            .u64(self.seq)
            .u64(self.sent_at.as_millis())
            .u8(u8::from(self.expires_at.is_some()))
            .u64(self.expires_at.map_or(0, Timestamp::as_millis));
        w.into_vec()
    }

    /// The associated data of the wrapped key (for the test vectors and `docs/store.md`).
    #[must_use]
    pub fn key_aad(&self, keys: &TranscriptKeys) -> Vec<u8> {
        self.aad(keys, PURPOSE_KEY)
    }

    /// The associated data of the sealed body.
    #[must_use]
    pub fn body_aad(&self, keys: &TranscriptKeys) -> Vec<u8> {
        self.aad(keys, PURPOSE_BODY)
    }
}

/// The two blobs of a sealed row. `Debug` prints their lengths.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRow {
    /// The wrapped message key ([`WRAPPED_KEY_LEN`] bytes), kept in the key table.
    pub wrapped_key: Vec<u8>,
    /// The sealed body, kept in the message table.
    pub sealed_body: Vec<u8>,
}

impl core::fmt::Debug for SealedRow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            wrapped_key,
            sealed_body,
        } = self;
        f.debug_struct("SealedRow")
            .field("wrapped_key_len", &wrapped_key.len())
            .field("sealed_body_len", &sealed_body.len())
            .finish()
    }
}

/// One message of the transcript, decrypted. The body is wiped when dropped and `Debug`
/// shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct TranscriptEntry {
    /// Its position in the account's transcript (increasing in the order stored).
    pub seq: u64,
    /// The message id.
    pub id: MessageId,
    /// Who wrote it.
    pub from: Party,
    /// When the sender says it sent it.
    pub sent_at: Timestamp,
    /// When it expires, if it does.
    pub expires_at: Option<Timestamp>,
    /// The text.
    pub body: MessageText,
}

impl core::fmt::Debug for TranscriptEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            seq,
            id,
            from,
            sent_at,
            expires_at,
            body,
        } = self;
        f.debug_struct("TranscriptEntry")
            .field("seq", seq)
            .field("id", id)
            .field("from", from)
            .field("sent_at", sent_at)
            .field("expires_at", expires_at)
            .field("body_len", &body.len())
            .finish()
    }
}

/// Seals message `id` (written by `from`) into the row `header`. Draws 32 bytes (the message
/// key), then 32 (the wrapping salt).
pub fn seal_row<R: CryptoRng + ?Sized>(
    rng: &mut R,
    keys: &TranscriptKeys,
    header: &RowHeader,
    id: &MessageId,
    from: Party,
    body: &[u8],
) -> Result<SealedRow, RowError> {
    if body.len() > MAX_BODY_LEN {
        return Err(RowError::BodyTooLong {
            len: body.len(),
            max: MAX_BODY_LEN,
        });
    }
    if !header.tag.ct_matches(&keys.tag(header.conversation, id)) {
        return Err(RowError::Mismatch);
    }
    let message_key = AeadKey::random(rng);
    let salt: [u8; KEY_SALT_LEN] = random_array(rng);
    let kek = keys.kek(&salt);
    let mut wrapped_key = Vec::with_capacity(WRAPPED_KEY_LEN);
    wrapped_key.push(ROW_VERSION);
    wrapped_key.extend_from_slice(&salt);
    wrapped_key.extend_from_slice(&aead::seal(
        &kek,
        &[0; aead::NONCE_LEN],
        &header.key_aad(keys),
        message_key.expose(),
    ));
    let mut plaintext = Writer::with_capacity(MessageId::LEN + 1 + body.len());
    plaintext
        .bytes(&id.to_bytes())
        .u8(match from {
            Party::Us => FROM_US,
            Party::Peer => FROM_PEER,
        })
        .bytes(body);
    let plaintext = plaintext.into_zeroizing();
    let mut sealed_body = Vec::with_capacity(BODY_OVERHEAD + body.len());
    sealed_body.push(ROW_VERSION);
    sealed_body.extend_from_slice(&aead::seal(
        &message_key,
        &[0; aead::NONCE_LEN],
        &header.body_aad(keys),
        &plaintext,
    ));
    Ok(SealedRow {
        wrapped_key,
        sealed_body,
    })
}

/// Splits a blob into its version byte and the rest, refusing an unknown version.
fn versioned(blob: &[u8]) -> Result<&[u8], RowError> {
    let (&version, rest) = blob.split_first().ok_or(RowError::Length)?;
    if version != ROW_VERSION {
        return Err(RowError::UnknownVersion(version));
    }
    Ok(rest)
}

/// Opens the row `header` from its two blobs: unwraps the message key, opens the body and
/// checks that the message it holds is the row's (its tag). Strict: a blob of any other
/// length, another version, or a plaintext with an unknown direction byte is refused.
pub fn open_row(
    keys: &TranscriptKeys,
    header: &RowHeader,
    wrapped_key: &[u8],
    sealed_body: &[u8],
) -> Result<TranscriptEntry, RowError> {
    if wrapped_key.len() != WRAPPED_KEY_LEN {
        return Err(RowError::Length);
    }
    if sealed_body.len() < BODY_OVERHEAD || sealed_body.len() > BODY_OVERHEAD + MAX_BODY_LEN {
        return Err(RowError::Length);
    }
    let wrapped = versioned(wrapped_key)?;
    let body = versioned(sealed_body)?;
    let (salt, sealed_key) = wrapped
        .split_first_chunk::<KEY_SALT_LEN>()
        .ok_or(RowError::Length)?;
    let key_bytes = aead::open(
        &keys.kek(salt),
        &[0; aead::NONCE_LEN],
        &header.key_aad(keys),
        sealed_key,
    )
    .map_err(|_| RowError::KeyRefused)?;
    let message_key = AeadKey::from_slice(&key_bytes).ok_or(RowError::KeyRefused)?;
    let plaintext = aead::open(
        &message_key,
        &[0; aead::NONCE_LEN],
        &header.body_aad(keys),
        body,
    )
    .map_err(|_| RowError::BodyRefused)?;
    let (id, rest) = plaintext
        .split_first_chunk::<{ MessageId::LEN }>()
        .ok_or(RowError::Malformed)?;
    let (&from, text) = rest.split_first().ok_or(RowError::Malformed)?;
    let from = match from {
        FROM_US => Party::Us,
        FROM_PEER => Party::Peer,
        _ => return Err(RowError::Malformed),
    };
    let id = MessageId::from_bytes(*id);
    if !header.tag.ct_matches(&keys.tag(header.conversation, &id)) {
        return Err(RowError::Mismatch);
    }
    Ok(TranscriptEntry {
        seq: header.seq,
        id,
        from,
        sent_at: header.sent_at,
        expires_at: header.expires_at,
        body: MessageText::new(text.to_vec()),
    })
}
