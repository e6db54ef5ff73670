//! Sealing and opening envelopes that hide the sender from the relay.

use core::fmt;

use confide_crypto::{
    CryptoError, CryptoRng, Duration, Timestamp,
    aead::{self, NONCE_LEN},
    codec::{DecodeError, Reader},
    identity::{IdentityKeyPair, IdentityPublicKey},
    kdf::{hkdf_sha256_multi, labels},
    secret::{AeadKey, SharedSecret, ct_eq},
    x25519::{X25519KeyPair, X25519PublicKey},
};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::{
    CertificateError, SenderCertificate, TrustRoots, ValidatedSender,
    consts::{
        ENVELOPE_VERSION, MAX_PAYLOAD_LEN, MAX_SENDER_CERTIFICATE_LEN, SEALED_SENDER_KEY_LEN,
        SEALED_SENDER_KEY_PLAINTEXT_LEN, SENDER_CERTIFICATE_REGION_LEN, envelope_len,
    },
};

/// Both AEAD layers use this all-zero nonce. Safe because each key encrypts exactly one
/// message: the ephemeral-layer key comes from a fresh ephemeral X25519 key, and the
/// static-layer key is salted with the ephemeral layer's chain key, so it is fresh too.
const ZERO_NONCE: [u8; NONCE_LEN] = [0; NONCE_LEN];

confide_crypto::define_secret!(
    /// The ephemeral layer's chain key: salts the static layer's key derivation, so both
    /// layers' keys are fresh for every envelope.
    struct EphemeralChainKey(32);
);

confide_crypto::define_secret!(
    /// The second 32 bytes of a public-key envelope's static-layer HKDF output: a secret only
    /// its sender and recipient know, fresh for every envelope (it depends on the envelope's
    /// ephemeral key), and authenticated both ways (it depends on the sender's static key).
    /// It starts a symmetric epoch ([`SymmetricSealer`](crate::SymmetricSealer) on the sending
    /// side, [`TagWindow`](crate::TagWindow) on the receiving side); `docs/sealed-sender.md` §9.
    pub struct EpochSeed(32);
);

/// Why [`seal`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SealError {
    /// The payload is longer than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the maximum {max}")]
    PayloadTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The sender certificate names an identity other than the sealing identity.
    #[error("the sender certificate does not belong to the sealing identity")]
    CertificateNotOurs,
    /// The recipient is the sender itself.
    #[error("an envelope cannot be addressed to its own sender")]
    SelfAddressed,
    /// The recipient's agreement key is a low-order point.
    #[error("the recipient's agreement key is invalid")]
    InvalidRecipientKey,
    /// A certificate longer than [`MAX_SENDER_CERTIFICATE_LEN`] (cannot come from this crate).
    #[error("sender certificate of {len} bytes exceeds the maximum {max}")]
    CertificateTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Key derivation failed (cannot happen with the fixed output lengths used here; present
    /// so that no path can panic).
    #[error("key derivation failed")]
    KeyDerivation,
}

/// Why [`open`] refused. One variant per check, in the order the checks run (see [`open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The envelope, its plaintext or the certificate inside is malformed.
    #[error("malformed envelope: {0}")]
    Decode(#[from] DecodeError),
    /// A public key in the envelope is a low-order point.
    #[error("low-order key in envelope")]
    WeakKey,
    /// An AEAD layer failed to authenticate (tampered, or not for this recipient).
    #[error("envelope failed to decrypt")]
    Decrypt,
    /// The envelope was sealed to a different identity that shares this agreement key.
    #[error("envelope is bound to a different recipient identity")]
    WrongRecipient,
    /// The certificate's identity is not the identity that sealed the envelope.
    #[error("certificate identity does not match the sealing key")]
    IdentityMismatch,
    /// The envelope claims to come from the recipient itself.
    #[error("envelope claims to come from the recipient itself")]
    SelfSent,
    /// The sender certificate chain is not valid at `now` under the trust roots (unknown or
    /// revoked key, bad signature, expiry: see [`CertificateError`]).
    #[error("sender certificate refused: {0}")]
    Certificate(#[from] CertificateError),
    /// Key derivation failed (cannot happen with the fixed output lengths used here).
    #[error("key derivation failed")]
    KeyDerivation,
}

/// A successfully opened envelope.
#[non_exhaustive]
#[must_use]
pub struct Opened {
    /// Who sent it, as vouched for by a valid certificate chain and proven by the static layer.
    pub sender: ValidatedSender,
    /// The payload (an opaque session message).
    pub payload: Vec<u8>,
    /// The seed of the symmetric epoch this envelope starts (the sender got the same value
    /// from [`seal_starting_epoch`]). Install a [`TagWindow`](crate::TagWindow) from it only
    /// once the payload authenticated in the sender's session.
    pub epoch_seed: EpochSeed,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            sender,
            payload,
            epoch_seed: _,
        } = self;
        f.debug_struct("Opened")
            .field("sender", sender)
            .field("payload_len", &payload.len())
            .finish()
    }
}

