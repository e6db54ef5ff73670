//! HKDF-SHA256 and HMAC-SHA256 with named labels.
//!
//! Every `info` string and every signature context in Confide is a constant in [`labels`],
//! so an auditor can see all domain separation in one place and no two uses collide.

use crate::CryptoError;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Every KDF `info` label and signature context used by Confide. Each is unique.
pub mod labels {
    /// Signature context: an identity's Ed25519 key signs its X25519 key.
    pub const IDENTITY_BINDING: &[u8] = b"Confide_v1_IdentityBinding";
    /// Signature context: a signed X25519 prekey.
    pub const SIGNED_PREKEY: &[u8] = b"Confide_v1_SignedPreKey";
    /// Signature context: a signed ML-KEM-768 prekey.
    pub const KEM_PREKEY: &[u8] = b"Confide_v1_KemPreKey";
    /// HKDF info: the hybrid handshake's shared key.
    pub const HANDSHAKE: &[u8] = b"Confide_v1_PQXDH_X25519_SHA-256_ML-KEM-768";
    /// Prefix of every session's associated data.
    pub const ASSOCIATED_DATA: &[u8] = b"Confide_v1_AssociatedData";
    /// HKDF info: a Double Ratchet root-key step.
    pub const ROOT_STEP: &[u8] = b"Confide_v1_RootStep";
    /// HMAC input that derives a message key from a chain key.
    pub const MESSAGE_KEY_SEED: &[u8] = &[0x01];
    /// HMAC input that advances a chain key.
    pub const CHAIN_KEY_SEED: &[u8] = &[0x02];
    /// HKDF info: the key that encrypts stored state.
    pub const STATE_ENCRYPTION: &[u8] = b"Confide_v1_StateEncryption";
    /// HKDF info: the key-check value that tells a wrong storage key from tampering.
    pub const STATE_KEY_CHECK: &[u8] = b"Confide_v1_StateKeyCheck";
    /// Hash prefix: the digest of a prekey message's header that a responder session keeps,
    /// so that repeats of the message are accepted only unaltered.
    pub const PREKEY_HEADER: &[u8] = b"Confide_v1_PreKeyHeader";
    /// Hash prefix: the storage slot (caller context) a state blob is bound to.
    pub const STATE_SLOT: &[u8] = b"Confide_v1_StateSlot";
    /// HKDF info prefix: the key of a record store's blobs (one per store slot and kind).
    pub const RECORD_ENCRYPTION: &[u8] = b"Confide_v1_RecordEncryption";
    /// HKDF info prefix: the key check value of a record store's blobs.
    pub const RECORD_KEY_CHECK: &[u8] = b"Confide_v1_RecordKeyCheck";
    /// Hash prefix: safety-number fingerprints.
    pub const SAFETY_NUMBER: &[u8] = b"Confide_v1_SafetyNumber";
    /// HKDF info: the session identifier.
    pub const SESSION_ID: &[u8] = b"Confide_v1_SessionId";
    /// Signature context: a server certificate, signed by a trust root.
    pub const SERVER_CERTIFICATE: &[u8] = b"Confide_v1_ServerCertificate";
    /// Signature context: a sender certificate, signed by a server key.
    pub const SENDER_CERTIFICATE: &[u8] = b"Confide_v1_SenderCertificate";
    /// HKDF info: sealed-sender ephemeral layer.
    pub const SEALED_EPHEMERAL: &[u8] = b"Confide_v1_SealedSender_Ephemeral";
    /// HKDF info: sealed-sender static layer.
    pub const SEALED_STATIC: &[u8] = b"Confide_v1_SealedSender_Static";
    /// HKDF info: delivery (unidentified access) tokens.
    pub const DELIVERY_TOKEN: &[u8] = b"Confide_v1_DeliveryToken";
    /// HKDF info: the envelope secret a session exports at establishment, from which the
    /// symmetric sealed-sender envelopes of its conversation derive their keys.
    pub const ENVELOPE_EXPORTER: &[u8] = b"Confide_v1_EnvelopeExporter";
    /// HKDF info: a symmetric sealed-sender epoch's tag key and message root.
    pub const SYMMETRIC_EPOCH: &[u8] = b"Confide_v1_SymmetricEnvelope_Epoch";
    /// HMAC input prefix: the tag of one symmetric envelope.
    pub const SYMMETRIC_TAG: &[u8] = b"Confide_v1_SymmetricEnvelope_Tag";
    /// HKDF info: a symmetric sealed-sender epoch's AEAD key and nonce base (the nonce of
    /// envelope `i` is the base XOR `i`).
    pub const SYMMETRIC_KEYS: &[u8] = b"Confide_v1_SymmetricEnvelope_Keys";
    /// HKDF info prefix: the message store's wrapping root key, per account slot
    /// (confide-store, `docs/store.md`).
    pub const TRANSCRIPT_WRAP_ROOT: &[u8] = b"Confide_v1_Transcript_WrapRoot";
    /// HKDF info prefix: the message store's key for row lookup tags, per account slot.
    pub const TRANSCRIPT_TAG_KEY: &[u8] = b"Confide_v1_Transcript_TagKey";
    /// HKDF info prefix: the message store's key-check value, per account slot (tells a wrong
    /// storage key at open).
    pub const TRANSCRIPT_KEY_CHECK: &[u8] = b"Confide_v1_Transcript_KeyCheck";
    /// HKDF info: the key that wraps one stored message's key (salted per message).
    pub const TRANSCRIPT_KEY_WRAP: &[u8] = b"Confide_v1_Transcript_KeyWrap";
    /// HKDF info prefix: the chunk key of one attachment stream, from its random key and salt
    /// (confide-attachment, `docs/attachments.md`).
    pub const ATTACHMENT_CHUNK_KEY: &[u8] = b"Confide_v1_Attachment_ChunkKey";
    /// SPAKE2 identity prefix of a verification by short code: followed by one party's
    /// identity public key (confide, `docs/endpoint.md`, "Verification with a short code").
    pub const SHORT_CODE_IDENTITY: &[u8] = b"Confide_v1_ShortCode_Identity";
    /// HKDF info prefix: one side's key confirmation of a verification by short code,
    /// followed by the side's byte.
    pub const SHORT_CODE_CONFIRM: &[u8] = b"Confide_v1_ShortCode_Confirm";
    /// HKDF info: the token that deletes an attachment's blob from the relay, from the
    /// attachment key (confide-attachment, `docs/attachments.md` §5.1).
    pub const ATTACHMENT_BLOB_DELETE_TOKEN: &[u8] = b"Confide_v1_Attachment_BlobDeleteToken";
}

