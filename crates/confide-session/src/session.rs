//! One session: the hybrid handshake that starts it and the ratchet that runs it.
//!
//! # Handshake (after Signal's PQXDH, revision 3)
//!
//! The initiator A holds identity `IK_A`, generates ephemeral `EK_A`, and uses the responder
//! B's verified bundle (`IK_B`, signed prekey `SPK_B`, KEM prekey `PQPK_B`, optional one-time
//! prekey `OPK_B`):
//!
//! ```text
//! DH1 = X25519(IK_A.agreement, SPK_B)     DH2 = X25519(EK_A, IK_B.agreement)
//! DH3 = X25519(EK_A, SPK_B)               DH4 = X25519(EK_A, OPK_B)   (if present)
//! (CT, SS) = ML-KEM-768.Encaps(PQPK_B)
//! IKM  = 0xFF * 32 || DH1 || DH2 || DH3 || [DH4] || SS
//! INFO = "Confide_v1_PQXDH_X25519_SHA-256_ML-KEM-768" || IK_A.keys[64] || IK_B.keys[64]
//!        || EK_A || SPK_B || SHA-256(PQPK_B) || SHA-256(CT)
//! SK   = HKDF-SHA256(salt = 32 zero bytes, IKM, INFO, 32)
//! AD   = "Confide_v1_AssociatedData" || IK_A.keys[64] || IK_B.keys[64]
//! ```
//!
//! `IK.keys` is the identity's Ed25519 key followed by its X25519 key. Every X25519 output is
//! checked to be non-zero. `SK` becomes the Double Ratchet's first root key, with `SPK_B` as
//! B's first ratchet key. Every message's AEAD associated data is `AD || ratchet header`, so a
//! message made for one pair of identities is useless with any other.

use confide_crypto::{
    CryptoRng, Timestamp,
    codec::{DecodeError, Reader, Writer},
    identity::{IdentityKeyPair, IdentityPublicKey},
    kdf::{hkdf_sha256_multi, labels, sha256},
    kem::{KEM_CIPHERTEXT_LEN, KemCiphertext, KemPublicKey},
    secret::{EnvelopeSecret, SharedSecret, ct_eq},
    stored::AuthenticatedReader,
    x25519::{X25519KeyPair, X25519PublicKey},
};
use zeroize::Zeroizing;

use crate::{
    error::{DecryptError, EncryptError, SessionSetupError},
    message::{PREKEY_HEADER_DIGEST_LEN, PreKeyMessage, SessionMessage},
    prekeys::{PreKeyStore, VerifiedPreKeyBundle},
    ratchet::{DoubleRatchet, RootKey},
    state::StateSource,
};

/// Which side started the session: the wire vocabulary's [`Side`] (we used the other side's
/// bundle: [`Side::Initiator`]; the other side used ours: [`Side::Responder`]).
pub use confide_wire::Side;

/// The two identities a caller already stores beside a session record (an endpoint keeps its
/// own identity and each conversation's peer identity): the record's compact form
/// ([`crate::SessionRecord::to_bytes_compact`]) leaves out every session identity equal to
/// one of these, 128 bytes each (`docs/spec.md` §11).
#[derive(Clone, Copy)]
pub struct KnownIdentities<'a> {
    /// Our identity.
    pub local: &'a IdentityPublicKey,
    /// The peer's identity.
    pub remote: &'a IdentityPublicKey,
}

impl core::fmt::Debug for KnownIdentities<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            local: _,
            remote: _,
        } = self;
        f.write_str("KnownIdentities")
    }
}

#[derive(Clone)]
struct PendingPreKey {
    signed_prekey_id: u32,
    kem_prekey_id: u32,
    kem_ciphertext: KemCiphertext,
    one_time_prekey_id: Option<u32>,
}

