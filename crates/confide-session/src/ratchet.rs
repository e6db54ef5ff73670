//! The Double Ratchet (Signal specification, revision 4), with a lazy sending step.
//!
//! * `KDF_RK(rk, dh) = HKDF-SHA256(salt = rk, ikm = dh, info = ROOT_STEP)` → 64 bytes:
//!   new root key (first 32) and new chain key (last 32).
//! * `KDF_CK(ck)`: message key `mk = HMAC-SHA256(ck, 0x01)`, next chain key
//!   `ck' = HMAC-SHA256(ck, 0x02)`.
//! * Each message key is a single-use ChaCha20-Poly1305 key; the nonce is 12 zero bytes.
//!
//! The DH ratchet step is split in two, as in vodozemac: receiving a new remote ratchet key
//! derives the receiving chain at once (no randomness needed, so decryption is a pure,
//! transactional function of state and message); the next *send* generates our new ratchet
//! key pair and derives the sending chain. The root-key sequence is identical to the
//! specification's.

use std::collections::VecDeque;

use confide_crypto::{
    CryptoRng, Timestamp, aead,
    codec::{DecodeError, Reader, Writer},
    define_secret,
    kdf::{hkdf_sha256, hmac_sha256, labels},
    padding,
    secret::{AeadKey, SharedSecret},
    x25519::{X25519KeyPair, X25519PublicKey, X25519Secret},
};
use zeroize::Zeroizing;

use crate::{
    consts::{MAX_FORWARD_JUMP, MAX_REMEMBERED_RATCHET_KEYS, MAX_SKIPPED_KEYS},
    error::{DecryptError, EncryptError},
    message::RatchetMessage,
    state::Provenance,
};

define_secret!(
    /// The Double Ratchet root key.
    pub(crate) struct RootKey(32);
);
define_secret!(
    /// A sending or receiving chain key.
    pub(crate) struct ChainKey(32);
);
define_secret!(
    /// A single-use message key.
    pub(crate) struct MessageKey(32);
);

impl RootKey {
    /// `KDF_RK`: one root step with a fresh DH output.
    fn step(&self, dh: &SharedSecret) -> (RootKey, ChainKey) {
        let mut okm = Zeroizing::new([0u8; 64]);
        // 64 bytes is far below HKDF-SHA256's 8,160-byte limit, so this cannot fail.
        let _ = hkdf_sha256(
            Some(self.expose()),
            dh.expose(),
            labels::ROOT_STEP,
            &mut *okm,
        );
        let (rk, ck) = okm.split_at(32);
        (
            RootKey::from_slice(rk).unwrap_or_else(|| RootKey::new([0; 32])),
            ChainKey::from_slice(ck).unwrap_or_else(|| ChainKey::new([0; 32])),
        )
    }
}

impl ChainKey {
    /// `KDF_CK`: the message key at this position and the next chain key.
    fn step(&self) -> (MessageKey, ChainKey) {
        (
            MessageKey::new(hmac_sha256(self.expose(), labels::MESSAGE_KEY_SEED)),
            ChainKey::new(hmac_sha256(self.expose(), labels::CHAIN_KEY_SEED)),
        )
    }
}

const ZERO_NONCE: [u8; aead::NONCE_LEN] = [0; aead::NONCE_LEN];

impl MessageKey {
    fn aead_key(&self) -> AeadKey {
        AeadKey::new(*self.expose())
    }
}

#[derive(Clone)]
struct SendingChain {
    ratchet: X25519KeyPair,
    chain: ChainKey,
    index: u32,
}

#[derive(Clone)]
struct ReceivingChain {
    their: X25519PublicKey,
    chain: ChainKey,
    index: u32,
}

#[derive(Clone)]
struct SkippedKey {
    their: X25519PublicKey,
    index: u32,
    key: MessageKey,
    stored_at: Timestamp,
}

/// The ratchet state of one session.
#[derive(Clone)]
pub(crate) struct DoubleRatchet {
    root: RootKey,
    /// Our current ratchet key pair. The sending chain, when present, belongs to it.
    ours: X25519KeyPair,
    /// `None` after a new remote ratchet key arrived: the next send performs our DH step.
    sending: Option<SendingChain>,
    /// Messages sent in our previous sending chain (`PN` in the specification).
    previous_sending_len: u32,
    receiving: Option<ReceivingChain>,
    /// Remote ratchet keys we have moved past, newest last.
    previous_theirs: VecDeque<X25519PublicKey>,
    /// Skipped message keys, oldest first.
    skipped: VecDeque<SkippedKey>,
}

