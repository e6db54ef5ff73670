//! Symmetric sealed sender: small envelopes for a conversation that already exchanged a
//! public-key envelope, found by a per-message tag instead of trial decryption.
//!
//! A public-key envelope ([`seal_starting_epoch`](crate::seal_starting_epoch) /
//! [`open`](crate::open)) gives both sides an [`EpochSeed`]. Mixed with the session's
//! [`EnvelopeSecret`], it keys one **epoch** of symmetric envelopes in one direction:
//!
//! ```text
//! tag_key || message_root = HKDF(salt = seed, ikm = ES, info = SYMMETRIC_EPOCH || 0x02, 64)
//! tag_i   = HMAC-SHA256(tag_key, SYMMETRIC_TAG || u64(i))[0..16]
//! k || iv = HKDF(salt = none, ikm = message_root, info = SYMMETRIC_KEYS || 0x02, 44)   once per epoch
//! n_i     = iv XOR (0x00000000 || u64(i))
//! envelope_i = 0x02 || tag_i || u32(C) || clear || AEAD(k, n_i, aad, sealed)
//!              where payload = sealed || clear, and clear (C bytes, often 0) is ciphertext
//!              already: a session message's AEAD output, carried without a second encryption
//! aad        = 0x02 || tag_i || u32(C) || the last min(C, 16) bytes of clear (its own tag)
//! ```
//!
//! The sender's [`SymmetricSealer`] counts `i` up from 0 and is never stored: after a restart
//! (or a restored backup) the next envelope is a public-key one, which starts a fresh epoch,
//! so no nonce is ever used twice under an epoch's key. The recipient's [`TagWindow`] knows the tags of
//! the indices it still accepts; a [`TagDirectory`] maps every expected tag of every
//! conversation to its conversation, so an envelope is opened with one lookup and one AEAD.
//! Byte-level specification: `docs/sealed-sender.md` §9.

use core::fmt;
use std::collections::{BTreeMap, BTreeSet};

use confide_crypto::{
    CryptoError, Timestamp,
    aead::{self, NONCE_LEN, TAG_LEN},
    codec::{DecodeError, Reader, Writer},
    kdf::{HmacSha256Keyed, hkdf_sha256_multi, labels},
    secret::{AeadKey, EnvelopeSecret},
};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::{
    EpochSeed, TrustRoots,
    consts::{
        ENVELOPE_TAG_LEN, MAX_EPOCHS_PER_CONVERSATION, MAX_PAYLOAD_LEN,
        MAX_SYMMETRIC_EPOCH_ENVELOPES, SYMMETRIC_CLEAR_BOUND_LEN, SYMMETRIC_ENVELOPE_KIND,
        SYMMETRIC_EPOCH_MAX_AGE, TAG_WINDOW_AHEAD, TAG_WINDOW_BEHIND, TAG_WINDOW_BITMAP_LEN,
        TAG_WINDOW_STATE_VERSION, symmetric_envelope_len,
    },
};

confide_crypto::define_secret!(
    /// An epoch's tag key: the HMAC key of its tags.
    struct TagKey(32);
);

confide_crypto::define_secret!(
    /// An epoch's message root: every envelope key and nonce of the epoch derive from it.
    struct MessageRoot(32);
);

/// Words of the bitmap of indices received below the window's top.
const BITMAP_WORDS: usize = TAG_WINDOW_BITMAP_LEN / 8;

/// The tag of one symmetric envelope: what the relay sees, and what the recipient looks up.
/// Not secret once sent, but a tag not yet sent would let its holder recognise that envelope,
/// so `Debug` does not print it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvelopeTag([u8; ENVELOPE_TAG_LEN]);

impl EnvelopeTag {
    /// The tag's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; ENVELOPE_TAG_LEN] {
        &self.0
    }

    /// The tag of a symmetric envelope, read from its bytes without any key: kind byte `0x02`
    /// and at least the tag and an AEAD tag. `None` for anything else (for example a
    /// public-key envelope, whose first byte is `0x01`).
    #[must_use]
    pub fn of_envelope(envelope: &[u8]) -> Option<Self> {
        SymmetricEnvelope::parse(envelope).ok().map(|e| e.tag)
    }
}

impl fmt::Debug for EnvelopeTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvelopeTag(..)")
    }
}

/// Why [`SymmetricSealer::seal`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SymmetricSealError {
    /// The payload is longer than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the maximum {max}")]
    PayloadTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The epoch is [`SYMMETRIC_EPOCH_MAX_AGE`] old: send a public-key envelope, which starts
    /// the next one.
    #[error("the symmetric epoch is too old; start a new one with a public-key envelope")]
    EpochExpired,
    /// The epoch sealed [`MAX_SYMMETRIC_EPOCH_ENVELOPES`] envelopes.
    #[error("the symmetric epoch sealed its maximum number of envelopes")]
    EpochExhausted,
    /// Key derivation failed (cannot happen with the fixed lengths used here).
    #[error("key derivation failed")]
    KeyDerivation,
    /// The part to carry unencrypted is longer than the payload.
    #[error("clear part of {clear_len} bytes in a payload of {payload_len}")]
    ClearPartTooLong {
        /// The clear part's length asked for.
        clear_len: usize,
        /// The payload's length.
        payload_len: usize,
    },
}

/// Why a symmetric envelope did not open ([`TagWindow::open`], [`TagDirectory::open`]).
/// One variant per check, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SymmetricOpenError {
    /// Not a symmetric envelope: wrong kind byte, or shorter than kind, tag and AEAD tag.
    #[error("malformed symmetric envelope: {0}")]
    Decode(#[from] DecodeError),
    /// No window expects this tag: not for us, an index already received (a replay), or
    /// outside the window ([`TAG_WINDOW_AHEAD`], [`TAG_WINDOW_BEHIND`]).
    #[error("no conversation expects this envelope tag")]
    UnknownTag,
    /// The epoch's acceptance ended (`now` is not before its `accept_until`: the certificate
    /// that started it expired, grace included).
    #[error("the symmetric epoch of this envelope is no longer accepted")]
    EpochExpired,
    /// The server key that certified the epoch's sender is revoked in the current trust roots.
    #[error("the server key {server_key_id} that certified this epoch's sender is revoked")]
    ServerRevoked {
        /// The revoked server key id.
        server_key_id: u32,
    },
    /// The AEAD failed: the envelope was altered (its tag is expected, its content is not).
    #[error("symmetric envelope failed to decrypt")]
    Decrypt,
    /// Key derivation failed (cannot happen with the fixed lengths used here).
    #[error("key derivation failed")]
    KeyDerivation,
}