/// An established (or, for the initiator, half-established) session.
#[derive(Clone)]
pub struct Session {
    local: IdentityPublicKey,
    remote: IdentityPublicKey,
    role: Side,
    base_key: X25519PublicKey,
    /// Present on the initiator until the first reply: its messages carry the prekey data.
    pending: Option<PendingPreKey>,
    /// On the responder: the digest of the header of the prekey message that created the
    /// session ([`PreKeyMessage::header_digest`]); a repeated prekey message is accepted only
    /// with exactly this header.
    prekey_header: Option<[u8; PREKEY_HEADER_DIGEST_LEN]>,
    /// The secret this session exports for its conversation's symmetric sealed-sender
    /// envelopes ([`Session::envelope_secret`]); `None` only for a session read from state
    /// version 3, which predates it (its root at establishment is gone).
    envelope_secret: Option<EnvelopeSecret>,
    ratchet: DoubleRatchet,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Every field named, so a new one needs a decision here. Identities and the base key
        // would link the session to people; the ratchet holds keys: counts only.
        let Self {
            local: _,
            remote: _,
            role,
            base_key: _,
            pending,
            prekey_header: _,
            envelope_secret: _,
            ratchet,
        } = self;
        f.debug_struct("Session")
            .field("role", role)
            .field("awaiting_reply", &pending.is_some())
            .field("skipped_keys", &ratchet.skipped_len())
            .finish_non_exhaustive()
    }
}

fn hkdf_root(ikm: &[u8], info: &[&[u8]]) -> RootKey {
    let mut sk = Zeroizing::new([0u8; 32]);
    // 32 bytes of output cannot exceed HKDF's limit.
    let _ = hkdf_sha256_multi(None, ikm, info, &mut *sk);
    RootKey::copy_from(&sk)
}

struct HandshakeInputs<'a> {
    initiator: &'a IdentityPublicKey,
    responder: &'a IdentityPublicKey,
    base_key: &'a X25519PublicKey,
    signed_prekey: &'a X25519PublicKey,
    kem_public: &'a KemPublicKey,
    kem_ciphertext: &'a KemCiphertext,
}

fn derive_root(
    inputs: &HandshakeInputs<'_>,
    dhs: &[&SharedSecret],
    kem_secret: &SharedSecret,
) -> RootKey {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 6));
    ikm.extend_from_slice(&[0xFF; 32]);
    for dh in dhs {
        ikm.extend_from_slice(dh.expose());
    }
    ikm.extend_from_slice(kem_secret.expose());
    let pk_hash = sha256(&[inputs.kem_public.as_bytes()]);
    let ct_hash = sha256(&[inputs.kem_ciphertext.as_bytes()]);
    hkdf_root(
        &ikm,
        &[
            labels::HANDSHAKE,
            &inputs.initiator.key_bytes(),
            &inputs.responder.key_bytes(),
            inputs.base_key.as_bytes(),
            inputs.signed_prekey.as_bytes(),
            &pk_hash,
            &ct_hash,
        ],
    )
}

/// The envelope secret a session exports: `HKDF(salt = none, ikm = SK, info =
/// "Confide_v1_EnvelopeExporter", 32)`, from the handshake's shared key `SK` before it becomes
/// the first root key. Both sides compute the same value; it is independent of every ratchet
/// key (different HKDF input position and label), so knowing it reveals no message key.
fn derive_envelope_secret(root: &RootKey) -> EnvelopeSecret {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes of output cannot exceed HKDF's limit.
    let _ = hkdf_sha256_multi(None, root.expose(), &[labels::ENVELOPE_EXPORTER], &mut *out);
    EnvelopeSecret::copy_from(&out)
}

/// The associated data bound into every message of a session.
fn associated_data(initiator: &IdentityPublicKey, responder: &IdentityPublicKey) -> Vec<u8> {
    let mut ad = Vec::with_capacity(labels::ASSOCIATED_DATA.len() + 128);
    ad.extend_from_slice(labels::ASSOCIATED_DATA);
    ad.extend_from_slice(&initiator.key_bytes());
    ad.extend_from_slice(&responder.key_bytes());
    ad
}