/// What a successful encryption produced.
pub(crate) struct Encrypted {
    pub(crate) message: RatchetMessage,
}

/// Changes a decryption would make, applied only once authentication succeeded.
struct Staged {
    root: Option<RootKey>,
    receiving: ReceivingChain,
    new_skipped: Vec<SkippedKey>,
    /// Remote key we moved past, if this message started a new receiving chain.
    retired_their: Option<X25519PublicKey>,
    new_chain: bool,
}

impl DoubleRatchet {
    /// Alice's start: she knows Bob's signed prekey, which serves as his first ratchet key.
    pub(crate) fn initiator<R: CryptoRng + ?Sized>(
        rng: &mut R,
        shared: RootKey,
        their_ratchet: X25519PublicKey,
    ) -> Result<Self, EncryptError> {
        let ours = X25519KeyPair::generate(rng);
        let dh = ours
            .agree(&their_ratchet)
            .map_err(|_| EncryptError::Agreement)?;
        let (root, chain) = shared.step(&dh);
        Ok(Self {
            root,
            ours: ours.clone(),
            sending: Some(SendingChain {
                ratchet: ours,
                chain,
                index: 0,
            }),
            previous_sending_len: 0,
            receiving: Some(ReceivingChain {
                // Bob never sends on his signed prekey; a receiving chain for it exists only
                // so that Alice recognises it. Its chain key is unusable (all zero) and no
                // message can authenticate under it: Bob's first message uses a new key.
                their: their_ratchet,
                chain: ChainKey::new([0; 32]),
                index: u32::MAX,
            }),
            previous_theirs: VecDeque::new(),
            skipped: VecDeque::new(),
        })
    }

    /// Bob's start: his signed prekey is his first ratchet key.
    pub(crate) fn responder(shared: RootKey, signed_prekey: X25519KeyPair) -> Self {
        Self {
            root: shared,
            ours: signed_prekey,
            sending: None,
            previous_sending_len: 0,
            receiving: None,
            previous_theirs: VecDeque::new(),
            skipped: VecDeque::new(),
        }
    }

    /// Whether we have sent on the current sending chain's key (used for tests and metrics).
    pub(crate) fn our_ratchet_key(&self) -> X25519PublicKey {
        self.ours.public_key()
    }