/// An epoch's two keys.
fn epoch_keys(
    seed: &EpochSeed,
    secret: &EnvelopeSecret,
) -> Result<(TagKey, MessageRoot), CryptoError> {
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf_sha256_multi(
        Some(seed.expose()),
        secret.expose(),
        &[labels::SYMMETRIC_EPOCH, &[SYMMETRIC_ENVELOPE_KIND]],
        okm.as_mut_slice(),
    )?;
    let (tag_key, root) = okm.split_at(32);
    Ok((
        TagKey::from_slice(tag_key).ok_or(CryptoError::KdfLength)?,
        MessageRoot::from_slice(root).ok_or(CryptoError::KdfLength)?,
    ))
}

/// `tag_i = HMAC-SHA256(tag_key, SYMMETRIC_TAG || u64(i))[0..16]`, under the tag key's
/// HMAC state keyed once per epoch (a sealer's or window's `tags`).
fn tag_at(tags: &HmacSha256Keyed, index: u64) -> EnvelopeTag {
    tag_from_mac(&tags.mac(&[labels::SYMMETRIC_TAG, &index.to_be_bytes()]))
}

/// The first [`ENVELOPE_TAG_LEN`] bytes of an HMAC output.
fn tag_from_mac(mac: &[u8; 32]) -> EnvelopeTag {
    let mut tag = [0u8; ENVELOPE_TAG_LEN];
    if let Some(head) = mac.get(..ENVELOPE_TAG_LEN) {
        tag.copy_from_slice(head);
    }
    EnvelopeTag(tag)
}

/// An epoch's AEAD key and nonce base, derived once when the sealer or window is made
/// (`docs/sealed-sender.md` §9.2): the nonce of envelope `i` is `iv XOR (0^4 || u64(i))`, as
/// TLS 1.3 forms its record nonces (RFC 8446 §5.3), so sealing or opening an envelope
/// derives nothing. Both halves are wiped when dropped.
#[derive(Clone)]
struct EpochAead {
    key: AeadKey,
    iv: Zeroizing<[u8; NONCE_LEN]>,
}

impl EpochAead {
    /// `k || iv = HKDF(salt = none, ikm = message_root, info = SYMMETRIC_KEYS || 0x02, 44)`.
    fn derive(root: &MessageRoot) -> Result<Self, CryptoError> {
        let mut okm = Zeroizing::new([0u8; 32 + NONCE_LEN]);
        hkdf_sha256_multi(
            None,
            root.expose(),
            &[labels::SYMMETRIC_KEYS, &[SYMMETRIC_ENVELOPE_KIND]],
            okm.as_mut_slice(),
        )?;
        let (key, iv) = okm.split_at(32);
        let key = AeadKey::from_slice(key).ok_or(CryptoError::KdfLength)?;
        let mut base = Zeroizing::new([0u8; NONCE_LEN]);
        base.copy_from_slice(iv);
        Ok(Self { key, iv: base })
    }

    /// `n_i = iv XOR (0x00000000 || u64(i))`: distinct for distinct indices.
    fn nonce(&self, index: u64) -> [u8; NONCE_LEN] {
        let mut nonce = *self.iv;
        let counter = index.to_be_bytes();
        let offset = NONCE_LEN - counter.len();
        for (n, c) in nonce.iter_mut().skip(offset).zip(counter) {
            *n ^= c;
        }
        nonce
    }
}

/// The outer structure of a symmetric envelope (`docs/sealed-sender.md` §9.3):
/// `kind || tag || u32(C) || clear[C] || AEAD(k, n_i, aad, sealed)`, where `aad` is the kind,
/// the tag, `C` and the clear part's last [`SYMMETRIC_CLEAR_BOUND_LEN`] bytes; its payload is
/// `sealed || clear`.
struct SymmetricEnvelope<'a> {
    tag: EnvelopeTag,
    /// Kind, tag and `C`: the first part of the AEAD's associated data.
    header: &'a [u8],
    /// The part of the payload carried without a second encryption. The envelope binds only
    /// its last [`SYMMETRIC_CLEAR_BOUND_LEN`] bytes, its own AEAD tag.
    clear: &'a [u8],
    /// The sealed part and its AEAD tag.
    ciphertext: &'a [u8],
}

impl<'a> SymmetricEnvelope<'a> {
    /// Kind `0x02`, a 16-byte tag, `C` (at most [`MAX_PAYLOAD_LEN`]), `C` clear bytes, then
    /// at least an AEAD tag; the payload (sealed and clear parts) at most
    /// [`MAX_PAYLOAD_LEN`].
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let kind = r.u8()?;
        if kind != SYMMETRIC_ENVELOPE_KIND {
            return Err(DecodeError::UnknownVersion {
                what: "symmetric envelope",
                found: kind,
            });
        }
        let tag = EnvelopeTag(r.array()?);
        let header_len = r.offset().saturating_add(4);
        let clear = r.var32("symmetric envelope clear part", MAX_PAYLOAD_LEN)?;
        let ciphertext = r.rest();
        if ciphertext.len() < TAG_LEN {
            return Err(DecodeError::UnexpectedEnd {
                offset: r.offset(),
                needed: TAG_LEN.saturating_sub(ciphertext.len()),
            });
        }
        let payload_len = ciphertext
            .len()
            .saturating_sub(TAG_LEN)
            .saturating_add(clear.len());
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(DecodeError::TooLong {
                field: "symmetric envelope payload",
                len: payload_len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        r.finish()?;
        let header = bytes.get(..header_len).ok_or(DecodeError::UnexpectedEnd {
            offset: 0,
            needed: header_len,
        })?;
        Ok(Self {
            tag,
            header,
            clear,
            ciphertext,
        })
    }
}

/// Room for the longest associated data: kind (1), tag (16), `C` (4) and the clear part's
/// bound bytes (16). A literal, checked against its parts at compile time.
const MAX_SYMMETRIC_AAD_LEN: usize = 37;
const _: () =
    assert!(MAX_SYMMETRIC_AAD_LEN == 1 + ENVELOPE_TAG_LEN + 4 + SYMMETRIC_CLEAR_BOUND_LEN);

/// The AEAD's associated data of a symmetric envelope: `header` (kind, tag, `C`) then the
/// last [`SYMMETRIC_CLEAR_BOUND_LEN`] bytes of `clear` (all of it if shorter), copied into
/// `buf`. `None` only for a header longer than the layout's (never, for the callers here).
fn symmetric_aad<'b>(
    buf: &'b mut [u8; MAX_SYMMETRIC_AAD_LEN],
    header: &[u8],
    clear: &[u8],
) -> Option<&'b [u8]> {
    let bound = clear.get(clear.len().saturating_sub(SYMMETRIC_CLEAR_BOUND_LEN)..)?;
    let len = header.len().checked_add(bound.len())?;
    let (h, rest) = buf.split_at_mut_checked(header.len())?;
    h.copy_from_slice(header);
    rest.get_mut(..bound.len())?.copy_from_slice(bound);
    buf.get(..len)
}

