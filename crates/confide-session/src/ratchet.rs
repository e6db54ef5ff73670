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
//!
//! # Chain forks (restoring stored state)
//!
//! A state read back from storage may be older than the last state that sent: continuing its
//! sending chain would reuse message keys for new plaintexts. So every deserialised ratchet
//! starts with `renew_sending` set, and its first encryption either performs the lazy DH step
//! (no sending chain: a fresh random key anyway) or *forks* the sending chain at its current
//! position `n`: with 32 fresh random bytes `r`,
//!
//! ```text
//! base      = (base_index, CK_base)   the chain key at the position of the chain's first fork
//!                                     (n and CK_n if the chain was never forked)
//! CK'_start = HKDF-SHA256(salt = CK_base, ikm = r,
//!                         info = "Confide_v1_ChainFork" || base_index:u32 || start:u32)
//! ```
//!
//! with `start = n`; the chain continues at positions `start, start + 1, ...` from `CK'`.
//! Every message of the branch carries the public fork record `(base_index, r, start)`. Both
//! sides keep `CK_base` until the next DH step, so later forks of the same chain reuse it and
//! only one record ever travels.

use std::collections::VecDeque;

use confide_crypto::{
    CryptoRng, Timestamp, aead,
    codec::{DecodeError, Reader, Writer},
    define_secret,
    kdf::{hkdf_sha256, hkdf_sha256_multi, hmac_sha256, labels},
    padding, random_array,
    secret::{AeadKey, SharedSecret},
    x25519::{X25519KeyPair, X25519PublicKey},
};
use zeroize::Zeroizing;

use crate::{
    consts::{
        MAX_FORWARD_JUMP, MAX_REMEMBERED_FORKS, MAX_REMEMBERED_RATCHET_KEYS,
        MAX_SKIPPED_KEY_RATCHET_STEPS, MAX_SKIPPED_KEYS,
    },
    error::{DecryptError, EncryptError},
    message::{ForkRecord, RatchetMessage},
    state::StateSource,
};

/// HKDF info prefix of a chain fork (followed by `base_index:u32 || start:u32`).
pub const CHAIN_FORK_LABEL: &[u8] = b"Confide_v1_ChainFork";

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
            RootKey::from_slice(rk).unwrap_or_else(|| RootKey::copy_from(&[0; 32])),
            ChainKey::from_slice(ck).unwrap_or_else(|| ChainKey::copy_from(&[0; 32])),
        )
    }
}

impl ChainKey {
    /// `KDF_CK`: the message key at this position and the next chain key.
    fn step(&self) -> (MessageKey, ChainKey) {
        (
            MessageKey::copy_from(&hmac_sha256(self.expose(), labels::MESSAGE_KEY_SEED)),
            ChainKey::copy_from(&hmac_sha256(self.expose(), labels::CHAIN_KEY_SEED)),
        )
    }

    /// The chain key at `record.start` on the branch `record` names, from the base key.
    fn fork(&self, record: &ForkRecord) -> ChainKey {
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes of output cannot exceed HKDF's limit.
        let _ = hkdf_sha256_multi(
            Some(self.expose()),
            &record.nonce(),
            &[
                CHAIN_FORK_LABEL,
                &record.base_index().to_be_bytes(),
                &record.start().to_be_bytes(),
            ],
            &mut *okm,
        );
        ChainKey::copy_from(&okm)
    }
}

const ZERO_NONCE: [u8; aead::NONCE_LEN] = [0; aead::NONCE_LEN];

impl MessageKey {
    fn aead_key(&self) -> AeadKey {
        AeadKey::copy_from(self.expose())
    }
}

/// The fork a chain currently runs on, and the base key every fork of the chain derives from.
#[derive(Clone)]
struct ChainFork {
    record: ForkRecord,
    /// `CK_base`: the chain key at `record.base_index()` of the original branch.
    base_key: ChainKey,
}

#[derive(Clone)]
struct SendingChain {
    ratchet: X25519KeyPair,
    chain: ChainKey,
    index: u32,
    fork: Option<ChainFork>,
}