/// A decrypted message and what the app needs to know about it.
#[derive(Clone)]
#[non_exhaustive]
pub struct Decrypted {
    /// The plaintext; zeroized when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The sender's identity.
    pub remote_identity: IdentityPublicKey,
    /// Whether this message started a new session (a prekey message we had not seen).
    pub new_session: bool,
}

impl core::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            plaintext,
            remote_identity: _,
            new_session,
        } = self;
        f.debug_struct("Decrypted")
            .field("plaintext_len", &plaintext.len())
            .field("new_session", new_session)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session from a verified bundle (the initiator's side). Messages encrypted on it
    /// are prekey messages until the first reply arrives.
    pub fn initiate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        our_identity: &IdentityKeyPair,
        bundle: &VerifiedPreKeyBundle,
    ) -> Result<Self, SessionSetupError> {
        let bundle = bundle.bundle();
        let their = bundle.identity();
        let spk = bundle.signed_prekey();
        let base = X25519KeyPair::generate(rng);
        let agree = |k: &X25519KeyPair, p: &X25519PublicKey| {
            k.agree(p).map_err(SessionSetupError::Agreement)
        };
        let dh1 = agree(our_identity.agreement(), &spk)?;
        let dh2 = agree(&base, their.agreement_key())?;
        let dh3 = agree(&base, &spk)?;
        let dh4 = match bundle.one_time() {
            Some((_, otk)) => Some(agree(&base, &otk)?),
            None => None,
        };
        let (kem_ciphertext, kem_secret) = bundle.kem_prekey().encapsulate(rng);
        let local = our_identity.public();
        let base_key = base.public_key();
        let mut dhs = vec![&dh1, &dh2, &dh3];
        if let Some(d) = &dh4 {
            dhs.push(d);
        }
        let root = derive_root(
            &HandshakeInputs {
                initiator: &local,
                responder: their,
                base_key: &base_key,
                signed_prekey: &spk,
                kem_public: bundle.kem_prekey(),
                kem_ciphertext: &kem_ciphertext,
            },
            &dhs,
            &kem_secret,
        );
        let envelope_secret = Some(derive_envelope_secret(&root));
        let ratchet = DoubleRatchet::initiator(rng, root, spk)?;
        Ok(Self {
            local,
            remote: *their,
            role: Side::Initiator,
            base_key,
            pending: Some(PendingPreKey {
                signed_prekey_id: bundle.signed_prekey_id(),
                kem_prekey_id: bundle.kem_prekey_id(),
                kem_ciphertext,
                one_time_prekey_id: bundle.one_time_prekey_id(),
            }),
            prekey_header: None,
            envelope_secret,
            ratchet,
        })
    }

    /// The responder's side: derives the session a prekey message asks for and decrypts its
    /// first message. Changes nothing; the caller commits (see [`crate::SessionRecord`]).
    pub(crate) fn accept(
        store: &PreKeyStore,
        message: &PreKeyMessage,
        now: Timestamp,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), DecryptError> {
        let keys = store.lookup(
            message.signed_prekey_id,
            message.kem_prekey_id,
            message.one_time_prekey_id,
        )?;
        let ours = store.identity();
        let local = ours.public();
        let agree = |k: &X25519KeyPair, p: &X25519PublicKey| {
            k.agree(p).map_err(|_| DecryptError::Agreement)
        };
        let dh1 = agree(&keys.signed, message.initiator.agreement_key())?;
        let dh2 = agree(ours.agreement(), &message.base_key)?;
        let dh3 = agree(&keys.signed, &message.base_key)?;
        let dh4 = match &keys.one_time {
            Some(otk) => Some(agree(otk, &message.base_key)?),
            None => None,
        };
        let kem_secret = keys.kem.decapsulate(&message.kem_ciphertext);
        let mut dhs = vec![&dh1, &dh2, &dh3];
        if let Some(d) = &dh4 {
            dhs.push(d);
        }
        let spk_public = keys.signed.public_key();
        let root = derive_root(
            &HandshakeInputs {
                initiator: &message.initiator,
                responder: &local,
                base_key: &message.base_key,
                signed_prekey: &spk_public,
                kem_public: keys.kem.public_key(),
                kem_ciphertext: &message.kem_ciphertext,
            },
            &dhs,
            &kem_secret,
        );
        let envelope_secret = Some(derive_envelope_secret(&root));
        let mut session = Self {
            local,
            remote: message.initiator,
            role: Side::Responder,
            base_key: message.base_key,
            pending: None,
            prekey_header: Some(message.header_digest()),
            envelope_secret,
            ratchet: DoubleRatchet::responder(root, keys.signed),
        };
        let plaintext = session.decrypt_ratchet(&message.message, now)?;
        Ok((session, plaintext))
    }

    /// Our identity.
    #[must_use]
    pub fn local_identity(&self) -> &IdentityPublicKey {
        &self.local
    }

    /// The other side's identity.
    #[must_use]
    pub fn remote_identity(&self) -> &IdentityPublicKey {
        &self.remote
    }

    /// Which side started the session.
    #[must_use]
    pub fn role(&self) -> Side {
        self.role
    }

    /// The initiator's base key, which names this session.
    #[must_use]
    pub fn base_key(&self) -> X25519PublicKey {
        self.base_key
    }

    /// The secret this session exports for the symmetric sealed-sender envelopes of its
    /// conversation (`docs/sealed-sender.md`, §9): derived from the handshake's shared key
    /// under its own label, equal on both sides, fixed for the session's life. `None` for a
    /// session restored from state version 3, written before it existed: such a session
    /// keeps using public-key envelopes until the conversation starts a new session.
    #[must_use]
    pub fn envelope_secret(&self) -> Option<&EnvelopeSecret> {
        self.envelope_secret.as_ref()
    }

    /// Whether we are the initiator and have not yet heard back (messages are prekey messages).
    #[must_use]
    pub fn awaiting_reply(&self) -> bool {
        self.pending.is_some()
    }

    /// Stored skipped message keys.
    #[must_use]
    pub fn skipped_key_count(&self) -> usize {
        self.ratchet.skipped_len()
    }

    /// When the oldest stored skipped message key was stored (`None` without any), so the
    /// caller can schedule the [`Session::prune_skipped_keys`] deadline.
    #[must_use]
    pub fn oldest_skipped_key_at(&self) -> Option<Timestamp> {
        self.ratchet.oldest_skipped_key_at()
    }

    /// Our current ratchet public key (changes after each turn; exposed for tests and audits).
    #[must_use]
    pub fn current_ratchet_key(&self) -> X25519PublicKey {
        self.ratchet.our_ratchet_key()
    }

    fn associated_data(&self) -> Vec<u8> {
        match self.role {
            Side::Initiator => associated_data(&self.local, &self.remote),
            Side::Responder => associated_data(&self.remote, &self.local),
        }
    }

    /// Encrypts `plaintext` (padded first). Needs randomness only when a DH ratchet step is
    /// due, or on the first send of a session restored from bytes (which continues its
    /// sending chain on a fresh random branch, because the stored state may be older than the
    /// last one that sent). On error nothing changed.
    ///
    /// A `Session` value must have one future: encrypting on two clones (rather than on
    /// deserialised copies) reuses message keys.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<SessionMessage, EncryptError> {
        let ad = self.associated_data();
        let encrypted = self.ratchet.encrypt(rng, &ad, plaintext)?;
        Ok(match &self.pending {
            None => SessionMessage::Ratchet(encrypted.message),
            Some(p) => SessionMessage::PreKey(Box::new(PreKeyMessage {
                initiator: self.local,
                base_key: self.base_key,
                signed_prekey_id: p.signed_prekey_id,
                kem_prekey_id: p.kem_prekey_id,
                kem_ciphertext: p.kem_ciphertext.clone(),
                one_time_prekey_id: p.one_time_prekey_id,
                message: encrypted.message,
            })),
        })
    }

    /// Decrypts a message of this session. On any error the session is unchanged.
    pub fn decrypt(
        &mut self,
        message: &SessionMessage,
        now: Timestamp,
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        match message {
            SessionMessage::Ratchet(m) => self.decrypt_ratchet(m, now),
            SessionMessage::PreKey(p) => {
                if p.base_key != self.base_key || p.initiator != self.remote {
                    return Err(DecryptError::Authentication);
                }
                // The embedded ratchet message authenticates under this session's keys alone,
                // so the header fields around it are compared with the ones that created the
                // session: an altered copy is refused, whatever its ratchet message.
                let same = self
                    .prekey_header
                    .is_some_and(|h| ct_eq(&h, &p.header_digest()));
                if !same {
                    return Err(DecryptError::AlteredPreKeyMessage);
                }
                self.decrypt_ratchet(&p.message, now)
            }
        }
    }

    fn decrypt_ratchet(
        &mut self,
        message: &crate::message::RatchetMessage,
        now: Timestamp,
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let ad = self.associated_data();
        let plaintext = self.ratchet.decrypt(&ad, message, now)?;
        // Any authenticated message from the responder proves it has the session.
        if self.role == Side::Initiator {
            self.pending = None;
        }
        Ok(plaintext)
    }

    /// Erases every skipped message key stored before `cutoff`; returns how many.
    pub fn prune_skipped_keys(&mut self, cutoff: Timestamp) -> usize {
        self.ratchet.prune_skipped_keys(cutoff)
    }

    pub(crate) fn clear_skipped_keys(&mut self) {
        self.ratchet.clear_skipped_keys();
    }

    /// Serializes the session (secrets included: encrypt it with [`crate::storage`]). The
    /// buffer is wiped when dropped, and no copy is left behind while it is built.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(512);
        self.write(&mut w, None);
        w.into_zeroizing()
    }

    /// Restores a session from [`Session::to_bytes`], strictly. The restored session's next
    /// message starts a fresh sending chain or branch (see [`Session::encrypt`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let (s, _) = Self::read(&mut StateSource::Untrusted(&mut r), None)?;
        r.finish()?;
        Ok(s)
    }

    /// Restores a session from authenticated stored state (what [`crate::storage::open`]
    /// returns, or a field of it): parsing stays strict, but identity signatures and key
    /// pairs checked when the state was written are not checked again. There is no way to
    /// call this on bytes from anywhere else; use [`Session::from_bytes`] for those.
    ///
    /// ```compile_fail
    /// // The unchecked constructor from a byte slice is gone from the public API.
    /// let _ = confide_session::Session::from_authenticated_bytes(&[0u8; 4]);
    /// ```
    pub fn from_authenticated(mut r: AuthenticatedReader<'_>) -> Result<Self, DecodeError> {
        let (s, _) = Self::read(&mut StateSource::Authenticated(&mut r), None)?;
        r.finish()?;
        Ok(s)
    }

    /// Writes the session; in the compact form (`known`), an identity equal to the known one
    /// is left out, as a flags byte says (`docs/spec.md` §11).
    pub(crate) fn write(&self, w: &mut Writer, known: Option<KnownIdentities<'_>>) {
        w.u8(crate::state::SESSION_STATE_VERSION);
        match known {
            None => {
                w.bytes(&self.local.to_bytes())
                    .bytes(&self.remote.to_bytes());
            }
            Some(known) => {
                let local = self.local.to_bytes();
                let remote = self.remote.to_bytes();
                let local_known = local == known.local.to_bytes();
                let remote_known = remote == known.remote.to_bytes();
                w.u8(match (local_known, remote_known) {
                    (false, false) => 0,
                    (true, false) => 1,
                    (false, true) => 2,
                    (true, true) => 3,
                });
                if !local_known {
                    w.bytes(&local);
                }
                if !remote_known {
                    w.bytes(&remote);
                }
            }
        }
        w.u8(match self.role {
            Side::Initiator => 1,
            _ => 2,
        })
        .bytes(self.base_key.as_bytes());
        match &self.envelope_secret {
            None => {
                w.u8(0);
            }
            Some(secret) => {
                w.u8(1).bytes(secret.expose());
            }
        }
        match &self.pending {
            None => {
                w.u8(0);
            }
            Some(p) => {
                w.u8(1)
                    .u32(p.signed_prekey_id)
                    .u32(p.kem_prekey_id)
                    .bytes(p.kem_ciphertext.as_bytes());
                match p.one_time_prekey_id {
                    None => w.u8(0),
                    Some(id) => w.u8(1).u32(id),
                };
            }
        }
        if let Some(digest) = &self.prekey_header {
            w.bytes(digest);
        }
        self.ratchet.write(w);
    }

    /// Reads a session of the current version, or of version 3 (read without an envelope
    /// secret). Returns the version byte it found, so a record can insist that every session
    /// in it has the record's own version (one encoding per value).
    ///
    /// In the compact form (`known`, current version only) a flags byte says which identity
    /// was left out (bit 0: ours, bit 1: the peer's; no other bit); one written out must differ
    /// from the known one (one encoding per value).
    pub(crate) fn read(
        r: &mut StateSource<'_, '_>,
        known: Option<KnownIdentities<'_>>,
    ) -> Result<(Self, u8), DecodeError> {
        let version = r.u8()?;
        if version != crate::state::SESSION_STATE_VERSION
            && (known.is_some()
                || version != crate::state::SESSION_STATE_VERSION_WITHOUT_ENVELOPE_SECRET)
        {
            return Err(DecodeError::UnknownVersion {
                what: "session state",
                found: version,
            });
        }
        let (local, remote) = match known {
            None => (r.identity()?, r.identity()?),
            Some(known) => {
                let flags = r.u8()?;
                if flags > 3 {
                    return Err(DecodeError::InvalidValue {
                        field: "compact session identity flags",
                    });
                }
                let mut identity =
                    |elided: bool, given: &IdentityPublicKey| -> Result<_, DecodeError> {
                        if elided {
                            return Ok(*given);
                        }
                        let written = r.identity()?;
                        if written.to_bytes() == given.to_bytes() {
                            return Err(DecodeError::InvalidValue {
                                field: "compact session identity written out",
                            });
                        }
                        Ok(written)
                    };
                let local = identity(flags & 1 == 1, known.local)?;
                let remote = identity(flags & 2 == 2, known.remote)?;
                (local, remote)
            }
        };
        let role = match r.u8()? {
            1 => Side::Initiator,
            2 => Side::Responder,
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "session role",
                });
            }
        };
        let base_key = X25519PublicKey::from_bytes(r.array()?);
        let envelope_secret =
            if version == crate::state::SESSION_STATE_VERSION && r.bool("envelope secret flag")? {
                Some(EnvelopeSecret::new(r.array()?))
            } else {
                None
            };
        let pending = if r.bool("pending prekey flag")? {
            if role != Side::Initiator {
                return Err(DecodeError::InvalidValue {
                    field: "pending prekey flag",
                });
            }
            let signed_prekey_id = r.u32()?;
            let kem_prekey_id = r.u32()?;
            let kem_ciphertext = KemCiphertext::from_bytes(r.bytes(KEM_CIPHERTEXT_LEN)?).ok_or(
                DecodeError::InvalidValue {
                    field: "kem ciphertext",
                },
            )?;
            let one_time_prekey_id = if r.bool("one-time prekey flag")? {
                Some(r.u32()?)
            } else {
                None
            };
            Some(PendingPreKey {
                signed_prekey_id,
                kem_prekey_id,
                kem_ciphertext,
                one_time_prekey_id,
            })
        } else {
            None
        };
        // A responder session always remembers the header that created it.
        let prekey_header = match role {
            Side::Responder => Some(r.array()?),
            Side::Initiator => None,
        };
        let ratchet = DoubleRatchet::read(r)?;
        Ok((
            Self {
                local,
                remote,
                role,
                base_key,
                pending,
                prekey_header,
                envelope_secret,
                ratchet,
            },
            version,
        ))
    }
}