/// The sending side of one symmetric epoch: seals envelopes `0, 1, 2, ...` to the peer.
///
/// Deliberately neither `Clone` nor serializable: a sealer exists once, in memory, so no two
/// envelopes are ever sealed under the same index of the same epoch, even across a crash or
/// a restored backup (after which the sender starts a new epoch with a public-key envelope).
pub struct SymmetricSealer {
    /// HMAC state keyed with the epoch's tag key (wiped when dropped).
    tags: HmacSha256Keyed,
    aead: EpochAead,
    next: u64,
    started_at: Timestamp,
}

impl fmt::Debug for SymmetricSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            tags: _,
            aead: _,
            next,
            started_at,
        } = self;
        f.debug_struct("SymmetricSealer")
            .field("next", next)
            .field("started_at", started_at)
            .finish_non_exhaustive()
    }
}

impl SymmetricSealer {
    /// The sealer of the epoch started by the public-key envelope whose seed is `seed`
    /// ([`seal_starting_epoch`](crate::seal_starting_epoch)), in the session whose envelope
    /// secret is `secret`, at `started_at` (when that envelope was sealed: the epoch's age
    /// counts from there).
    pub fn new(
        seed: &EpochSeed,
        secret: &EnvelopeSecret,
        started_at: Timestamp,
    ) -> Result<Self, SymmetricSealError> {
        let (tag_key, message_root) =
            epoch_keys(seed, secret).map_err(|_| SymmetricSealError::KeyDerivation)?;
        let aead =
            EpochAead::derive(&message_root).map_err(|_| SymmetricSealError::KeyDerivation)?;
        Ok(Self {
            tags: HmacSha256Keyed::new(tag_key.expose()),
            aead,
            next: 0,
            started_at,
        })
    }

    /// Seals `payload` as the epoch's next envelope. Refuses (changing nothing) once the epoch
    /// is [`SYMMETRIC_EPOCH_MAX_AGE`] old at `now` or has sealed
    /// [`MAX_SYMMETRIC_EPOCH_ENVELOPES`]: the caller then sends a public-key envelope.
    ///
    /// ```text
    /// i = next; next = i + 1
    /// envelope = 0x02 || tag_i || u32(0) || AEAD(k, n_i, aad = 0x02 || tag_i || u32(0), payload)
    /// ```
    pub fn seal(&mut self, now: Timestamp, payload: &[u8]) -> Result<Vec<u8>, SymmetricSealError> {
        self.seal_with_clear_suffix(now, payload, 0)
    }

    /// As [`SymmetricSealer::seal`], but the last `clear_len` bytes of `payload` travel
    /// without being encrypted again, not hidden by this envelope (`docs/sealed-sender.md`
    /// §9.3). The envelope binds only their last [`SYMMETRIC_CLEAR_BOUND_LEN`] bytes.
    ///
    /// Only for bytes that are already AEAD output the relay cannot read, ending with their
    /// own 16-byte authentication tag, never sent before under any envelope, and checked by
    /// their recipient before anything trusts them: the AEAD output of a session message
    /// just encrypted (`SessionMessage::ciphertext_len`), fresh for every message, which the
    /// recipient's session authenticates. Sending them twice would let the relay link the
    /// two envelopes. Refuses a `clear_len` longer than the payload (changing nothing).
    ///
    /// ```text
    /// C = clear_len; sealed = payload[..len - C]; clear = payload[len - C..]
    /// aad = 0x02 || tag_i || u32(C) || clear[C - min(C, 16)..]
    /// envelope = 0x02 || tag_i || u32(C) || clear || AEAD(k, n_i, aad, sealed)
    /// ```
    pub fn seal_with_clear_suffix(
        &mut self,
        now: Timestamp,
        payload: &[u8],
        clear_len: usize,
    ) -> Result<Vec<u8>, SymmetricSealError> {
        let total =
            symmetric_envelope_len(payload.len()).ok_or(SymmetricSealError::PayloadTooLong {
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            })?;
        let (sealed, clear) = payload
            .len()
            .checked_sub(clear_len)
            .and_then(|at| payload.split_at_checked(at))
            .ok_or(SymmetricSealError::ClearPartTooLong {
                clear_len,
                payload_len: payload.len(),
            })?;
        let clear_len_field =
            u32::try_from(clear.len()).map_err(|_| SymmetricSealError::PayloadTooLong {
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            })?;
        if self.is_expired(now) {
            return Err(SymmetricSealError::EpochExpired);
        }
        let index = self.next;
        if index >= MAX_SYMMETRIC_EPOCH_ENVELOPES {
            return Err(SymmetricSealError::EpochExhausted);
        }
        let tag = tag_at(&self.tags, index);
        let nonce = self.aead.nonce(index);
        let mut out = Vec::with_capacity(total);
        out.push(SYMMETRIC_ENVELOPE_KIND);
        out.extend_from_slice(&tag.0);
        out.extend_from_slice(&clear_len_field.to_be_bytes());
        let mut aad = [0u8; MAX_SYMMETRIC_AAD_LEN];
        let aad =
            symmetric_aad(&mut aad, &out, clear).ok_or(SymmetricSealError::PayloadTooLong {
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            })?;
        let ciphertext = aead::seal(&self.aead.key, &nonce, aad, sealed);
        out.extend_from_slice(clear);
        out.extend_from_slice(&ciphertext);
        self.next = index.saturating_add(1);
        Ok(out)
    }

    /// Whether the epoch should end at `now`: [`SYMMETRIC_EPOCH_MAX_AGE`] old, or out of
    /// indices. A sender checks this before choosing the symmetric path.
    #[must_use]
    pub fn is_due_for_renewal(&self, now: Timestamp) -> bool {
        self.is_expired(now) || self.next >= MAX_SYMMETRIC_EPOCH_ENVELOPES
    }

    fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.started_at.saturating_add(SYMMETRIC_EPOCH_MAX_AGE)
    }

    /// The index the next envelope gets (how many this epoch sealed).
    #[must_use]
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// When the epoch started.
    #[must_use]
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }
}

/// What one accepted envelope changes in a window's set of expected tags (for a directory's
/// index).
struct TagChange {
    removed: Vec<EnvelopeTag>,
    added: Vec<EnvelopeTag>,
}

/// A symmetric envelope that opened ([`TagWindow::open_staged`], [`TagDirectory::open_staged`])
/// but whose index its window has not recorded yet: pass it to [`TagWindow::commit`] /
/// [`TagDirectory::commit`] once every later check on the payload succeeded. Dropping it
/// records nothing (the envelope will open again). `Debug` does not print the tag.
pub struct StagedEnvelope {
    tag: EnvelopeTag,
    index: u64,
}

impl fmt::Debug for StagedEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { tag: _, index } = self;
        f.debug_struct("StagedEnvelope")
            .field("index", index)
            .finish_non_exhaustive()
    }
}

impl StagedEnvelope {
    /// The envelope's index in its epoch.
    #[must_use]
    pub fn index(&self) -> u64 {
        self.index
    }
}

