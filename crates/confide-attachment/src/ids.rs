//! The values a pointer names an attachment by: its key (secret), the blob id the relay
//! stores it under, and the digest of its ciphertext.

use core::fmt;

use confide_crypto::{CryptoRng, define_secret, random_array};

use crate::consts::{BLOB_ID_LEN, DIGEST_LEN, KEY_LEN};

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