#[derive(Clone)]
struct ReceivingFork {
    current: ChainFork,
    /// Nonces of earlier forks of this chain we moved past, oldest first.
    retired: VecDeque<[u8; 32]>,
}

#[derive(Clone)]
struct ReceivingChain {
    their: X25519PublicKey,
    chain: ChainKey,
    /// Next expected position on the branch we follow; `index - 1` was received (except on
    /// the initiator's placeholder chain, whose index is `u32::MAX`).
    index: u32,
    fork: Option<ReceivingFork>,
}

impl ReceivingChain {
    fn branch(&self) -> Option<[u8; 32]> {
        self.fork.as_ref().map(|f| f.current.record.nonce())
    }
}

#[derive(Clone)]
struct SkippedKey {
    their: X25519PublicKey,
    /// Nonce of the fork the key belongs to; `None` on a chain's original branch.
    fork: Option<[u8; 32]>,
    index: u32,
    key: MessageKey,
    stored_at: Timestamp,
    /// Value of the receive-step counter of the chain the key belongs to.
    step: u32,
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
    /// The fork our previous sending chain ended on, repeated in every message of the
    /// current one.
    previous_sending_fork: Option<ForkRecord>,
    receiving: Option<ReceivingChain>,
    /// Receiving chains started so far (the stamp skipped keys age by).
    receive_steps: u32,
    /// Remote ratchet keys we have moved past, newest last.
    previous_theirs: VecDeque<X25519PublicKey>,
    /// Skipped message keys, oldest first.
    skipped: VecDeque<SkippedKey>,
    /// Not serialised: set on every deserialised state, whose sending chain may already have
    /// been used past its stored position; the next send then starts a fresh chain or branch.
    renew_sending: bool,
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
    /// The message's key, when it is on an earlier branch of the chain (which then stays put).
    direct: Option<MessageKey>,
    /// Remote key we moved past, if this message started a new receiving chain.
    retired_their: Option<X25519PublicKey>,
    new_chain: bool,
    /// The message authenticates on its new chain, but how the sender says its previous
    /// chain ended contradicts what we received on it: refuse as a rollback, commit nothing.
    rolled_back: bool,
}

/// Which position [`reach`] brings a chain to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A message's position: the chain must not have passed it.
    Message,
    /// The end of the sender's previous chain (its length): keys up to it are kept.
    ChainEnd,
}

/// Keys one message may make us derive, across every chain it touches.
struct Budget {
    used: u32,
}

impl Budget {
    fn take(&mut self, ahead: u32) -> Result<(), DecryptError> {
        let total = u64::from(self.used).saturating_add(u64::from(ahead));
        if total > u64::from(MAX_FORWARD_JUMP) {
            return Err(DecryptError::TooFarAhead {
                ahead: total,
                max: MAX_FORWARD_JUMP,
            });
        }
        self.used = self.used.saturating_add(ahead);
        Ok(())
    }
}