/// The receiving side of one symmetric epoch: which indices it still accepts, and their tags.
///
/// It accepts each index once, within [`TAG_WINDOW_BEHIND`] below and [`TAG_WINDOW_AHEAD`]
/// above the highest index received. `open` commits only on success. Stored with
/// [`TagWindow::to_bytes`] (213 bytes; the tags are recomputed when read).
#[derive(Clone)]
pub struct TagWindow {
    /// What is stored of it; everything below is derived from it.
    state: StoredTagWindow,
    /// The epoch's AEAD key and nonce base (`None` only if deriving them failed, which the
    /// fixed lengths rule out; opening then refuses with `KeyDerivation`).
    aead: Option<EpochAead>,
    /// HMAC state keyed with the tag key, for the tags entering the window (wiped when
    /// dropped).
    tags: HmacSha256Keyed,
    /// Every index still accepted, by tag.
    by_tag: BTreeMap<EnvelopeTag, u64>,
    /// The same, by index.
    by_index: BTreeMap<u64, EnvelopeTag>,
}

impl fmt::Debug for TagWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            state,
            aead: _,
            tags: _,
            by_tag,
            by_index: _,
        } = self;
        f.debug_struct("TagWindow")
            .field("next", &state.next)
            .field("accept_until", &state.accept_until)
            .field("server_key_id", &state.server_key_id)
            .field("expected_tags", &by_tag.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for TagWindow {
    /// Equal state (constant time on the keys). The derived tag maps follow from it.
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

impl Eq for TagWindow {}

impl TagWindow {
    /// The window of the epoch started by a public-key envelope the recipient opened
    /// ([`Opened::epoch_seed`](crate::Opened::epoch_seed)) in the session whose envelope
    /// secret is `secret`. Its envelopes are accepted while `now < accept_until` and while the
    /// current trust roots do not revoke `server_key_id`: pass the sender certificate's
    /// server key id and its expiry plus the grace the caller gives public-key envelopes
    /// (`docs/sealed-sender.md` §9.6), so the symmetric path never outlives the certificate
    /// that started it.
    pub fn new(
        seed: &EpochSeed,
        secret: &EnvelopeSecret,
        accept_until: Timestamp,
        server_key_id: u32,
    ) -> Result<Self, SymmetricOpenError> {
        let (tag_key, message_root) =
            epoch_keys(seed, secret).map_err(|_| SymmetricOpenError::KeyDerivation)?;
        Ok(StoredTagWindow {
            tag_key,
            message_root,
            next: 0,
            seen: [0; BITMAP_WORDS],
            accept_until,
            server_key_id,
        }
        .into_window())
    }

    /// The tags this window accepts (each once), in no particular order: what a
    /// [`TagDirectory`] maps to the conversation. At most [`TAG_WINDOW_AHEAD`] +
    /// [`TAG_WINDOW_BEHIND`].
    pub fn expected_tags(&self) -> impl Iterator<Item = &EnvelopeTag> {
        self.by_tag.keys()
    }

    /// Whether this window accepts `tag`.
    #[must_use]
    pub fn expects(&self, tag: &EnvelopeTag) -> bool {
        self.by_tag.contains_key(tag)
    }

    /// One past the highest index received (0 before the first).
    #[must_use]
    pub fn next_index(&self) -> u64 {
        self.state.next
    }

    /// Until when the epoch's envelopes are accepted.
    #[must_use]
    pub fn accept_until(&self) -> Timestamp {
        self.state.accept_until
    }

    /// The server key id that certified the epoch's sender.
    #[must_use]
    pub fn server_key_id(&self) -> u32 {
        self.state.server_key_id
    }

    /// Whether both windows belong to the same epoch (constant time).
    #[must_use]
    pub fn same_epoch(&self, other: &Self) -> bool {
        self.state.same_epoch(&other.state)
    }

    /// Opens a symmetric envelope of this epoch at `now` under `roots`. The checks, in order:
    /// the outer structure ([`SymmetricOpenError::Decode`]); the tag is one this window
    /// expects ([`SymmetricOpenError::UnknownTag`]: not this epoch, already received, or
    /// outside the window); `now < accept_until` ([`SymmetricOpenError::EpochExpired`]); the
    /// server key is not revoked ([`SymmetricOpenError::ServerRevoked`]); the AEAD
    /// ([`SymmetricOpenError::Decrypt`]). Only if all pass does the window record the index;
    /// any error changes nothing.
    ///
    /// The payload's clear part (the envelope's last `C` payload bytes,
    /// [`SymmetricSealer::seal_with_clear_suffix`]) is bound only through its last
    /// [`SYMMETRIC_CLEAR_BOUND_LEN`] bytes: the caller must check it with its own AEAD
    /// before trusting it. With a clear part use [`TagWindow::open_staged`] and commit once
    /// that check passed, or a copy changed in transit would use up the index.
    pub fn open(
        &mut self,
        now: Timestamp,
        roots: &TrustRoots,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SymmetricOpenError> {
        let parsed = SymmetricEnvelope::parse(envelope)?;
        self.open_parsed(now, roots, &parsed).map(|(p, _)| p)
    }

    fn open_parsed(
        &mut self,
        now: Timestamp,
        roots: &TrustRoots,
        envelope: &SymmetricEnvelope<'_>,
    ) -> Result<(Zeroizing<Vec<u8>>, TagChange), SymmetricOpenError> {
        let (index, payload) = self.check_and_decrypt(now, roots, envelope)?;
        // Authenticated: record the index (nothing below can fail).
        Ok((payload, self.record(index)))
    }

    /// Opens a symmetric envelope of this epoch like [`TagWindow::open`], with the same checks
    /// in the same order, but records nothing: the window is unchanged until
    /// [`TagWindow::commit`] is called with the returned [`StagedEnvelope`]. For a caller that
    /// has more checks to run on the payload (a session decrypt, which is what authenticates
    /// a clear part beyond its bound tag) and must change nothing if one of them fails.
    pub fn open_staged(
        &self,
        now: Timestamp,
        roots: &TrustRoots,
        envelope: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, StagedEnvelope), SymmetricOpenError> {
        let parsed = SymmetricEnvelope::parse(envelope)?;
        let (index, payload) = self.check_and_decrypt(now, roots, &parsed)?;
        Ok((
            payload,
            StagedEnvelope {
                tag: parsed.tag,
                index,
            },
        ))
    }

    /// Records the index of an envelope opened with [`TagWindow::open_staged`], exactly as
    /// [`TagWindow::open`] would have. Returns `false`, changing nothing, if the window no
    /// longer expects that index (it was committed already, or the window moved past it).
    pub fn commit(&mut self, staged: &StagedEnvelope) -> bool {
        self.commit_staged(staged).is_some()
    }

    fn commit_staged(&mut self, staged: &StagedEnvelope) -> Option<TagChange> {
        if self.by_tag.get(&staged.tag) != Some(&staged.index) {
            return None;
        }
        Some(self.record(staged.index))
    }

    /// Checks 2 to 5 of [`TagWindow::open`]; changes nothing. Returns the index and payload.
    fn check_and_decrypt(
        &self,
        now: Timestamp,
        roots: &TrustRoots,
        envelope: &SymmetricEnvelope<'_>,
    ) -> Result<(u64, Zeroizing<Vec<u8>>), SymmetricOpenError> {
        let index = *self
            .by_tag
            .get(&envelope.tag)
            .ok_or(SymmetricOpenError::UnknownTag)?;
        if now >= self.state.accept_until {
            return Err(SymmetricOpenError::EpochExpired);
        }
        if roots.is_revoked(self.state.server_key_id) {
            return Err(SymmetricOpenError::ServerRevoked {
                server_key_id: self.state.server_key_id,
            });
        }
        let keys = self
            .aead
            .as_ref()
            .ok_or(SymmetricOpenError::KeyDerivation)?;
        let mut aad = [0u8; MAX_SYMMETRIC_AAD_LEN];
        let aad = symmetric_aad(&mut aad, envelope.header, envelope.clear)
            .ok_or(SymmetricOpenError::Decrypt)?;
        let sealed = aead::open(&keys.key, &keys.nonce(index), aad, envelope.ciphertext)
            .map_err(|_| SymmetricOpenError::Decrypt)?;
        // `sealed || clear`, in a buffer allocated once (growing a wiped buffer would leave
        // the old allocation unwiped).
        let mut payload = Zeroizing::new(Vec::with_capacity(
            sealed.len().saturating_add(envelope.clear.len()),
        ));
        payload.extend_from_slice(&sealed);
        payload.extend_from_slice(envelope.clear);
        Ok((index, payload))
    }

    /// Records `index` (an expected index whose envelope authenticated). Infallible.
    fn record(&mut self, index: u64) -> TagChange {
        let added = self.tags_entering_with(index);
        self.commit_index(index, added)
    }

    /// The `(index, tag)` pairs that enter the ahead part of the window when `index` is
    /// received.
    fn tags_entering_with(&self, index: u64) -> Vec<(u64, EnvelopeTag)> {
        if index < self.state.next {
            return Vec::new();
        }
        let new_next = index.saturating_add(1);
        let from = self.state.next.saturating_add(TAG_WINDOW_AHEAD);
        let to = new_next
            .saturating_add(TAG_WINDOW_AHEAD)
            .min(MAX_SYMMETRIC_EPOCH_ENVELOPES);
        (from..to).map(|i| (i, tag_at(&self.tags, i))).collect()
    }

    /// Records `index` as received, with the tags entering the window. Infallible.
    fn commit_index(&mut self, index: u64, added: Vec<(u64, EnvelopeTag)>) -> TagChange {
        let mut removed = Vec::new();
        if let Some(tag) = self.by_index.remove(&index) {
            self.by_tag.remove(&tag);
            removed.push(tag);
        }
        if index >= self.state.next {
            let shift = index.saturating_add(1).saturating_sub(self.state.next);
            self.state.seen = shifted(&self.state.seen, shift);
            self.state.next = index.saturating_add(1);
            set_bit(&mut self.state.seen, 0);
            // Indices that fell below the window stop being accepted.
            let floor = self.state.next.saturating_sub(TAG_WINDOW_BEHIND);
            let fallen: Vec<u64> = self.by_index.range(..floor).map(|(i, _)| *i).collect();
            for i in fallen {
                if let Some(tag) = self.by_index.remove(&i) {
                    self.by_tag.remove(&tag);
                    removed.push(tag);
                }
            }
        } else if let Some(k) = self
            .state
            .next
            .checked_sub(index)
            .and_then(|d| d.checked_sub(1))
        {
            set_bit(&mut self.state.seen, k);
        }
        let mut entered = Vec::with_capacity(added.len());
        for (i, tag) in added {
            self.by_index.insert(i, tag);
            self.by_tag.insert(tag, i);
            entered.push(tag);
        }
        TagChange {
            removed,
            added: entered,
        }
    }

    /// The stored form (`docs/sealed-sender.md` §9.7): `0x01 || tag_key[32] ||
    /// message_root[32] || next:u64 || seen[128] || accept_until:u64 || server_key_id:u32`.
    /// Contains secrets: store it encrypted, with the conversation's state.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        self.state.to_bytes()
    }

    /// Reads [`TagWindow::to_bytes`], strictly: the version, `next ≤`
    /// [`MAX_SYMMETRIC_EPOCH_ENVELOPES`], a bitmap that is canonical (bit 0 set exactly when
    /// `next > 0`; no bit for an index below 0), no trailing bytes. Recomputes the tags.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        StoredTagWindow::from_bytes(bytes).map(StoredTagWindow::into_window)
    }

    /// Reads one window from `r` (as [`TagWindow::from_bytes`], for a window inside a larger
    /// record).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        StoredTagWindow::read(r).map(StoredTagWindow::into_window)
    }
}

