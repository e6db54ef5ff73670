//! Session wire messages.
//!
//! ```text
//! SessionMessage = version:u8 (=1) || kind:u8 || body
//!   kind 0x01 Ratchet : RatchetBody
//!   kind 0x02 PreKey  : identity[128] || base_key[32] || signed_prekey_id:u32
//!                       || kem_prekey_id:u32 || kem_ciphertext[1088]
//!                       || has_one_time:u8 (0|1) || [one_time_prekey_id:u32] || RatchetBody
//! RatchetBody = ratchet_key[32] || previous_chain_len:u32 || index:u32
//!               || ciphertext_len:u32 || ciphertext[ciphertext_len]
//! ```
//!
//! All integers are big-endian. The AEAD associated data of a message is the session's
//! associated data followed by the 42-byte *ratchet header*
//! `version || 0x01 || ratchet_key || previous_chain_len || index`, which is the same whether
//! the body travels alone or inside a prekey message.

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
/// Length of the ratchet header that is authenticated as associated data.
pub const RATCHET_HEADER_LEN: usize = 1 + 1 + 32 + 4 + 4;
/// Smallest ciphertext: the minimum padded plaintext plus the tag.
pub const MIN_CIPHERTEXT_LEN: usize =
    confide_crypto::padding::MIN_PADDED_LEN + confide_crypto::aead::TAG_LEN;

/// A message within an established session.
#[derive(Clone, PartialEq, Eq)]
pub struct RatchetMessage {
    ratchet_key: X25519PublicKey,
    previous_chain_len: u32,
    index: u32,
    ciphertext: Vec<u8>,
}

impl core::fmt::Debug for RatchetMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RatchetMessage")
            .field("previous_chain_len", &self.previous_chain_len)
            .field("index", &self.index)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl RatchetMessage {
    pub(crate) fn new(ratchet_key: X25519PublicKey, previous_chain_len: u32, index: u32) -> Self {
        Self {
            ratchet_key,
            previous_chain_len,
            index,
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

    /// Encrypted, padded plaintext and tag.
    #[must_use]
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The 42-byte header that is authenticated as associated data.
    #[must_use]
    pub fn header_bytes(&self) -> [u8; RATCHET_HEADER_LEN] {
        let mut out = [0u8; RATCHET_HEADER_LEN];
        let mut w = Writer::with_capacity(RATCHET_HEADER_LEN);
        w.u8(PROTOCOL_VERSION)
            .u8(KIND_RATCHET)
            .bytes(self.ratchet_key.as_bytes())
            .u32(self.previous_chain_len)
            .u32(self.index);
        out.copy_from_slice(w.as_slice());
        out
    }

    fn write_body(&self, w: &mut Writer) {
        w.bytes(self.ratchet_key.as_bytes())
            .u32(self.previous_chain_len)
            .u32(self.index);
        // Ciphertexts are produced by us and bounded by MAX_CIPHERTEXT_LEN.
        let _ = w.var32("ciphertext", MAX_CIPHERTEXT_LEN, &self.ciphertext);
    }

    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ratchet_key = X25519PublicKey::from_bytes(r.array()?);
        let previous_chain_len = r.u32()?;
        let index = r.u32()?;
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
        f.debug_struct("PreKeyMessage")
            .field("signed_prekey_id", &self.signed_prekey_id)
            .field("kem_prekey_id", &self.kem_prekey_id)
            .field("one_time_prekey_id", &self.one_time_prekey_id)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl PreKeyMessage {
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
                w.u8(KIND_RATCHET);
                m.write_body(&mut w);
            }
            Self::PreKey(p) => {
                w.u8(KIND_PREKEY)
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

    fn encoded_len_hint(&self) -> usize {
        let ct = match self {
            Self::Ratchet(m) => m.ciphertext.len(),
            Self::PreKey(p) => p.message.ciphertext.len().saturating_add(1300),
        };
        ct.saturating_add(64)
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
            KIND_RATCHET => Self::Ratchet(RatchetMessage::read_body(&mut r)?),
            KIND_PREKEY => {
                let initiator = IdentityPublicKey::read(&mut r)?;
                let base_key = X25519PublicKey::from_bytes(r.array()?);
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
                let message = RatchetMessage::read_body(&mut r)?;
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