/// The outer structure of an envelope: everything the relay sees.
///
/// `version (1) = 0x01 || ephemeral X25519 public key (32) || sealed sender key (112) ||
/// sealed content (certificate region + payload + 16-byte tag)`. Nothing here depends on
/// who the sender is.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEnvelope {
    ephemeral_key: X25519PublicKey,
    sealed_sender_key: [u8; SEALED_SENDER_KEY_LEN],
    sealed_content: Vec<u8>,
}

/// Shortest sealed content: the certificate region and a tag (an empty payload).
const MIN_SEALED_CONTENT_LEN: usize = SENDER_CERTIFICATE_REGION_LEN + aead::TAG_LEN;
/// Longest sealed content.
const MAX_SEALED_CONTENT_LEN: usize = MIN_SEALED_CONTENT_LEN + MAX_PAYLOAD_LEN;

impl SealedEnvelope {
    /// Strictly decodes the outer structure (version, lengths within bounds). Says nothing
    /// about whether it decrypts.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != ENVELOPE_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "sealed envelope",
                found: version,
            });
        }
        let ephemeral_key =
            X25519PublicKey::from_canonical_bytes(r.array()?).ok_or(DecodeError::InvalidValue {
                field: "x25519 public key",
            })?;
        let sealed_sender_key = r.array()?;
        let sealed_content = r.rest();
        if sealed_content.len() < MIN_SEALED_CONTENT_LEN {
            return Err(DecodeError::UnexpectedEnd {
                offset: r.offset(),
                needed: MIN_SEALED_CONTENT_LEN.saturating_sub(sealed_content.len()),
            });
        }
        if sealed_content.len() > MAX_SEALED_CONTENT_LEN {
            return Err(DecodeError::TooLong {
                field: "sealed content",
                len: sealed_content.len(),
                max: MAX_SEALED_CONTENT_LEN,
            });
        }
        r.finish()?;
        Ok(Self {
            ephemeral_key,
            sealed_sender_key,
            sealed_content: sealed_content.to_vec(),
        })
    }

    /// The exact encoding.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(1 + 32 + SEALED_SENDER_KEY_LEN + self.sealed_content.len());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(self.ephemeral_key.as_bytes());
        out.extend_from_slice(&self.sealed_sender_key);
        out.extend_from_slice(&self.sealed_content);
        out
    }

    /// The ephemeral public key (fresh per envelope; says nothing about the sender).
    #[must_use]
    pub fn ephemeral_key(&self) -> &X25519PublicKey {
        &self.ephemeral_key
    }

    /// The payload length this envelope carries.
    #[must_use]
    pub fn payload_len(&self) -> usize {
        self.sealed_content
            .len()
            .saturating_sub(MIN_SEALED_CONTENT_LEN)
    }
}

impl fmt::Debug for SealedEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            ephemeral_key: _,
            sealed_sender_key: _,
            sealed_content: _,
        } = self;
        f.debug_struct("SealedEnvelope")
            .field("payload_len", &self.payload_len())
            .finish_non_exhaustive()
    }
}

/// Ephemeral layer: `HKDF-SHA256(salt = none, ikm = X25519(e, R), info = SEALED_EPHEMERAL ||
/// version || E || R_agreement)`, 64 bytes split into chain key and AEAD key.
fn ephemeral_layer_keys(
    shared: &SharedSecret,
    ephemeral: &X25519PublicKey,
    recipient_agreement: &X25519PublicKey,
) -> Result<(EphemeralChainKey, AeadKey), CryptoError> {
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf_sha256_multi(
        None,
        shared.expose(),
        &[
            labels::SEALED_EPHEMERAL,
            &[ENVELOPE_VERSION],
            ephemeral.as_bytes(),
            recipient_agreement.as_bytes(),
        ],
        okm.as_mut_slice(),
    )?;
    let (chain, key) = okm.split_at(32);
    let chain = EphemeralChainKey::from_slice(chain).ok_or(CryptoError::KdfLength)?;
    let key = AeadKey::from_slice(key).ok_or(CryptoError::KdfLength)?;
    Ok((chain, key))
}