/// A [`TagWindow`] read back from storage whose tags are not derived yet (about 32 HMACs
/// and their map entries per window): what [`TagDirectory::restore_stored`] takes, so that
/// loading an account with many conversations does not derive every conversation's tags up
/// front. The directory derives them all before its first lookup. Holds the window's
/// secrets (wiped when dropped); parsed as strictly as [`TagWindow::from_bytes`].
#[derive(Clone)]
pub struct StoredTagWindow {
    tag_key: TagKey,
    message_root: MessageRoot,
    next: u64,
    seen: [u64; BITMAP_WORDS],
    accept_until: Timestamp,
    server_key_id: u32,
}

impl fmt::Debug for StoredTagWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            tag_key: _,
            message_root: _,
            next,
            seen: _,
            accept_until,
            server_key_id,
        } = self;
        f.debug_struct("StoredTagWindow")
            .field("next", next)
            .field("accept_until", accept_until)
            .field("server_key_id", server_key_id)
            .finish_non_exhaustive()
    }
}

impl PartialEq for StoredTagWindow {
    /// Equal state (constant time on the keys).
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.tag_key.ct_eq(&other.tag_key))
            & bool::from(self.message_root.ct_eq(&other.message_root))
            & (self.next == other.next)
            & (self.seen == other.seen)
            & (self.accept_until == other.accept_until)
            & (self.server_key_id == other.server_key_id)
    }
}

impl Eq for StoredTagWindow {}

impl StoredTagWindow {
    /// Every index the window accepts, ascending: those below `next` (at most
    /// [`TAG_WINDOW_BEHIND`] below) not yet received, then `next .. next + TAG_WINDOW_AHEAD`
    /// (below [`MAX_SYMMETRIC_EPOCH_ENVELOPES`]).
    fn expected_indices(&self) -> Vec<u64> {
        let behind = self.next.min(TAG_WINDOW_BEHIND);
        let mut out: Vec<u64> = (1..=behind)
            .rev()
            .map(|d| self.next.saturating_sub(d))
            .filter(|index| !self.was_received(*index))
            .collect();
        let end = self
            .next
            .saturating_add(TAG_WINDOW_AHEAD)
            .min(MAX_SYMMETRIC_EPOCH_ENVELOPES);
        out.extend(self.next..end);
        out
    }