/// HKDF-SHA256: extract with `salt` (or 32 zero bytes when `None`), then expand `info` into `out`.
pub fn hkdf_sha256(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, out)
        .map_err(|_| CryptoError::KdfLength)
}

/// HKDF-SHA256 with `info` given in parts that are concatenated (no copy).
pub fn hkdf_sha256_multi(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    Hkdf::<Sha256>::new(salt, ikm)
        .expand_multi_info(info, out)
        .map_err(|_| CryptoError::KdfLength)
}

/// HKDF-SHA256 with one extract and one expand per output: fills each `(info parts, out)`
/// exactly as [`hkdf_sha256_multi`] with the same `salt` and `ikm` would, for one
/// extraction (two compression-function calls and a key setup) instead of one per output.
pub fn hkdf_sha256_multi_outputs(
    salt: Option<&[u8]>,
    ikm: &[u8],
    outputs: &mut [(&[&[u8]], &mut [u8])],
) -> Result<(), CryptoError> {
    let hkdf = Hkdf::<Sha256>::new(salt, ikm);
    for (info, out) in outputs.iter_mut() {
        hkdf.expand_multi_info(info, out)
            .map_err(|_| CryptoError::KdfLength)?;
    }
    Ok(())
}

/// HMAC-SHA256 of `data` under `key`. The output is a key in every use (chain and message
/// keys), so it is returned in a wrapper that wipes it when dropped.
#[must_use]
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    hmac_sha256_parts(key, &[data])
}

/// HMAC-SHA256 of the concatenation of `parts` under `key` (wiped when dropped).
#[must_use]
pub fn hmac_sha256_parts(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return out;
    };
    for p in parts {
        mac.update(p);
    }
    let mut tag = mac.finalize().into_bytes();
    out.copy_from_slice(&tag);
    zeroize::Zeroize::zeroize(tag.as_mut_slice());
    out
}

/// HMAC-SHA-256 keyed once for many messages: [`HmacSha256Keyed::mac`] computes what
/// [`hmac_sha256_parts`] does with the same key, without repeating the key's two
/// compression-function calls per message (half the cost of a short message). For deriving
/// many values under one key (the tags of a symmetric envelope epoch). The keyed state is as
/// secret as the key: it is wiped when dropped (the `zeroize` feature of `hmac` and `sha2`,
/// checked at compile time below).
#[derive(Clone)]
pub struct HmacSha256Keyed(HmacSha256);

// The keyed state wipes itself when dropped: `Hmac` declares nothing itself, but its two
// SHA-256 cores (inner and outer) and its block buffer each wipe themselves with the
// `zeroize` features. This stops compiling if those features are ever turned off.
const _: fn() = || {
    use hmac::digest::block_api::{Buffer, EagerHash};
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<<sha2::Sha256 as EagerHash>::Core>();
    wiped_on_drop::<Buffer<hmac::block_api::HmacCore<sha2::Sha256>>>();
};