/// Static layer: `HKDF-SHA256(salt = chain key, ikm = X25519(S, R), info = SEALED_STATIC ||
/// version || E || sealed sender key || recipient key bytes)`, 64 bytes: the static layer's
/// AEAD key, then the envelope's epoch seed. (HKDF's first 32 output bytes do not depend on
/// the output length, so the key is what a 32-byte derivation gives.)
fn static_layer_key(
    shared: &SharedSecret,
    chain: &EphemeralChainKey,
    ephemeral: &X25519PublicKey,
    sealed_sender_key: &[u8],
    recipient_key_bytes: &[u8; 64],
) -> Result<(AeadKey, EpochSeed), CryptoError> {
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf_sha256_multi(
        Some(chain.expose()),
        shared.expose(),
        &[
            labels::SEALED_STATIC,
            &[ENVELOPE_VERSION],
            ephemeral.as_bytes(),
            sealed_sender_key,
            recipient_key_bytes,
        ],
        okm.as_mut_slice(),
    )?;
    let (key, seed) = okm.split_at(32);
    let key = AeadKey::from_slice(key).ok_or(CryptoError::KdfLength)?;
    let seed = EpochSeed::from_slice(seed).ok_or(CryptoError::KdfLength)?;
    Ok((key, seed))
}

fn ephemeral_layer_aad(ephemeral: &X25519PublicKey) -> [u8; 33] {
    let mut aad = [0u8; 33];
    let (v, e) = aad.split_at_mut(1);
    v.copy_from_slice(&[ENVELOPE_VERSION]);
    e.copy_from_slice(ephemeral.as_bytes());
    aad
}

fn static_layer_aad(
    ephemeral: &X25519PublicKey,
    sealed_sender_key: &[u8],
    recipient_key_bytes: &[u8; 64],
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + 32 + SEALED_SENDER_KEY_LEN + 64);
    aad.push(ENVELOPE_VERSION);
    aad.extend_from_slice(ephemeral.as_bytes());
    aad.extend_from_slice(sealed_sender_key);
    aad.extend_from_slice(recipient_key_bytes);
    aad
}

/// Seals `payload` from the holder of `sender_identity` (vouched for by `sender_cert`) to
/// `recipient`. Returns the envelope bytes, of length
/// [`envelope_len`]`(payload.len())` whatever the certificate holds.
///
/// ```text
/// e <- fresh X25519 key pair; E = e.public
/// chain, k1 = HKDF(ikm = X25519(e, R_agree), info = SEALED_EPHEMERAL || v || E || R_agree)
/// c1 = AEAD(k1, nonce 0, aad = v || E, S_agree || R_signing || R_agree)
/// k2 = HKDF(salt = chain, ikm = X25519(S, R_agree), info = SEALED_STATIC || v || E || c1 || R_keys)
/// c2 = AEAD(k2, nonce 0, aad = v || E || c1 || R_keys, certificate region || payload)
/// envelope = v || E || c1 || c2
/// ```
///
/// The payload is not padded here: it is a session message, which the session layer has
/// already padded, and the envelope adds a constant [`ENVELOPE_OVERHEAD`](crate::ENVELOPE_OVERHEAD).
pub fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    sender_identity: &IdentityKeyPair,
    sender_cert: &SenderCertificate,
    recipient: &IdentityPublicKey,
    payload: &[u8],
) -> Result<Vec<u8>, SealError> {
    seal_starting_epoch(rng, sender_identity, sender_cert, recipient, payload)
        .map(|(envelope, _)| envelope)
}