    /// Whether `index` (below `next`, within the bitmap) was received.
    fn was_received(&self, index: u64) -> bool {
        let Some(k) = self.next.checked_sub(index).and_then(|d| d.checked_sub(1)) else {
            return false;
        };
        bit(&self.seen, k)
    }

    /// Reads the stored form strictly, as [`TagWindow::from_bytes`] does, without deriving
    /// the tags.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let window = Self::read(&mut r)?;
        r.finish()?;
        Ok(window)
    }

    /// Reads one stored window from `r` (for a window inside a larger record).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != TAG_WINDOW_STATE_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "tag window",
                found: version,
            });
        }
        let tag_key = TagKey::new(r.array()?);
        let message_root = MessageRoot::new(r.array()?);
        let next = r.u64()?;
        if next > MAX_SYMMETRIC_EPOCH_ENVELOPES {
            return Err(DecodeError::InvalidValue {
                field: "tag window next index",
            });
        }
        let mut seen = [0u64; BITMAP_WORDS];
        for word in &mut seen {
            *word = r.u64()?;
        }
        // Canonical: the highest index received (next - 1) is marked, and nothing is marked
        // below index 0.
        let top_marked = bit(&seen, 0);
        if top_marked != (next > 0) {
            return Err(DecodeError::InvalidValue {
                field: "tag window bitmap",
            });
        }
        if any_bit_from(&seen, next) {
            return Err(DecodeError::InvalidValue {
                field: "tag window bitmap",
            });
        }
        let accept_until = Timestamp::from_millis(r.u64()?);
        let server_key_id = r.u32()?;
        Ok(Self {
            tag_key,
            message_root,
            next,
            seen,
            accept_until,
            server_key_id,
        })
    }

    /// The stored form, byte for byte what it was read from (`TagWindow::to_bytes`).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(crate::consts::TAG_WINDOW_STATE_LEN);
        w.u8(TAG_WINDOW_STATE_VERSION)
            .bytes(self.tag_key.expose())
            .bytes(self.message_root.expose())
            .u64(self.next);
        for word in self.seen {
            w.u64(word);
        }
        w.u64(self.accept_until.as_millis()).u32(self.server_key_id);
        w.into_zeroizing()
    }

    /// Whether both windows belong to the same epoch (constant time).
    #[must_use]
    pub fn same_epoch(&self, other: &Self) -> bool {
        bool::from(self.tag_key.ct_eq(&other.tag_key))
    }

    /// The window, with its tags derived.
    #[must_use]
    pub fn into_window(self) -> TagWindow {
        let aead = EpochAead::derive(&self.message_root).ok();
        let tags = HmacSha256Keyed::new(self.tag_key.expose());
        let mut window = TagWindow {
            state: self,
            aead,
            tags,
            by_tag: BTreeMap::new(),
            by_index: BTreeMap::new(),
        };
        for index in window.state.expected_indices() {
            let tag = tag_at(&window.tags, index);
            window.by_tag.insert(tag, index);
            window.by_index.insert(index, tag);
        }
        window
    }
}

fn bit(words: &[u64; BITMAP_WORDS], k: u64) -> bool {
    let Ok(k) = usize::try_from(k) else {
        return false;
    };
    words.get(k / 64).is_some_and(|w| (w >> (k % 64)) & 1 == 1)
}

/// Whether any bit `k >= from` is set: `(from..).any(|k| bit(words, k))`, a word at a time
/// (reading a window checks that nothing is marked below index 0; bit by bit that was up to
/// 1,024 tests per window, a large share of loading an account with many conversations).
fn any_bit_from(words: &[u64; BITMAP_WORDS], from: u64) -> bool {
    let mut base = 0u64;
    for word in words {
        let set = if base >= from {
            *word
        } else {
            // `from - base` is at least 1; at 64 or more this word lies wholly below `from`.
            word.checked_shr(u32::try_from(from - base).unwrap_or(u32::MAX))
                .unwrap_or(0)
        };
        if set != 0 {
            return true;
        }
        base = base.saturating_add(64);
    }
    false
}

fn set_bit(words: &mut [u64; BITMAP_WORDS], k: u64) {
    let Ok(k) = usize::try_from(k) else {
        return;
    };
    if let Some(w) = words.get_mut(k / 64) {
        *w |= 1u64 << (k % 64);
    }
}

/// The bitmap after the top moved up by `shift`: bit `k` moves to `k + shift`, bits beyond
/// the window drop out.
fn shifted(words: &[u64; BITMAP_WORDS], shift: u64) -> [u64; BITMAP_WORDS] {
    let mut out = [0u64; BITMAP_WORDS];
    let Ok(shift) = usize::try_from(shift) else {
        return out;
    };
    let (word_shift, bit_shift) = (shift / 64, shift % 64);
    for (i, slot) in out.iter_mut().enumerate() {
        let Some(src) = i.checked_sub(word_shift) else {
            continue;
        };
        let low = words.get(src).copied().unwrap_or(0);
        let mut value = low << bit_shift;
        if bit_shift > 0
            && let Some(below) = src.checked_sub(1)
        {
            value |= words.get(below).copied().unwrap_or(0) >> (64 - bit_shift);
        }
        *slot = value;
    }
    out
}

/// Every conversation's expected tags, so an incoming symmetric envelope is matched to its
/// conversation by one map lookup (no trial decryption), then opened by that conversation's
/// window. `K` names a conversation (the endpoint's conversation id).
///
/// Holds at most [`MAX_EPOCHS_PER_CONVERSATION`] windows per conversation, in order of last
/// use: installing a window or committing an envelope in one makes it the newest, and the
/// least recently used goes first (`docs/sealed-sender.md` §9.4). A `BTreeMap`, not a hash map: the lookup is `O(log n)` in the number of
/// expected tags and the core reads no OS randomness for hash keys.
pub struct TagDirectory<K> {
    windows: BTreeMap<K, Vec<TagWindow>>,
    index: BTreeMap<EnvelopeTag, K>,
    /// Windows restored from storage whose tags are not derived yet, by conversation
    /// (least recently used first). They join `windows` and `index` before the first lookup, or when their
    /// conversation's windows change.
    stored: BTreeMap<K, Vec<StoredTagWindow>>,
    /// Conversations whose windows changed since [`TagDirectory::take_changed`]
    /// (bookkeeping for incremental persistence, not state).
    changed: BTreeSet<K>,
}