/// Context of one staging pass: when keys are stored and with which step stamp.
#[derive(Clone, Copy)]
struct Stamp {
    now: Timestamp,
    step: u32,
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
                fork: None,
            }),
            previous_sending_len: 0,
            previous_sending_fork: None,
            receiving: Some(ReceivingChain {
                // Bob never sends on his signed prekey; a receiving chain for it exists only
                // so that Alice recognises it. Its chain key is unusable (all zero) and no
                // message can authenticate under it: Bob's first message uses a new key.
                their: their_ratchet,
                chain: ChainKey::new([0; 32]),
                index: u32::MAX,
                fork: None,
            }),
            receive_steps: 0,
            previous_theirs: VecDeque::new(),
            skipped: VecDeque::new(),
            renew_sending: false,
        })
    }

    /// Bob's start: his signed prekey is his first ratchet key.
    pub(crate) fn responder(shared: RootKey, signed_prekey: X25519KeyPair) -> Self {
        Self {
            root: shared,
            ours: signed_prekey,
            sending: None,
            previous_sending_len: 0,
            previous_sending_fork: None,
            receiving: None,
            receive_steps: 0,
            previous_theirs: VecDeque::new(),
            skipped: VecDeque::new(),
            renew_sending: false,
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

    /// When the oldest stored skipped key was stored.
    pub(crate) fn oldest_skipped_key_at(&self) -> Option<Timestamp> {
        self.skipped.iter().map(|k| k.stored_at).min()
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
        // Stage the DH step (if due), the fork (if due) and the chain step; commit after.
        let (root, mut chain) = match &self.sending {
            Some(s) => {
                let mut chain = s.clone();
                if self.renew_sending {
                    fork_sending(rng, &mut chain);
                }
                (None, chain)
            }
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
                        fork: None,
                    },
                )
            }
        };
        let index = chain.index;
        let next_index = index.checked_add(1).ok_or(EncryptError::ChainExhausted)?;
        let (mk, next_chain) = chain.chain.step();
        let message = RatchetMessage::new(
            chain.ratchet.public_key(),
            self.previous_sending_len,
            index,
            chain.fork.as_ref().map(|f| f.record),
            self.previous_sending_fork,
        );
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
        self.renew_sending = false;
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
        let branch = message.fork().map(ForkRecord::nonce);

        // 1. A stored skipped key.
        if let Some(pos) = self
            .skipped
            .iter()
            .position(|k| k.index == index && k.their == their && k.fork == branch)
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
        let (mk, next_chain) = match &staged.direct {
            Some(key) => (key.clone(), None),
            None => {
                let (mk, next) = staged.receiving.chain.step();
                (mk, Some(next))
            }
        };
        let plaintext = open(&mk, &aad, message.ciphertext())?;
        if staged.rolled_back {
            return Err(DecryptError::PeerRolledBack);
        }

        // 3. Commit.
        let Staged {
            root,
            mut receiving,
            new_skipped,
            direct: _,
            retired_their,
            new_chain,
            rolled_back: _,
        } = staged;
        if let Some(root) = root {
            self.root = root;
        }
        if new_chain {
            if let Some(s) = self.sending.take() {
                self.previous_sending_len = s.index;
                self.previous_sending_fork = s.fork.map(|f| f.record);
            }
            self.receive_steps = self.receive_steps.saturating_add(1);
            let steps = self.receive_steps;
            self.skipped
                .retain(|k| steps.saturating_sub(k.step) <= MAX_SKIPPED_KEY_RATCHET_STEPS);
        }
        if let Some(old) = retired_their {
            self.previous_theirs.push_back(old);
            while self.previous_theirs.len() > MAX_REMEMBERED_RATCHET_KEYS {
                self.previous_theirs.pop_front();
            }
        }
        if let Some(next_chain) = next_chain {
            receiving.chain = next_chain;
            // `index < u32::MAX` was checked while staging.
            receiving.index = index.saturating_add(1);
        }
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
        let mut budget = Budget { used: 0 };
        match &self.receiving {
            Some(current) if current.their == their => {
                if current.index == u32::MAX {
                    // The placeholder chain for the responder's signed prekey: nobody sends on it.
                    return Err(DecryptError::Authentication);
                }
                let mut receiving = current.clone();
                let stamp = Stamp {
                    now,
                    step: self.receive_steps,
                };
                let reached = reach(
                    &mut receiving,
                    message.fork(),
                    index,
                    Target::Message,
                    stamp,
                    &mut budget,
                )?;
                Ok(Staged {
                    root: None,
                    receiving,
                    new_skipped: reached.skipped,
                    direct: reached.direct,
                    retired_their: None,
                    new_chain: false,
                    rolled_back: false,
                })
            }
            _ => {
                if self.previous_theirs.contains(&their) {
                    return Err(DecryptError::Duplicate);
                }
                // Keys left in the current receiving chain, up to the sender's previous length
                // (on the branch that chain ended on).
                let mut new_skipped = Vec::new();
                let mut retired_their = None;
                let mut rolled_back = false;
                if let Some(current) = &self.receiving {
                    if current.index != u32::MAX {
                        let mut old = current.clone();
                        let stamp = Stamp {
                            now,
                            step: self.receive_steps,
                        };
                        match reach(
                            &mut old,
                            message.previous_fork(),
                            message.previous_chain_len(),
                            Target::ChainEnd,
                            stamp,
                            &mut budget,
                        ) {
                            Ok(reached) => new_skipped = reached.skipped,
                            // The new chain does not depend on the old one: authenticate the
                            // message first, then report the rollback.
                            Err(DecryptError::PeerRolledBack) => rolled_back = true,
                            Err(e) => return Err(e),
                        }
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
                    fork: None,
                };
                let stamp = Stamp {
                    now,
                    step: self.receive_steps.saturating_add(1),
                };
                // A fresh chain follows no branch, so the message's key comes from the chain.
                let more = reach(
                    &mut receiving,
                    message.fork(),
                    index,
                    Target::Message,
                    stamp,
                    &mut budget,
                )?;
                new_skipped.extend(more.skipped);
                Ok(Staged {
                    root: Some(root),
                    receiving,
                    new_skipped,
                    direct: None,
                    retired_their,
                    new_chain: true,
                    rolled_back,
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
                write_chain_fork(w, s.fork.as_ref());
            }
        }
        w.u32(self.previous_sending_len);
        write_record(w, self.previous_sending_fork.as_ref());
        match &self.receiving {
            None => {
                w.u8(0);
            }
            Some(r) => {
                w.u8(1);
                w.bytes(r.their.as_bytes())
                    .bytes(r.chain.expose())
                    .u32(r.index);
                write_chain_fork(w, r.fork.as_ref().map(|f| &f.current));
                if let Some(f) = &r.fork {
                    // Bounded by MAX_REMEMBERED_FORKS.
                    w.u8(u8::try_from(f.retired.len()).unwrap_or(u8::MAX));
                    for n in &f.retired {
                        w.bytes(n);
                    }
                }
            }
        }
        w.u32(self.receive_steps);
        // Both counts are bounded by constants far below u16::MAX.
        w.u16(u16::try_from(self.previous_theirs.len()).unwrap_or(u16::MAX));
        for k in &self.previous_theirs {
            w.bytes(k.as_bytes());
        }
        w.u16(u16::try_from(self.skipped.len()).unwrap_or(u16::MAX));
        for k in &self.skipped {
            w.bytes(k.their.as_bytes());
            match &k.fork {
                None => {
                    w.u8(0);
                }
                Some(n) => {
                    w.u8(1).bytes(n);
                }
            }
            w.u32(k.index)
                .bytes(k.key.expose())
                .u64(k.stored_at.as_millis())
                .u32(k.step);
        }
    }

    /// Reads a ratchet; the result always renews its sending chain before the next send.
    pub(crate) fn read(r: &mut StateSource<'_, '_>) -> Result<Self, DecodeError> {
        let root = RootKey::new(r.array()?);
        // Recomputing the public key costs a base-point multiplication; state we wrote and
        // stored under authenticated encryption is known to be consistent.
        let ours = r.x25519_pair()?;
        let sending = match r.u8()? {
            0 => None,
            1 => {
                let chain = ChainKey::new(r.array()?);
                let index = r.u32()?;
                let fork = read_chain_fork(r)?;
                // The branch's start position was used: the index is past it.
                if fork.as_ref().is_some_and(|f| f.record.start() >= index) {
                    return Err(DecodeError::InvalidValue {
                        field: "sending fork start",
                    });
                }
                Some(SendingChain {
                    ratchet: ours.clone(),
                    chain,
                    index,
                    fork,
                })
            }
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "sending chain flag",
                });
            }
        };
        let previous_sending_len = r.u32()?;
        let previous_sending_fork = read_record(r)?;
        if previous_sending_fork.is_some_and(|f| f.start() >= previous_sending_len) {
            return Err(DecodeError::InvalidValue {
                field: "previous sending fork start",
            });
        }
        let receiving = match r.u8()? {
            0 => None,
            1 => {
                let their = X25519PublicKey::from_bytes(r.array()?);
                let chain = ChainKey::new(r.array()?);
                let index = r.u32()?;
                let fork = match read_chain_fork(r)? {
                    None => None,
                    Some(current) => {
                        if current.record.start() >= index || index == u32::MAX {
                            return Err(DecodeError::InvalidValue {
                                field: "receiving fork start",
                            });
                        }
                        let n = usize::from(r.u8()?);
                        if n > MAX_REMEMBERED_FORKS {
                            return Err(DecodeError::TooLong {
                                field: "retired forks",
                                len: n,
                                max: MAX_REMEMBERED_FORKS,
                            });
                        }
                        let mut retired = VecDeque::with_capacity(n);
                        for _ in 0..n {
                            retired.push_back(r.array()?);
                        }
                        Some(ReceivingFork { current, retired })
                    }
                };
                Some(ReceivingChain {
                    their,
                    chain,
                    index,
                    fork,
                })
            }
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "receiving chain flag",
                });
            }
        };
        let receive_steps = r.u32()?;
        let n = r.count16("previous ratchet keys", MAX_REMEMBERED_RATCHET_KEYS)?;
        let mut previous_theirs = VecDeque::with_capacity(n);
        for _ in 0..n {
            previous_theirs.push_back(X25519PublicKey::from_bytes(r.array()?));
        }
        let n = r.count16("skipped keys", MAX_SKIPPED_KEYS)?;
        let mut skipped = VecDeque::with_capacity(n);
        for _ in 0..n {
            let their = X25519PublicKey::from_bytes(r.array()?);
            let fork = if r.bool("skipped key fork flag")? {
                Some(r.array()?)
            } else {
                None
            };
            let key = SkippedKey {
                their,
                fork,
                index: r.u32()?,
                key: MessageKey::new(r.array()?),
                stored_at: Timestamp::from_millis(r.u64()?),
                step: r.u32()?,
            };
            // Keys are dropped once they are this many steps old, and never stamped ahead.
            if key.step > receive_steps
                || receive_steps.saturating_sub(key.step) > MAX_SKIPPED_KEY_RATCHET_STEPS
            {
                return Err(DecodeError::InvalidValue {
                    field: "skipped key step",
                });
            }
            skipped.push_back(key);
        }
        Ok(Self {
            root,
            ours,
            sending,
            previous_sending_len,
            previous_sending_fork,
            receiving,
            receive_steps,
            previous_theirs,
            skipped,
            renew_sending: true,
        })
    }
}

