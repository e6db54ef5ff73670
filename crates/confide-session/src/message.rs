//! Session wire messages.
//!
//! ```text
//! SessionMessage = version:u8 (=1) || kind:u8 || body
//!   kind 0x01 Ratchet        : RatchetBody
//!   kind 0x02 PreKey         : PreKeyEnvelope || RatchetBody
//!   kind 0x03 RatchetForked  : ForkedRatchetBody
//!   kind 0x04 PreKeyForked   : PreKeyEnvelope || ForkedRatchetBody
//! PreKeyEnvelope = identity[128] || base_key[32] || signed_prekey_id:u32
//!                  || kem_prekey_id:u32 || kem_ciphertext[1088]
//!                  || has_one_time:u8 (0|1) || [one_time_prekey_id:u32]
//! RatchetBody = ratchet_key[32] || previous_chain_len:u32 || index:u32
//!               || ciphertext_len:u32 || ciphertext[ciphertext_len]
//! ForkedRatchetBody = ratchet_key[32] || previous_chain_len:u32 || index:u32
//!               || flags:u8 (bit 0 fork, bit 1 previous fork; at least one, no other bits)
//!               || [ForkRecord] || [ForkRecord of the previous chain]
//!               || ciphertext_len:u32 || ciphertext[ciphertext_len]
//! ForkRecord  = base_index:u32 || fork_nonce[32] || start:u32
//! ```
//!
//! All integers are big-endian. The AEAD associated data of a message is the session's
//! associated data followed by the *ratchet header*: for kinds 0x01/0x02 the 42 bytes
//! `version || 0x01 || ratchet_key || previous_chain_len || index`; for kinds 0x03/0x04
//! `version || 0x03 || ratchet_key || previous_chain_len || index || flags || [ForkRecord]
//! || [ForkRecord]` (83 or 123 bytes). The header is the same whether the body travels alone or
//! inside a prekey message, and the fork records are authenticated with the message.
//!
//! A message carries a fork record when its sending chain was forked (see the ratchet module:
//! a sender whose state was restored from storage continues its chain on a fresh branch), and
//! a previous-chain fork record when the chain *before* its current one ended on a fork, so
//! that a receiver who never saw a message of that fork can still store its keys.

use confide_crypto::{
    codec::{DecodeError, Reader, Writer},
    identity::IdentityPublicKey,
    kem::{KEM_CIPHERTEXT_LEN, KemCiphertext},
    x25519::X25519PublicKey,
};

use crate::consts::{MAX_CIPHERTEXT_LEN, PROTOCOL_VERSION};

/// Kind byte of a ratchet message.
pub const KIND_RATCHET: u8 = 0x01;
/// Kind byte of a prekey (session-starting) message.
pub const KIND_PREKEY: u8 = 0x02;
/// Kind byte of a ratchet message that carries fork records.
pub const KIND_RATCHET_FORKED: u8 = 0x03;
/// Kind byte of a prekey message whose ratchet body carries fork records.
pub const KIND_PREKEY_FORKED: u8 = 0x04;
/// Length of the ratchet header that is authenticated as associated data (a message without
/// fork records; each fork record adds [`FORK_RECORD_LEN`], and the flags byte one more).
pub const RATCHET_HEADER_LEN: usize = 1 + 1 + 32 + 4 + 4;
/// Length of an encoded [`ForkRecord`].
pub const FORK_RECORD_LEN: usize = 4 + 32 + 4;
const FLAG_FORK: u8 = 0x01;
const FLAG_PREVIOUS_FORK: u8 = 0x02;

/// Names the branch a forked sending chain continues on: the chain was forked at position
/// `base_index` of its original branch, and this branch (chosen by the random `nonce`) starts at
/// position `start`. Public: it travels in the clear, authenticated as part of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForkRecord {
    base_index: u32,
    nonce: [u8; 32],
    start: u32,
}

impl ForkRecord {
    pub(crate) fn new(base_index: u32, nonce: [u8; 32], start: u32) -> Self {
        Self {
            base_index,
            nonce,
            start,
        }
    }

    /// Position of the original branch at which the chain was forked.
    #[must_use]
    pub fn base_index(&self) -> u32 {
        self.base_index
    }

    /// The random value that names this branch.
    #[must_use]
    pub fn nonce(&self) -> [u8; 32] {
        self.nonce
    }