impl<K> fmt::Debug for TagDirectory<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            windows,
            index,
            stored,
            changed: _,
        } = self;
        f.debug_struct("TagDirectory")
            .field("conversations", &windows.len())
            .field("expected_tags", &index.len())
            .field("conversations_not_derived", &stored.len())
            .finish()
    }
}

impl<K: Ord + Clone> Default for TagDirectory<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone> TagDirectory<K> {
    /// An empty directory.
    #[must_use]
    pub fn new() -> Self {
        Self {
            windows: BTreeMap::new(),
            index: BTreeMap::new(),
            stored: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }

    /// The conversations whose windows changed (installed, opened in, committed to, dropped,
    /// restored or removed) since the previous call, and forgets them: what a store that
    /// keeps each conversation's [`TagDirectory::stored_windows`] as a record of its own
    /// rewrites (or deletes, where a conversation has none left). Deriving the tags of
    /// restored windows changes nothing.
    pub fn take_changed(&mut self) -> BTreeSet<K> {
        core::mem::take(&mut self.changed)
    }

    /// Adds `window` as the newest epoch of `conversation`, dropping the least recently
    /// used beyond [`MAX_EPOCHS_PER_CONVERSATION`]. Returns `false`, changing nothing, if the conversation
    /// already holds a window of the same epoch (a repeated public-key envelope must not
    /// reset what was received).
    pub fn install(&mut self, conversation: K, window: TagWindow) -> bool {
        self.derive_stored(&conversation);
        let list = self.windows.entry(conversation.clone()).or_default();
        if list.iter().any(|w| w.same_epoch(&window)) {
            return false;
        }
        for tag in window.expected_tags() {
            self.index.insert(*tag, conversation.clone());
        }
        self.changed.insert(conversation.clone());
        list.push(window);
        while list.len() > MAX_EPOCHS_PER_CONVERSATION {
            let old = list.remove(0);
            for tag in old.expected_tags() {
                if self.index.get(tag) == Some(&conversation) {
                    self.index.remove(tag);
                }
            }
        }
        true
    }

    /// Restores a conversation's windows (read back from storage, least recently used
    /// first), replacing any it had. At most [`MAX_EPOCHS_PER_CONVERSATION`] are kept (the
    /// last ones).
    pub fn restore(&mut self, conversation: K, windows: Vec<TagWindow>) {
        self.remove(&conversation);
        for window in windows {
            self.install(conversation.clone(), window);
        }
    }

    /// As [`TagDirectory::restore`], for windows whose tags are not derived yet: they are
    /// derived (all conversations' at once) before the directory's first lookup, or when
    /// this conversation's windows change. Equivalent to `restore` with
    /// [`StoredTagWindow::into_window`] of each, minus the up-front work.
    pub fn restore_stored(&mut self, conversation: K, mut windows: Vec<StoredTagWindow>) {
        self.remove(&conversation);
        // The same epoch twice keeps the first, as `install` does.
        let mut kept: Vec<StoredTagWindow> = Vec::with_capacity(windows.len());
        for window in windows.drain(..) {
            if !kept.iter().any(|w| w.same_epoch(&window)) {
                kept.push(window);
            }
        }
        let excess = kept.len().saturating_sub(MAX_EPOCHS_PER_CONVERSATION);
        kept.drain(..excess);
        if !kept.is_empty() {
            self.changed.insert(conversation.clone());
            self.stored.insert(conversation, kept);
        }
    }

    /// Derives the tags of `conversation`'s stored windows, if it has any.
    fn derive_stored(&mut self, conversation: &K) {
        if let Some(stored) = self.stored.remove(conversation) {
            let was_changed = self.changed.contains(conversation);
            for window in stored {
                self.install(conversation.clone(), window.into_window());
            }
            if !was_changed {
                self.changed.remove(conversation);
            }
        }
    }

    /// Derives the tags of every stored window (before a lookup, which must see them all).
    fn derive_all_stored(&mut self) {
        while let Some((conversation, stored)) = self.stored.pop_first() {
            let was_changed = self.changed.contains(&conversation);
            for window in stored {
                self.install(conversation.clone(), window.into_window());
            }
            if !was_changed {
                self.changed.remove(&conversation);
            }
        }
    }

    /// Forgets a conversation's windows (closed, or its session replaced).
    pub fn remove(&mut self, conversation: &K) {
        if self.stored.remove(conversation).is_some() {
            self.changed.insert(conversation.clone());
        }
        if let Some(list) = self.windows.remove(conversation) {
            self.changed.insert(conversation.clone());
            for window in &list {
                for tag in window.expected_tags() {
                    if self.index.get(tag) == Some(conversation) {
                        self.index.remove(tag);
                    }
                }
            }
        }
    }

    /// A conversation's windows, least recently used first, with their tags (derived now if they were
    /// restored from storage, hence `&mut`).
    pub fn windows(&mut self, conversation: &K) -> &[TagWindow] {
        self.derive_stored(conversation);
        self.windows.get(conversation).map_or(&[], Vec::as_slice)
    }

    /// A conversation's windows in their stored form ([`TagWindow::to_bytes`]), least
    /// recently used first: what its stored record holds.
    #[must_use]
    pub fn stored_windows(&self, conversation: &K) -> Vec<Zeroizing<Vec<u8>>> {
        if let Some(stored) = self.stored.get(conversation) {
            return stored.iter().map(StoredTagWindow::to_bytes).collect();
        }
        self.windows
            .get(conversation)
            .map(|list| list.iter().map(TagWindow::to_bytes).collect())
            .unwrap_or_default()
    }

    /// Which conversation expects this envelope's tag, without any cryptography. `None` for
    /// anything that is not a symmetric envelope or whose tag nobody expects. (Derives the
    /// tags of windows restored from storage first, hence `&mut`.)
    pub fn lookup(&mut self, envelope: &[u8]) -> Option<&K> {
        self.derive_all_stored();
        let tag = EnvelopeTag::of_envelope(envelope)?;
        self.index.get(&tag)
    }

    /// Expected tags over all conversations (derives the tags of stored windows first).
    pub fn expected_tag_count(&mut self) -> usize {
        self.derive_all_stored();
        self.index.len()
    }

    /// Finds the conversation by the envelope's tag and opens it in that conversation's
    /// window (see [`TagWindow::open`] for the checks). Returns the conversation and the
    /// payload; commits only on success.
    pub fn open(
        &mut self,
        now: Timestamp,
        roots: &TrustRoots,
        envelope: &[u8],
    ) -> Result<(K, Zeroizing<Vec<u8>>), SymmetricOpenError> {
        self.derive_all_stored();
        let parsed = SymmetricEnvelope::parse(envelope)?;
        let conversation = self
            .index
            .get(&parsed.tag)
            .cloned()
            .ok_or(SymmetricOpenError::UnknownTag)?;
        let list = self
            .windows
            .get_mut(&conversation)
            .ok_or(SymmetricOpenError::UnknownTag)?;
        let position = list
            .iter()
            .rposition(|w| w.expects(&parsed.tag))
            .ok_or(SymmetricOpenError::UnknownTag)?;
        let window = list
            .get_mut(position)
            .ok_or(SymmetricOpenError::UnknownTag)?;
        let (payload, change) = window.open_parsed(now, roots, &parsed)?;
        move_to_newest(list, position);
        self.changed.insert(conversation.clone());
        self.apply(&conversation, change);
        Ok((conversation, payload))
    }

    /// As [`TagDirectory::open`], but records nothing: returns the conversation, the payload
    /// and a [`StagedEnvelope`] to pass to [`TagDirectory::commit`] once the caller's own
    /// checks on the payload succeeded. Until then what the directory accepts is unchanged
    /// (it only derives the tags of windows restored from storage, hence `&mut`).
    pub fn open_staged(
        &mut self,
        now: Timestamp,
        roots: &TrustRoots,
        envelope: &[u8],
    ) -> Result<(K, Zeroizing<Vec<u8>>, StagedEnvelope), SymmetricOpenError> {
        self.derive_all_stored();
        let parsed = SymmetricEnvelope::parse(envelope)?;
        let conversation = self
            .index
            .get(&parsed.tag)
            .ok_or(SymmetricOpenError::UnknownTag)?;
        let window = self
            .windows
            .get(conversation)
            .and_then(|list| list.iter().rev().find(|w| w.expects(&parsed.tag)))
            .ok_or(SymmetricOpenError::UnknownTag)?;
        let (index, payload) = window.check_and_decrypt(now, roots, &parsed)?;
        Ok((
            conversation.clone(),
            payload,
            StagedEnvelope {
                tag: parsed.tag,
                index,
            },
        ))
    }

    /// Records an envelope opened with [`TagDirectory::open_staged`] in `conversation`'s
    /// window, exactly as [`TagDirectory::open`] would have. Returns `false`, changing
    /// nothing, if no window of the conversation still expects it (committed already, or the
    /// conversation's windows were replaced or removed meanwhile).
    pub fn commit(&mut self, conversation: &K, staged: &StagedEnvelope) -> bool {
        self.derive_stored(conversation);
        let Some(list) = self.windows.get_mut(conversation) else {
            return false;
        };
        let Some(position) = list.iter().rposition(|w| w.expects(&staged.tag)) else {
            return false;
        };
        let Some(change) = list
            .get_mut(position)
            .and_then(|window| window.commit_staged(staged))
        else {
            return false;
        };
        move_to_newest(list, position);
        self.changed.insert(conversation.clone());
        self.apply(conversation, change);
        true
    }

    /// Moves the index after a window of `conversation` changed its expected tags.
    fn apply(&mut self, conversation: &K, change: TagChange) {
        for tag in change.removed {
            if self.index.get(&tag) == Some(conversation) {
                self.index.remove(&tag);
            }
        }
        for tag in change.added {
            self.index.insert(tag, conversation.clone());
        }
    }
}

/// Makes the window at `position` the newest of its conversation's list: the one an
/// envelope just opened in is the epoch its sender uses now, and must be the last to go
/// when later public-key envelopes install more windows ([`TagDirectory::install`] drops
/// the front of the list).
fn move_to_newest(list: &mut [TagWindow], position: usize) {
    if let Some(from_it) = list.get_mut(position..) {
        from_it.rotate_left(1);
    }
}

#[cfg(test)]
mod bitmap_tests {
    #![allow(clippy::unwrap_used)]