/// Moves a sending chain onto a fresh branch at its current position.
fn fork_sending<R: CryptoRng + ?Sized>(rng: &mut R, chain: &mut SendingChain) {
    let nonce: [u8; 32] = random_array(rng);
    let (base_index, base_key) = match &chain.fork {
        Some(f) => (f.record.base_index(), f.base_key.clone()),
        None => (chain.index, chain.chain.clone()),
    };
    let record = ForkRecord::new(base_index, nonce, chain.index);
    chain.chain = base_key.fork(&record);
    chain.fork = Some(ChainFork { record, base_key });
}

fn write_record(w: &mut Writer, record: Option<&ForkRecord>) {
    match record {
        None => {
            w.u8(0);
        }
        Some(f) => {
            w.u8(1);
            f.write(w);
        }
    }
}

fn read_record(r: &mut Reader<'_>) -> Result<Option<ForkRecord>, DecodeError> {
    if r.bool("fork record flag")? {
        Ok(Some(ForkRecord::read(r)?))
    } else {
        Ok(None)
    }
}

fn write_chain_fork(w: &mut Writer, fork: Option<&ChainFork>) {
    write_record(w, fork.map(|f| &f.record));
    if let Some(f) = fork {
        w.bytes(f.base_key.expose());
    }
}

fn read_chain_fork(r: &mut Reader<'_>) -> Result<Option<ChainFork>, DecodeError> {
    Ok(match read_record(r)? {
        None => None,
        Some(record) => Some(ChainFork {
            record,
            base_key: ChainKey::new(r.array()?),
        }),
    })
}

