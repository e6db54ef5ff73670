//! The values a pointer names an attachment by: its key (secret), the blob id the relay
//! stores it under, and the digest of its ciphertext.

use core::fmt;

use confide_crypto::{
    CryptoRng, define_secret,
    kdf::{hkdf_sha256, labels, sha256},
    random_array,
};
use zeroize::Zeroizing;

use crate::consts::{BLOB_ID_LEN, DELETE_TOKEN_LEN, DIGEST_LEN, KEY_LEN};

define_secret!(
    /// The random 32-byte key of one attachment: drawn fresh for every attachment by
    /// [`AttachmentEncryptor::new`](crate::AttachmentEncryptor::new), carried only inside the
    /// end-to-end encrypted message ([`AttachmentPointer`](crate::AttachmentPointer)), and
    /// erased with it when the message expires. Zeroized on drop, compared in constant time,
    /// printed as `AttachmentKey([REDACTED])`.
    pub struct AttachmentKey(KEY_LEN);
);

/// The id the relay's blob store keeps a blob under: 16 random bytes drawn by the uploader.
///
/// Random rather than derived from the content, so two uploads of one file are unrelated on
/// the relay, and an id says nothing about what it names. Not secret (the relay knows it), but
/// it links an upload to a download, so it travels only inside encrypted messages.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId([u8; BLOB_ID_LEN]);

impl BlobId {
    /// From its bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; BLOB_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh random id.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(random_array(rng))
    }

    /// Its bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; BLOB_ID_LEN] {
        &self.0
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(bytes) = self;
        f.write_str("BlobId(")?;
        for b in bytes {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// SHA-256 of a whole blob (header and every chunk), as the pointer carries it.
///
/// The AEAD already authenticates every chunk under the key; the digest adds a commitment to
/// the exact bytes: ChaCha20-Poly1305 is not key-committing, so without it a sender could
/// craft one blob that decrypts to different plaintexts under keys it gives different
/// recipients. It also lets an app or relay check a download before decrypting.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CiphertextDigest([u8; DIGEST_LEN]);

impl CiphertextDigest {
    /// From its bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; DIGEST_LEN]) -> Self {
        Self(bytes)
    }

    /// Its bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }

    /// The digest of `blob` in one piece (the encryptor and decryptor hash incrementally).
    #[must_use]
    pub fn of(blob: &[u8]) -> Self {
        Self(confide_crypto::kdf::sha256(&[blob]))
    }
}

impl fmt::Debug for CiphertextDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(bytes) = self;
        f.write_str("CiphertextDigest(")?;
        for b in bytes {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

define_secret!(
    /// The token that deletes an attachment's blob from the relay (`DeleteBlob`):
    /// `HKDF-SHA256(salt = none, ikm = K, info = "Confide_v1_Attachment_BlobDeleteToken", 32)`
    /// of the attachment key `K` (`docs/attachments.md` §5.1).
    ///
    /// Derived, not drawn, so everyone who holds the pointer (the sender and every recipient)
    /// can delete the blob, and nobody else can; the uploader gives the relay only its SHA-256
    /// ([`BlobDeleteToken::hash`]), which says nothing about the key. Zeroized on drop,
    /// compared in constant time, printed as `BlobDeleteToken([REDACTED])`.
    pub struct BlobDeleteToken(DELETE_TOKEN_LEN);
);

impl BlobDeleteToken {
    /// The delete token of the attachment under `key`.
    #[must_use]
    pub fn derive(key: &AttachmentKey) -> Self {
        let mut out = Zeroizing::new([0u8; DELETE_TOKEN_LEN]);
        // HKDF-SHA256 gives 32 bytes for any input; the result is never the error.
        let _ = hkdf_sha256(
            None,
            key.expose(),
            labels::ATTACHMENT_BLOB_DELETE_TOKEN,
            out.as_mut_slice(),
        );
        Self::copy_from(&out)
    }

    /// `SHA-256(token)`: what the uploader hands the relay when it creates the blob
    /// (`PutBlob` at offset 0); the relay deletes the blob only for a token with this hash.
    #[must_use]
    pub fn hash(&self) -> [u8; DELETE_TOKEN_LEN] {
        sha256(&[self.expose()])
    }
}

impl AttachmentKey {
    /// The blob delete token of the attachment under this key ([`BlobDeleteToken::derive`]).
    #[must_use]
    pub fn blob_delete_token(&self) -> BlobDeleteToken {
        BlobDeleteToken::derive(self)
    }
}