impl HmacSha256Keyed {
    /// Keys the HMAC with `key`.
    #[must_use]
    pub fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of any length; `new_from_slice` never fails for it.
        match HmacSha256::new_from_slice(key) {
            Ok(mac) => Self(mac),
            Err(_) => Self(<HmacSha256 as KeyInit>::new(&Default::default())),
        }
    }

    /// HMAC-SHA-256 of the concatenation of `parts` under the key.
    #[must_use]
    pub fn mac(&self, parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let mut mac = self.0.clone();
        for p in parts {
            mac.update(p);
        }
        let mut tag = mac.finalize().into_bytes();
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&tag);
        zeroize::Zeroize::zeroize(tag.as_mut_slice());
        out
    }
}

impl core::fmt::Debug for HmacSha256Keyed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self(_) = self;
        f.write_str("HmacSha256Keyed([REDACTED])")
    }
}

/// SHA-256 of the concatenation of `parts`.
#[must_use]
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA-512 of the concatenation of `parts`.
#[must_use]
pub fn sha512(parts: &[&[u8]]) -> [u8; 64] {
    use sha2::Digest;
    let mut h = sha2::Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_extract_for_several_outputs_matches_separate_derivations() {
        let (salt, ikm) = ([3u8; 16], [5u8; 32]);
        let mut a = [0u8; 32];
        let mut b = [0u8; 7];
        hkdf_sha256_multi_outputs(
            Some(&salt),
            &ikm,
            &mut [(&[b"one", b"-a"], &mut a), (&[b"two"], &mut b)],
        )
        .unwrap();
        let mut a2 = [0u8; 32];
        let mut b2 = [0u8; 7];
        hkdf_sha256_multi(Some(&salt), &ikm, &[b"one-a"], &mut a2).unwrap();
        hkdf_sha256(Some(&salt), &ikm, b"two", &mut b2).unwrap();
        assert_eq!((a, b), (a2, b2));
        // An output HKDF cannot produce is an error, as for one output.
        let mut huge = vec![0u8; 255 * 32 + 1];
        assert_eq!(
            hkdf_sha256_multi_outputs(None, &ikm, &mut [(&[b"x"], &mut huge)]),
            Err(CryptoError::KdfLength)
        );
    }

    #[test]
    fn keyed_hmac_matches_hmac_of_parts_and_rfc4231() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let keyed = HmacSha256Keyed::new(b"Jefe");
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(
            hex::encode(*keyed.mac(&[b"what do ya want ", b"for nothing?"])),
            expected
        );
        // Reusable: the keyed state is not consumed by a message.
        assert_eq!(
            hex::encode(*keyed.mac(&[b"what do ya want for nothing?"])),
            expected
        );
        for key in [&[][..], &[7u8; 32][..], &[9u8; 100][..]] {
            let keyed = HmacSha256Keyed::new(key);
            for i in 0u64..40 {
                let parts: [&[u8]; 2] = [labels::SYMMETRIC_TAG, &i.to_be_bytes()];
                assert_eq!(*keyed.mac(&parts), *hmac_sha256_parts(key, &parts));
            }
        }
    }

    #[test]
    fn rfc5869_case_1() {
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let mut okm = [0u8; 42];
        hkdf_sha256(Some(&salt), &ikm, &info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn rfc4231_case_2() {
        assert_eq!(
            hex::encode(*hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn labels_are_distinct() {
        let all: &[&[u8]] = &[
            labels::IDENTITY_BINDING,
            labels::SIGNED_PREKEY,
            labels::KEM_PREKEY,
            labels::HANDSHAKE,
            labels::ASSOCIATED_DATA,
            labels::ROOT_STEP,
            labels::STATE_ENCRYPTION,
            labels::STATE_KEY_CHECK,
            labels::STATE_SLOT,
            labels::RECORD_ENCRYPTION,
            labels::RECORD_KEY_CHECK,
            labels::PREKEY_HEADER,
            labels::SAFETY_NUMBER,
            labels::SESSION_ID,
            labels::SERVER_CERTIFICATE,
            labels::SENDER_CERTIFICATE,
            labels::SEALED_EPHEMERAL,
            labels::SEALED_STATIC,
            labels::DELIVERY_TOKEN,
            labels::ENVELOPE_EXPORTER,
            labels::SYMMETRIC_EPOCH,
            labels::SYMMETRIC_TAG,
            labels::SYMMETRIC_KEYS,
            labels::TRANSCRIPT_WRAP_ROOT,
            labels::TRANSCRIPT_TAG_KEY,
            labels::TRANSCRIPT_KEY_CHECK,
            labels::TRANSCRIPT_KEY_WRAP,
            labels::ATTACHMENT_CHUNK_KEY,
            labels::ATTACHMENT_BLOB_DELETE_TOKEN,
            labels::SHORT_CODE_IDENTITY,
            labels::SHORT_CODE_CONFIRM,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
                assert!(
                    !a.starts_with(b) && !b.starts_with(a),
                    "no label is a prefix of another"
                );
            }
        }
    }
}