/// Brings `chain` to position `until` on the branch `fork` names (the original branch when
/// `None`), collecting the keys it passes, or says why the sender's claim is impossible for
/// a sender that never went back to an older state.
///
/// For [`Target::Message`] the chain ends positioned at the message (whose key the caller
/// derives next); for [`Target::ChainEnd`] it ends at the sender's previous chain length.
fn reach(
    chain: &mut ReceivingChain,
    fork: Option<&ForkRecord>,
    until: u32,
    target: Target,
    stamp: Stamp,
    budget: &mut Budget,
) -> Result<Reached, DecryptError> {
    Ok(
        match reach_branch(chain, fork, until, target, stamp, budget)? {
            Branch::Keys(skipped) => Reached {
                skipped,
                direct: None,
            },
            Branch::Earlier(skipped, key) => Reached {
                skipped,
                direct: Some(key),
            },
        },
    )
}

/// What [`reach_branch`] produced.
enum Branch {
    /// The chain is positioned; these keys were passed.
    Keys(Vec<SkippedKey>),
    /// The message is on an earlier branch: the chain did not move (except that the branch is
    /// now retired); its key, and the keys of the rest of that branch.
    Earlier(Vec<SkippedKey>, MessageKey),
}

fn reach_branch(
    chain: &mut ReceivingChain,
    fork: Option<&ForkRecord>,
    until: u32,
    target: Target,
    stamp: Stamp,
    budget: &mut Budget,
) -> Result<Branch, DecryptError> {
    let keys = |r: Result<Vec<SkippedKey>, DecryptError>| r.map(Branch::Keys);
    let current = chain.fork.as_ref().map(|f| f.current.record);
    match (current, fork) {
        (None, None) => {
            if until < chain.index {
                return Err(passed(target));
            }
            keys(skip_until(chain, until, stamp, budget))
        }
        (Some(ours), None) => {
            // The sender claims its original branch, which we know it left at the base:
            // every original position below the base was stored as skipped when we forked.
            match target {
                Target::Message if until >= ours.base_index() => Err(DecryptError::StaleBranch),
                Target::Message => Err(DecryptError::Duplicate),
                // The sender's chain ended unforked, yet we received its fork.
                Target::ChainEnd => Err(DecryptError::PeerRolledBack),
            }
        }
        (None, Some(theirs)) => {
            // `index - 1` was received on the original branch: the sender must have forked
            // above it.
            if chain.index > theirs.base_index() {
                return Err(DecryptError::PeerRolledBack);
            }
            let mut out = skip_until(chain, theirs.base_index(), stamp, budget)?;
            let base_key = chain.chain.clone();
            chain.chain = base_key.fork(theirs);
            chain.index = theirs.start();
            chain.fork = Some(ReceivingFork {
                current: ChainFork {
                    record: *theirs,
                    base_key,
                },
                retired: VecDeque::new(),
            });
            out.extend(skip_until(chain, until, stamp, budget)?);
            Ok(Branch::Keys(out))
        }
        (Some(ours), Some(theirs)) => {
            if theirs.base_index() != ours.base_index() {
                // Every fork of one chain shares the base until the next DH step; another
                // base means the sender's state does not descend from the one we follow.
                return Err(DecryptError::PeerRolledBack);
            }
            if theirs.nonce() == ours.nonce() {
                if theirs.start() != ours.start() {
                    // The start is bound into the branch's keys: this cannot authenticate.
                    return Err(DecryptError::Authentication);
                }
                if until < chain.index {
                    return Err(passed(target));
                }
                return keys(skip_until(chain, until, stamp, budget));
            }
            let retired = chain
                .fork
                .as_ref()
                .is_some_and(|f| f.retired.contains(&theirs.nonce()));
            if retired {
                return Err(match target {
                    Target::Message => DecryptError::Duplicate,
                    Target::ChainEnd => DecryptError::PeerRolledBack,
                });
            }
            if theirs.start() < chain.index {
                // A message is never below its branch's start (the parser checks it), so a
                // message below our branch's start is on a branch that starts below ours.
                if target == Target::Message && until < ours.start() {
                    // Honest senders used an earlier branch only below our branch's start.
                    if chain
                        .fork
                        .as_ref()
                        .is_some_and(|f| f.retired.len() >= MAX_REMEMBERED_FORKS)
                    {
                        // With the list full, an earlier branch we may have forgotten cannot
                        // be told from one we never heard from: deriving its keys again
                        // could decrypt a replay. Refused; the endpoint resets the session.
                        return Err(DecryptError::Duplicate);
                    }
                    // An earlier branch we never heard from (its successor overtook it on
                    // the network).
                    return earlier_branch(chain, theirs, ours.start(), until, stamp, budget);
                }
                // A newer branch must start above everything received on the current one.
                return Err(DecryptError::PeerRolledBack);
            }
            // A newer fork: the rest of the current branch may still be in flight.
            let mut out = skip_until(chain, theirs.start(), stamp, budget)?;
            let Some(mut state) = chain.fork.take() else {
                return Err(DecryptError::Authentication);
            };
            state.retired.push_back(ours.nonce());
            while state.retired.len() > MAX_REMEMBERED_FORKS {
                state.retired.pop_front();
            }
            chain.chain = state.current.base_key.fork(theirs);
            chain.index = theirs.start();
            state.current.record = *theirs;
            chain.fork = Some(state);
            out.extend(skip_until(chain, until, stamp, budget)?);
            Ok(Branch::Keys(out))
        }
    }
}