    /// Number of stored skipped message keys.
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// Encrypts one padded plaintext.
    pub(crate) fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        associated_data: &[u8],
        plaintext: &[u8],
    ) -> Result<Encrypted, EncryptError> {
        let mut padded = padding::pad(plaintext).map_err(|_| EncryptError::TooLong {
            len: plaintext.len(),
            max: padding::MAX_PLAINTEXT_LEN,
        })?;
        // Stage the DH step (if due) and the chain step; commit after.
        let (root, mut chain) = match &self.sending {
            Some(s) => (None, s.clone()),
            None => {
                let their = self
                    .receiving
                    .as_ref()
                    .map(|r| r.their)
                    .ok_or(EncryptError::Agreement)?;
                let ours = X25519KeyPair::generate(rng);
                let dh = ours.agree(&their).map_err(|_| EncryptError::Agreement)?;
                let (root, chain) = self.root.step(&dh);
                (
                    Some(root),
                    SendingChain {
                        ratchet: ours,
                        chain,
                        index: 0,
                    },
                )
            }
        };
        let index = chain.index;
        let next_index = index.checked_add(1).ok_or(EncryptError::ChainExhausted)?;
        let (mk, next_chain) = chain.chain.step();
        let message =
            RatchetMessage::new(chain.ratchet.public_key(), self.previous_sending_len, index);
        let header = message.header_bytes();
        aead::seal_in_place(
            &mk.aead_key(),
            &ZERO_NONCE,
            &[associated_data, &header].concat(),
            &mut padded,
        );
        // Commit.
        if let Some(root) = root {
            self.root = root;
            self.ours = chain.ratchet.clone();
        }
        chain.chain = next_chain;
        chain.index = next_index;
        self.sending = Some(chain);
        Ok(Encrypted {
            message: message.with_ciphertext(padded),
        })
    }

    /// Decrypts one message without changing anything unless it authenticates.
    pub(crate) fn decrypt(
        &mut self,
        associated_data: &[u8],
        message: &RatchetMessage,
        now: Timestamp,
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let aad = [associated_data, &message.header_bytes()].concat();
        let their = message.ratchet_key();
        let index = message.index();

        // 1. A stored skipped key.
        if let Some(pos) = self
            .skipped
            .iter()
            .position(|k| k.index == index && k.their == their)
        {
            let key = self
                .skipped
                .get(pos)
                .map(|k| k.key.clone())
                .ok_or(DecryptError::Duplicate)?;
            let plaintext = open(&key, &aad, message.ciphertext())?;
            self.skipped.remove(pos);
            return Ok(plaintext);
        }

        // 2. Stage the chain work.
        let staged = self.stage(message, now)?;
        let (mk, next_chain) = staged.receiving.chain.step();
        let plaintext = open(&mk, &aad, message.ciphertext())?;

        // 3. Commit.
        let Staged {
            root,
            mut receiving,
            new_skipped,
            retired_their,
            new_chain,
        } = staged;
        if let Some(root) = root {
            self.root = root;
        }
        if new_chain && let Some(s) = self.sending.take() {
            self.previous_sending_len = s.index;
        }
        if let Some(old) = retired_their {
            self.previous_theirs.push_back(old);
            while self.previous_theirs.len() > MAX_REMEMBERED_RATCHET_KEYS {
                self.previous_theirs.pop_front();
            }
        }
        receiving.chain = next_chain;
        // `index < u32::MAX` was checked while staging.
        receiving.index = index.saturating_add(1);
        self.receiving = Some(receiving);
        self.skipped.extend(new_skipped);
        while self.skipped.len() > MAX_SKIPPED_KEYS {
            self.skipped.pop_front();
        }
        Ok(plaintext)
    }

    fn stage(&self, message: &RatchetMessage, now: Timestamp) -> Result<Staged, DecryptError> {
        let their = message.ratchet_key();
        let index = message.index();
        if index == u32::MAX {
            // The counter would wrap after this message; no honest sender reaches it.
            return Err(DecryptError::TooFarAhead {
                ahead: u64::from(index),
                max: MAX_FORWARD_JUMP,
            });
        }
        match &self.receiving {
            Some(current) if current.their == their => {
                if current.index == u32::MAX {
                    // The placeholder chain for the responder's signed prekey: nobody sends on it.
                    return Err(DecryptError::Authentication);
                }
                if index < current.index {
                    return Err(DecryptError::Duplicate);
                }
                let mut receiving = current.clone();
                let new_skipped = skip_until(&mut receiving, index, now)?;
                Ok(Staged {
                    root: None,
                    receiving,
                    new_skipped,
                    retired_their: None,
                    new_chain: false,
                })
            }
            _ => {
                if self.previous_theirs.contains(&their) {
                    return Err(DecryptError::Duplicate);
                }
                // Keys left in the current receiving chain, up to the sender's previous length.
                let mut new_skipped = Vec::new();
                let mut retired_their = None;
                if let Some(current) = &self.receiving {
                    if current.index != u32::MAX {
                        let mut old = current.clone();
                        new_skipped = skip_until(&mut old, message.previous_chain_len(), now)?;
                    }
                    retired_their = Some(current.their);
                }
                let dh = self
                    .ours
                    .agree(&their)
                    .map_err(|_| DecryptError::Agreement)?;
                let (root, chain) = self.root.step(&dh);
                let mut receiving = ReceivingChain {
                    their,
                    chain,
                    index: 0,
                };
                let more = skip_until(&mut receiving, index, now)?;
                if new_skipped.len().saturating_add(more.len()) > MAX_SKIPPED_KEYS.saturating_mul(2)
                {
                    return Err(DecryptError::TooFarAhead {
                        ahead: u64::from(index),
                        max: MAX_FORWARD_JUMP,
                    });
                }
                new_skipped.extend(more);
                Ok(Staged {
                    root: Some(root),
                    receiving,
                    new_skipped,
                    retired_their,
                    new_chain: true,
                })
            }
        }
    }

    /// Drops every skipped key stored before `cutoff` (expiry must erase keys too).
    pub(crate) fn prune_skipped_keys(&mut self, cutoff: Timestamp) -> usize {
        let before = self.skipped.len();
        self.skipped.retain(|k| k.stored_at >= cutoff);
        before.saturating_sub(self.skipped.len())
    }

    /// Drops every skipped key (conversation closed).
    pub(crate) fn clear_skipped_keys(&mut self) {
        self.skipped.clear();
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.bytes(self.root.expose());
        w.bytes(self.ours.secret().to_secret_bytes().expose());
        w.bytes(self.ours.public_key().as_bytes());
        match &self.sending {
            None => {
                w.u8(0);
            }
            Some(s) => {
                w.u8(1);
                // The sending chain always belongs to `ours`; only the chain is written.
                w.bytes(s.chain.expose()).u32(s.index);
            }
        }
        w.u32(self.previous_sending_len);
        match &self.receiving {
            None => {
                w.u8(0);
            }
            Some(r) => {
                w.u8(1);
                w.bytes(r.their.as_bytes())
                    .bytes(r.chain.expose())
                    .u32(r.index);
            }
        }
        // Both counts are bounded by constants far below u16::MAX.
        w.u16(u16::try_from(self.previous_theirs.len()).unwrap_or(u16::MAX));
        for k in &self.previous_theirs {
            w.bytes(k.as_bytes());
        }
        w.u16(u16::try_from(self.skipped.len()).unwrap_or(u16::MAX));
        for k in &self.skipped {
            w.bytes(k.their.as_bytes())
                .u32(k.index)
                .bytes(k.key.expose())
                .u64(k.stored_at.as_millis());
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>, provenance: Provenance) -> Result<Self, DecodeError> {
        let root = RootKey::new(r.array()?);
        let secret = X25519Secret::from_bytes(r.array()?);
        let public = X25519PublicKey::from_bytes(r.array()?);
        // Recomputing the public key costs a base-point multiplication; state we wrote and
        // stored under authenticated encryption is known to be consistent.
        if provenance == Provenance::Untrusted && secret.public_key() != public {
            return Err(DecodeError::InvalidValue {
                field: "ratchet key pair",
            });
        }
        let ours = X25519KeyPair::from_parts_unchecked(secret, public);
        let sending = match r.u8()? {
            0 => None,
            1 => Some(SendingChain {
                ratchet: ours.clone(),
                chain: ChainKey::new(r.array()?),
                index: r.u32()?,
            }),
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "sending chain flag",
                });
            }
        };
        let previous_sending_len = r.u32()?;
        let receiving = match r.u8()? {
            0 => None,
            1 => Some(ReceivingChain {
                their: X25519PublicKey::from_bytes(r.array()?),
                chain: ChainKey::new(r.array()?),
                index: r.u32()?,
            }),
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "receiving chain flag",
                });
            }
        };
        let n = r.count16("previous ratchet keys", MAX_REMEMBERED_RATCHET_KEYS)?;
        let mut previous_theirs = VecDeque::with_capacity(n);
        for _ in 0..n {
            previous_theirs.push_back(X25519PublicKey::from_bytes(r.array()?));
        }
        let n = r.count16("skipped keys", MAX_SKIPPED_KEYS)?;
        let mut skipped = VecDeque::with_capacity(n);
        for _ in 0..n {
            skipped.push_back(SkippedKey {
                their: X25519PublicKey::from_bytes(r.array()?),
                index: r.u32()?,
                key: MessageKey::new(r.array()?),
                stored_at: Timestamp::from_millis(r.u64()?),
            });
        }
        Ok(Self {
            root,
            ours,
            sending,
            previous_sending_len,
            receiving,
            previous_theirs,
            skipped,
        })
    }
}