    /// First position used on this branch.
    #[must_use]
    pub fn start(&self) -> u32 {
        self.start
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.base_index).bytes(&self.nonce).u32(self.start);
    }

    /// Reads a record and checks `base_index <= start`.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let base_index = r.u32()?;
        let nonce = r.array()?;
        let start = r.u32()?;
        if base_index > start {
            return Err(DecodeError::InvalidValue {
                field: "fork record start",
            });
        }
        Ok(Self {
            base_index,
            nonce,
            start,
        })
    }
}
/// Longest prekey header (identity, base key, two ids, KEM ciphertext, flag, one-time id):
/// the capacity its writer starts with. Only a capacity (no output depends on it), so it is a
/// literal checked at compile time against the fields' sizes rather than a sum a mutation
/// test could change without any test being able to tell.
const PREKEY_HEADER_MAX_LEN: usize = 1_261;
const _: () = assert!(PREKEY_HEADER_MAX_LEN == 128 + 32 + 4 + 4 + KEM_CIPHERTEXT_LEN + 1 + 4);
/// Smallest ciphertext: the minimum padded plaintext plus the tag.
pub const MIN_CIPHERTEXT_LEN: usize =
    confide_crypto::padding::MIN_PADDED_LEN + confide_crypto::aead::TAG_LEN;

/// A message within an established session.
#[derive(Clone, PartialEq, Eq)]
pub struct RatchetMessage {
    ratchet_key: X25519PublicKey,
    previous_chain_len: u32,
    index: u32,
    fork: Option<ForkRecord>,
    previous_fork: Option<ForkRecord>,
    ciphertext: Vec<u8>,
}