/// The error for a position below the next expected one: a message there was already
/// received (or its key dropped); a sender's chain cannot have ended before a position we
/// received on it unless the sender went back to an older state.
fn passed(target: Target) -> DecryptError {
    match target {
        Target::Message => DecryptError::Duplicate,
        Target::ChainEnd => DecryptError::PeerRolledBack,
    }
}

/// A message on an earlier branch `theirs` of the chain than the one we follow (which starts
/// at `next_start`): derives that branch's keys from the base, from its start up to
/// `next_start`, keeps them as skipped keys (the rest of the branch may be in flight) except
/// the message's own, and retires the branch.
fn earlier_branch(
    chain: &mut ReceivingChain,
    theirs: &ForkRecord,
    next_start: u32,
    until: u32,
    stamp: Stamp,
    budget: &mut Budget,
) -> Result<Branch, DecryptError> {
    let Some(state) = chain.fork.as_mut() else {
        return Err(DecryptError::Authentication);
    };
    let mut early = ReceivingChain {
        their: chain.their,
        chain: state.current.base_key.fork(theirs),
        index: theirs.start(),
        fork: Some(ReceivingFork {
            current: ChainFork {
                record: *theirs,
                base_key: state.current.base_key.clone(),
            },
            retired: VecDeque::new(),
        }),
    };
    let mut out = skip_until(&mut early, next_start, stamp, budget)?;
    let pos = out
        .iter()
        .position(|k| k.index == until)
        .ok_or(DecryptError::Authentication)?;
    let key = out.remove(pos).key;
    state.retired.push_back(theirs.nonce());
    while state.retired.len() > MAX_REMEMBERED_FORKS {
        state.retired.pop_front();
    }
    Ok(Branch::Earlier(out, key))
}

/// What [`reach`] produced.
struct Reached {
    skipped: Vec<SkippedKey>,
    /// The message's key when it is on an earlier branch (the chain itself did not move).
    direct: Option<MessageKey>,
}

/// Advances `chain` to position `until` on its current branch, returning the keys it passed.
fn skip_until(
    chain: &mut ReceivingChain,
    until: u32,
    stamp: Stamp,
    budget: &mut Budget,
) -> Result<Vec<SkippedKey>, DecryptError> {
    if until <= chain.index {
        return Ok(Vec::new());
    }
    let ahead = until.saturating_sub(chain.index);
    budget.take(ahead)?;
    let branch = chain.branch();
    let mut out = Vec::with_capacity(usize::try_from(ahead).unwrap_or(0));
    while chain.index < until {
        let (mk, next) = chain.chain.step();
        out.push(SkippedKey {
            their: chain.their,
            fork: branch,
            index: chain.index,
            key: mk,
            stored_at: stamp.now,
            step: stamp.step,
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