    use super::{BITMAP_WORDS, any_bit_from, bit, shifted};
    use proptest::prelude::*;

    /// `shifted` computed one bit at a time: bit `k` moves to `k + shift`, what passes the
    /// top drops out.
    fn shifted_bit_by_bit(words: &[u64; BITMAP_WORDS], shift: u64) -> [u64; BITMAP_WORDS] {
        let bits = BITMAP_WORDS as u64 * 64;
        let mut out = [0u64; BITMAP_WORDS];
        for k in 0..bits {
            let Some(to) = k.checked_add(shift).filter(|to| *to < bits) else {
                continue;
            };
            if bit(words, k) {
                out[(to / 64) as usize] |= 1u64 << (to % 64);
            }
        }
        out
    }

    /// Bitmaps with empty, full-random and single-bit words.
    fn bitmaps() -> impl Strategy<Value = [u64; BITMAP_WORDS]> {
        proptest::array::uniform16(prop_oneof![
            Just(0u64),
            any::<u64>(),
            (0u32..64).prop_map(|b| 1u64 << b),
        ])
    }

    proptest! {
        /// The word-at-a-time check answers exactly what testing every bit answers, for
        /// sparse and dense bitmaps and every start (inside, at the edges of and past the
        /// bitmap).
        #[test]
        fn any_bit_from_matches_testing_each_bit(
            words in bitmaps(),
            from in prop_oneof![0u64..1100, Just(u64::MAX)],
        ) {
            let naive = (from..(BITMAP_WORDS as u64 * 64)).any(|k| bit(&words, k));
            prop_assert_eq!(any_bit_from(&words, from), naive);
        }

        /// The word-at-a-time shift moves every bit as shifting one bit at a time does, for
        /// every shift: within a word, across words, by whole words (a multiple of 64, which
        /// a window reaches only if `TAG_WINDOW_AHEAD` grows past 64), and past the bitmap.
        #[test]
        fn shifted_matches_moving_each_bit(
            words in bitmaps(),
            shift in prop_oneof![
                0u64..1100,
                (0u64..18).prop_map(|w| w * 64),
                Just(u64::MAX),
            ],
        ) {
            prop_assert_eq!(shifted(&words, shift), shifted_bit_by_bit(&words, shift));
        }
    }

    #[test]
    fn shifted_by_whole_words_moves_words() {
        let mut words = [0u64; BITMAP_WORDS];
        words[0] = 0x8000_0000_0000_0001;
        words[1] = 0x0123_4567_89ab_cdef;
        let by_64 = shifted(&words, 64);
        assert_eq!(by_64[0], 0);
        assert_eq!(by_64[1], 0x8000_0000_0000_0001);
        assert_eq!(by_64[2], 0x0123_4567_89ab_cdef);
        let by_128 = shifted(&words, 128);
        assert_eq!(&by_128[..2], &[0, 0]);
        assert_eq!(by_128[2], 0x8000_0000_0000_0001);
        assert_eq!(shifted(&words, 0), words);
    }

    #[test]
    fn any_bit_from_at_the_word_edges() {
        let mut words = [0u64; BITMAP_WORDS];
        words[1] = 1; // bit 64
        assert!(any_bit_from(&words, 0));
        assert!(any_bit_from(&words, 64));
        assert!(!any_bit_from(&words, 65));
        words[0] = 1 << 63; // bit 63
        words[1] = 0;
        assert!(any_bit_from(&words, 63));
        assert!(!any_bit_from(&words, 64));
    }
}