impl core::fmt::Debug for RatchetMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            ratchet_key: _,
            previous_chain_len,
            index,
            fork,
            previous_fork,
            ciphertext,
        } = self;
        f.debug_struct("RatchetMessage")
            .field("previous_chain_len", previous_chain_len)
            .field("index", index)
            .field("forked", &fork.is_some())
            .field("previous_forked", &previous_fork.is_some())
            .field("ciphertext_len", &ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl RatchetMessage {
    pub(crate) fn new(
        ratchet_key: X25519PublicKey,
        previous_chain_len: u32,
        index: u32,
        fork: Option<ForkRecord>,
        previous_fork: Option<ForkRecord>,
    ) -> Self {
        Self {
            ratchet_key,
            previous_chain_len,
            index,
            fork,
            previous_fork,
            ciphertext: Vec::new(),
        }
    }

    pub(crate) fn with_ciphertext(mut self, ciphertext: Vec<u8>) -> Self {
        self.ciphertext = ciphertext;
        self
    }

    /// The sender's current ratchet public key.
    #[must_use]
    pub fn ratchet_key(&self) -> X25519PublicKey {
        self.ratchet_key
    }

    /// Number of messages in the sender's previous sending chain.
    #[must_use]
    pub fn previous_chain_len(&self) -> u32 {
        self.previous_chain_len
    }

    /// Position of this message in its chain.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The fork record of the branch this message's chain continues on, if it was forked.
    #[must_use]
    pub fn fork(&self) -> Option<&ForkRecord> {
        self.fork.as_ref()
    }

    /// The fork record on which the sender's previous chain ended, if it was forked.
    #[must_use]
    pub fn previous_fork(&self) -> Option<&ForkRecord> {
        self.previous_fork.as_ref()
    }

    /// Whether the message carries any fork record (and so uses kind 0x03 or 0x04).
    #[must_use]
    pub fn is_forked(&self) -> bool {
        self.fork.is_some() || self.previous_fork.is_some()
    }

    /// Encrypted, padded plaintext and tag.
    #[must_use]
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    fn flags(&self) -> u8 {
        (if self.fork.is_some() { FLAG_FORK } else { 0 })
            | (if self.previous_fork.is_some() {
                FLAG_PREVIOUS_FORK
            } else {
                0
            })
    }

    /// The header that is authenticated as associated data: [`RATCHET_HEADER_LEN`] bytes
    /// without fork records, `RATCHET_HEADER_LEN + 1 + FORK_RECORD_LEN * records` with them.
    #[must_use]
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(RATCHET_HEADER_LEN + 1 + 2 * FORK_RECORD_LEN);
        w.u8(PROTOCOL_VERSION)
            .u8(if self.is_forked() {
                KIND_RATCHET_FORKED
            } else {
                KIND_RATCHET
            })
            .bytes(self.ratchet_key.as_bytes())
            .u32(self.previous_chain_len)
            .u32(self.index);
        self.write_fork_records(&mut w);
        w.into_vec()
    }

    fn write_fork_records(&self, w: &mut Writer) {
        if self.is_forked() {
            w.u8(self.flags());
            if let Some(f) = &self.fork {
                f.write(w);
            }
            if let Some(f) = &self.previous_fork {
                f.write(w);
            }
        }
    }

    fn write_body(&self, w: &mut Writer) {
        w.bytes(self.ratchet_key.as_bytes())
            .u32(self.previous_chain_len)
            .u32(self.index);
        self.write_fork_records(w);
        // Ciphertexts are produced by us and bounded by MAX_CIPHERTEXT_LEN.
        let _ = w.var32("ciphertext", MAX_CIPHERTEXT_LEN, &self.ciphertext);
    }

    /// Reads a body; `forked` selects the layout with the flags byte and fork records.
    fn read_body(r: &mut Reader<'_>, forked: bool) -> Result<Self, DecodeError> {
        let ratchet_key =
            X25519PublicKey::from_canonical_bytes(r.array()?).ok_or(DecodeError::InvalidValue {
                field: "x25519 public key",
            })?;
        let previous_chain_len = r.u32()?;
        let index = r.u32()?;
        let (mut fork, mut previous_fork) = (None, None);
        if forked {
            let flags = r.u8()?;
            if flags == 0 || flags & !(FLAG_FORK | FLAG_PREVIOUS_FORK) != 0 {
                return Err(DecodeError::InvalidValue {
                    field: "fork flags",
                });
            }
            if flags & FLAG_FORK != 0 {
                let f = ForkRecord::read(r)?;
                // The branch starts at or before the message's position.
                if f.start > index {
                    return Err(DecodeError::InvalidValue {
                        field: "fork record start",
                    });
                }
                fork = Some(f);
            }
            if flags & FLAG_PREVIOUS_FORK != 0 {
                let f = ForkRecord::read(r)?;
                // A fork is taken only when a message is sent on it: the previous chain
                // used its start position, so its length exceeds the start.
                if f.start >= previous_chain_len {
                    return Err(DecodeError::InvalidValue {
                        field: "previous fork record start",
                    });
                }
                previous_fork = Some(f);
            }
        }
        let ciphertext = r.var32("ciphertext", MAX_CIPHERTEXT_LEN)?;
        if ciphertext.len() < MIN_CIPHERTEXT_LEN {
            return Err(DecodeError::InvalidValue {
                field: "ciphertext length",
            });
        }
        Ok(Self {
            ratchet_key,
            previous_chain_len,
            index,
            fork,
            previous_fork,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

/// The first messages of a session, until the initiator hears back.
#[derive(Clone, PartialEq, Eq)]
pub struct PreKeyMessage {
    pub(crate) initiator: IdentityPublicKey,
    pub(crate) base_key: X25519PublicKey,
    pub(crate) signed_prekey_id: u32,
    pub(crate) kem_prekey_id: u32,
    pub(crate) kem_ciphertext: KemCiphertext,
    pub(crate) one_time_prekey_id: Option<u32>,
    pub(crate) message: RatchetMessage,
}

impl core::fmt::Debug for PreKeyMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The initiator's identity and base key would link the message to a person.
        let Self {
            initiator: _,
            base_key: _,
            signed_prekey_id,
            kem_prekey_id,
            kem_ciphertext: _,
            one_time_prekey_id,
            message,
        } = self;
        f.debug_struct("PreKeyMessage")
            .field("signed_prekey_id", signed_prekey_id)
            .field("kem_prekey_id", kem_prekey_id)
            .field("one_time_prekey_id", one_time_prekey_id)
            .field("message", message)
            .finish_non_exhaustive()
    }
}

/// Length of the prekey header digest a responder session keeps.
pub const PREKEY_HEADER_DIGEST_LEN: usize = 32;

impl PreKeyMessage {
    /// Writes the prekey header: every field after the kind byte and before the ratchet body
    /// (identity with its binding signature, base key, signed prekey id, KEM prekey id, KEM
    /// ciphertext, one-time flag and id), exactly as on the wire.
    fn write_header(&self, w: &mut Writer) {
        w.bytes(&self.initiator.to_bytes())
            .bytes(self.base_key.as_bytes())
            .u32(self.signed_prekey_id)
            .u32(self.kem_prekey_id)
            .bytes(self.kem_ciphertext.as_bytes());
        match self.one_time_prekey_id {
            None => {
                w.u8(0);
            }
            Some(id) => {
                w.u8(1).u32(id);
            }
        }
    }

    /// `SHA-256("Confide_v1_PreKeyHeader" || version || header)`: what a responder session
    /// remembers of the message that created it, so that a repeat is accepted only if every
    /// header field is the same (the kind byte, `0x02` or `0x04`, follows from the ratchet
    /// header, which the message's AEAD authenticates).
    #[must_use]
    pub fn header_digest(&self) -> [u8; PREKEY_HEADER_DIGEST_LEN] {
        let mut w = Writer::with_capacity(PREKEY_HEADER_MAX_LEN);
        self.write_header(&mut w);
        confide_crypto::kdf::sha256(&[
            confide_crypto::kdf::labels::PREKEY_HEADER,
            &[PROTOCOL_VERSION],
            w.as_slice(),
        ])
    }

    /// The initiator's identity (not yet trusted: the app decides).
    #[must_use]
    pub fn initiator_identity(&self) -> &IdentityPublicKey {
        &self.initiator
    }

    /// The initiator's ephemeral (base) key, which names the session being started.
    #[must_use]
    pub fn base_key(&self) -> X25519PublicKey {
        self.base_key
    }

    /// The embedded ratchet message.
    #[must_use]
    pub fn message(&self) -> &RatchetMessage {
        &self.message
    }
}

/// Any message a session sends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionMessage {
    /// A message in an established session.
    Ratchet(RatchetMessage),
    /// A message that can also start the session.
    PreKey(Box<PreKeyMessage>),
}

impl SessionMessage {
    /// Encodes the message.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.encoded_len_hint());
        w.u8(PROTOCOL_VERSION);
        match self {
            Self::Ratchet(m) => {
                w.u8(if m.is_forked() {
                    KIND_RATCHET_FORKED
                } else {
                    KIND_RATCHET
                });
                m.write_body(&mut w);
            }
            Self::PreKey(p) => {
                w.u8(if p.message.is_forked() {
                    KIND_PREKEY_FORKED
                } else {
                    KIND_PREKEY
                })
                .bytes(&p.initiator.to_bytes())
                .bytes(p.base_key.as_bytes())
                .u32(p.signed_prekey_id)
                .u32(p.kem_prekey_id)
                .bytes(p.kem_ciphertext.as_bytes());
                match p.one_time_prekey_id {
                    None => {
                        w.u8(0);
                    }
                    Some(id) => {
                        w.u8(1).u32(id);
                    }
                }
                p.message.write_body(&mut w);
            }
        }
        w.into_vec()
    }

    /// The length of the message's AEAD ciphertext (padded plaintext and tag), which is
    /// always the last part of [`SessionMessage::to_bytes`] (`docs/spec.md` §6). A sealed
    /// envelope may carry these bytes without encrypting them again
    /// (`docs/sealed-sender.md` §9.3).
    #[must_use]
    pub fn ciphertext_len(&self) -> usize {
        match self {
            Self::Ratchet(m) => m.ciphertext.len(),
            Self::PreKey(p) => p.message.ciphertext.len(),
        }
    }

    fn encoded_len_hint(&self) -> usize {
        let ct = match self {
            Self::Ratchet(m) => m.ciphertext.len(),
            Self::PreKey(p) => p.message.ciphertext.len().saturating_add(1300),
        };
        ct.saturating_add(64 + 2 * FORK_RECORD_LEN)
    }

    /// Decodes a message strictly (version, kind, lengths, no trailing bytes). The initiator
    /// identity inside a prekey message is checked for a valid self-signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "session message",
                found: version,
            });
        }
        let out = match r.u8()? {
            KIND_RATCHET => Self::Ratchet(RatchetMessage::read_body(&mut r, false)?),
            KIND_RATCHET_FORKED => Self::Ratchet(RatchetMessage::read_body(&mut r, true)?),
            kind @ (KIND_PREKEY | KIND_PREKEY_FORKED) => {
                let initiator = IdentityPublicKey::read(&mut r)?;
                let base_key = X25519PublicKey::from_canonical_bytes(r.array()?).ok_or(
                    DecodeError::InvalidValue {
                        field: "x25519 public key",
                    },
                )?;
                let signed_prekey_id = r.u32()?;
                let kem_prekey_id = r.u32()?;
                let kem_ciphertext = KemCiphertext::from_bytes(r.bytes(KEM_CIPHERTEXT_LEN)?)
                    .ok_or(DecodeError::InvalidValue {
                        field: "kem ciphertext",
                    })?;
                let one_time_prekey_id = if r.bool("one-time prekey flag")? {
                    Some(r.u32()?)
                } else {
                    None
                };
                let message = RatchetMessage::read_body(&mut r, kind == KIND_PREKEY_FORKED)?;
                Self::PreKey(Box::new(PreKeyMessage {
                    initiator,
                    base_key,
                    signed_prekey_id,
                    kem_prekey_id,
                    kem_ciphertext,
                    one_time_prekey_id,
                    message,
                }))
            }
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "message kind",
                });
            }
        };
        r.finish()?;
        Ok(out)
    }
}