/// Advances `chain` to position `until`, returning the keys it passed.
fn skip_until(
    chain: &mut ReceivingChain,
    until: u32,
    now: Timestamp,
) -> Result<Vec<SkippedKey>, DecryptError> {
    if until <= chain.index {
        return Ok(Vec::new());
    }
    let ahead = until.saturating_sub(chain.index);
    if ahead > MAX_FORWARD_JUMP {
        return Err(DecryptError::TooFarAhead {
            ahead: u64::from(ahead),
            max: MAX_FORWARD_JUMP,
        });
    }
    let mut out = Vec::with_capacity(usize::try_from(ahead).unwrap_or(0));
    while chain.index < until {
        let (mk, next) = chain.chain.step();
        out.push(SkippedKey {
            their: chain.their,
            index: chain.index,
            key: mk,
            stored_at: now,
        });
        chain.chain = next;
        chain.index = chain.index.saturating_add(1);
    }
    Ok(out)
}

fn open(
    key: &MessageKey,
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let mut plaintext = aead::open(&key.aead_key(), &ZERO_NONCE, aad, ciphertext)
        .map_err(|_| DecryptError::Authentication)?;
    padding::unpad_in_place(&mut plaintext).map_err(|_| DecryptError::Padding)?;
    Ok(plaintext)
}

/// Exposes the KDF chain steps for test vectors.
#[doc(hidden)]
pub fn kdf_vector(root: [u8; 32], dh: [u8; 32], steps: usize) -> Vec<([u8; 32], [u8; 32])> {
    let (rk, mut ck) = RootKey::new(root).step(&SharedSecret::new(dh));
    let mut out = vec![(*rk.expose(), *ck.expose())];
    for _ in 0..steps {
        let (mk, next) = ck.step();
        out.push((*mk.expose(), *next.expose()));
        ck = next;
    }
    out
}