/// As [`seal`], and also returns the envelope's [`EpochSeed`]: the recipient gets the same
/// value in [`Opened::epoch_seed`]. A sender that wants to continue with symmetric envelopes
/// makes a [`SymmetricSealer`](crate::SymmetricSealer) from it and uses it once the recipient
/// acknowledged this envelope (`docs/sealed-sender.md` §9.5). The envelope bytes are exactly
/// those of [`seal`] with the same RNG.
pub fn seal_starting_epoch<R: CryptoRng + ?Sized>(
    rng: &mut R,
    sender_identity: &IdentityKeyPair,
    sender_cert: &SenderCertificate,
    recipient: &IdentityPublicKey,
    payload: &[u8],
) -> Result<(Vec<u8>, EpochSeed), SealError> {
    let total_len = envelope_len(payload.len()).ok_or(SealError::PayloadTooLong {
        len: payload.len(),
        max: MAX_PAYLOAD_LEN,
    })?;
    let sender_public = sender_identity.public();
    if sender_cert.identity() != &sender_public {
        return Err(SealError::CertificateNotOurs);
    }
    if recipient == &sender_public || recipient.agreement_key() == sender_public.agreement_key() {
        return Err(SealError::SelfAddressed);
    }
    let cert = sender_cert.as_bytes();
    let cert_len = u16::try_from(cert.len())
        .ok()
        .filter(|l| usize::from(*l) <= MAX_SENDER_CERTIFICATE_LEN)
        .ok_or(SealError::CertificateTooLong {
            len: cert.len(),
            max: MAX_SENDER_CERTIFICATE_LEN,
        })?;

    let recipient_agreement = recipient.agreement_key();
    let recipient_key_bytes = recipient.key_bytes();

    // Ephemeral layer.
    let ephemeral = X25519KeyPair::generate(rng);
    let ephemeral_public = ephemeral.public_key();
    let shared = ephemeral
        .agree(recipient_agreement)
        .map_err(|_| SealError::InvalidRecipientKey)?;
    let (chain, k1) = ephemeral_layer_keys(&shared, &ephemeral_public, recipient_agreement)
        .map_err(|_| SealError::KeyDerivation)?;
    drop(ephemeral);
    let mut layer1 = [0u8; SEALED_SENDER_KEY_PLAINTEXT_LEN];
    {
        let (s, r) = layer1.split_at_mut(32);
        s.copy_from_slice(sender_public.agreement_key().as_bytes());
        r.copy_from_slice(&recipient_key_bytes);
    }
    let sealed_sender_key = aead::seal(
        &k1,
        &ZERO_NONCE,
        &ephemeral_layer_aad(&ephemeral_public),
        &layer1,
    );

    // Static layer.
    let shared = sender_identity
        .agreement()
        .agree(recipient_agreement)
        .map_err(|_| SealError::InvalidRecipientKey)?;
    let (k2, epoch_seed) = static_layer_key(
        &shared,
        &chain,
        &ephemeral_public,
        &sealed_sender_key,
        &recipient_key_bytes,
    )
    .map_err(|_| SealError::KeyDerivation)?;
    let mut content = Vec::with_capacity(
        SENDER_CERTIFICATE_REGION_LEN
            .saturating_add(payload.len())
            .saturating_add(aead::TAG_LEN),
    );
    content.extend_from_slice(&cert_len.to_be_bytes());
    content.extend_from_slice(cert);
    content.resize(SENDER_CERTIFICATE_REGION_LEN, 0);
    content.extend_from_slice(payload);
    aead::seal_in_place(
        &k2,
        &ZERO_NONCE,
        &static_layer_aad(&ephemeral_public, &sealed_sender_key, &recipient_key_bytes),
        &mut content,
    );

    let mut out = Vec::with_capacity(total_len);
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(ephemeral_public.as_bytes());
    out.extend_from_slice(&sealed_sender_key);
    out.extend_from_slice(&content);
    Ok((out, epoch_seed))
}

/// Splits the static layer's plaintext into the certificate bytes and the payload, strictly
/// (the length is bounded and the padding is all zeros).
fn split_content(plaintext: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let (region, payload) = plaintext
        .split_at_checked(SENDER_CERTIFICATE_REGION_LEN)
        .ok_or(DecodeError::UnexpectedEnd {
            offset: 0,
            needed: SENDER_CERTIFICATE_REGION_LEN.saturating_sub(plaintext.len()),
        })?;
    let mut r = Reader::new(region);
    let cert = r.var16("sender certificate", MAX_SENDER_CERTIFICATE_LEN)?;
    if r.rest().iter().any(|b| *b != 0) {
        return Err(DecodeError::InvalidValue {
            field: "certificate region padding",
        });
    }
    Ok((cert, payload))
}

/// Opens an envelope addressed to `recipient_identity`, validating everything at `now`.
///
/// A pure function: it reads its arguments and returns a value, so a failure changes
/// nothing. The checks run in this order, each with its own error:
///
/// 1. outer structure ([`OpenError::Decode`]);
/// 2. ephemeral key contributes ([`OpenError::WeakKey`]); ephemeral layer decrypts
///    ([`OpenError::Decrypt`]);
/// 3. the recipient identity sealed inside is ours ([`OpenError::WrongRecipient`]);
/// 4. sender's static key contributes ([`OpenError::WeakKey`]); static layer decrypts
///    ([`OpenError::Decrypt`]);
/// 5. certificate region and certificate decode ([`OpenError::Decode`]);
/// 6. the certificate's identity agreement key is the key that sealed
///    ([`OpenError::IdentityMismatch`]);
/// 7. the sender is not the recipient ([`OpenError::SelfSent`]);
/// 8. the chain ([`SenderCertificate::validate`]): unknown root, bad root signature, server
///    expired, server revoked, bad server signature, sender expired.
pub fn open(
    recipient_identity: &IdentityKeyPair,
    roots: &TrustRoots,
    now: Timestamp,
    envelope: &[u8],
) -> Result<Opened, OpenError> {
    open_with_grace(recipient_identity, roots, now, Duration::ZERO, envelope)
}

/// As [`open`], but step 8 accepts a sender or server certificate that expired less than
/// `grace` before `now` ([`SenderCertificate::validate_with_grace`]). For recipients: a
/// message sealed while its certificate was valid may wait in a mailbox past the expiry.
/// [`Opened::sender`] keeps the real expiry, so the caller can see that grace was used.
pub fn open_with_grace(
    recipient_identity: &IdentityKeyPair,
    roots: &TrustRoots,
    now: Timestamp,
    grace: Duration,
    envelope: &[u8],
) -> Result<Opened, OpenError> {
    let envelope = SealedEnvelope::from_bytes(envelope)?;
    let recipient_public = recipient_identity.public();
    let recipient_agreement = recipient_public.agreement_key();
    let recipient_key_bytes = recipient_public.key_bytes();
    let ephemeral = envelope.ephemeral_key;

    // Ephemeral layer.
    let shared = recipient_identity
        .agreement()
        .agree(&ephemeral)
        .map_err(|_| OpenError::WeakKey)?;
    let (chain, k1) = ephemeral_layer_keys(&shared, &ephemeral, recipient_agreement)
        .map_err(|_| OpenError::KeyDerivation)?;
    let layer1 = aead::open(
        &k1,
        &ZERO_NONCE,
        &ephemeral_layer_aad(&ephemeral),
        &envelope.sealed_sender_key,
    )
    .map_err(|_| OpenError::Decrypt)?;
    let (sender_agreement, sealed_recipient) =
        layer1
            .split_at_checked(32)
            .ok_or(OpenError::Decode(DecodeError::InvalidValue {
                field: "sealed sender key",
            }))?;
    if !ct_eq(sealed_recipient, &recipient_key_bytes) {
        return Err(OpenError::WrongRecipient);
    }
    let sender_agreement: [u8; 32] =
        sender_agreement
            .try_into()
            .map_err(|_| DecodeError::InvalidValue {
                field: "sealed sender key",
            })?;
    let sender_agreement = X25519PublicKey::from_bytes(sender_agreement);

    // Static layer.
    let shared = recipient_identity
        .agreement()
        .agree(&sender_agreement)
        .map_err(|_| OpenError::WeakKey)?;
    let (k2, epoch_seed) = static_layer_key(
        &shared,
        &chain,
        &ephemeral,
        &envelope.sealed_sender_key,
        &recipient_key_bytes,
    )
    .map_err(|_| OpenError::KeyDerivation)?;
    let content = aead::open(
        &k2,
        &ZERO_NONCE,
        &static_layer_aad(
            &ephemeral,
            &envelope.sealed_sender_key,
            &recipient_key_bytes,
        ),
        &envelope.sealed_content,
    )
    .map_err(|_| OpenError::Decrypt)?;
    let (cert, payload) = split_content(&content)?;
    // Strict decoding, binding signature included: the unchecked identity reader is reserved
    // for authenticated stored state (confide_crypto::stored), not for network bytes.
    let cert = SenderCertificate::from_bytes(cert)?;

    if cert.identity().agreement_key() != &sender_agreement {
        return Err(OpenError::IdentityMismatch);
    }
    if cert.identity() == &recipient_public || &sender_agreement == recipient_agreement {
        return Err(OpenError::SelfSent);
    }
    let sender = cert.validate_with_grace(roots, now, grace)?;
    Ok(Opened {
        sender,
        payload: payload.to_vec(),
        epoch_seed,
    })
}
