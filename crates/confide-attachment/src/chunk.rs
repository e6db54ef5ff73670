//! The STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár ("Online
//! Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015), as age
//! uses it: one key per stream, and each chunk's nonce is its index and a final-chunk flag.
//!
//! * chunk key = HKDF-SHA256(salt = header salt, ikm = attachment key,
//!   info = `Confide_v1_Attachment_ChunkKey` || version || plaintext length as `u64` BE);
//! * nonce of chunk `i` = `i` as an 11-byte big-endian integer || `0x01` if final else `0x00`;
//! * associated data: empty (the header and the length are in the key, the position and
//!   finality in the nonce).
//!
//! So a chunk authenticates only at its own index, as final only if it is the last, only in
//! its own attachment (its own key and salt) and only for the plaintext length the pointer
//! states: truncation, reordering, splicing, extension and a wrong length are all refused.

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce, Tag,
    aead::{AeadInOut, Error as AeadError},
};
use confide_crypto::kdf::{hkdf_sha256_multi, labels};
use zeroize::Zeroizing;

use crate::{
    AttachmentKey,
    consts::{NONCE_LEN, SALT_LEN, TAG_LEN},
};

/// The nonce of chunk `index`.
pub(crate) fn nonce(index: u64, is_final: bool) -> [u8; NONCE_LEN] {
    let mut out = [0u8; NONCE_LEN];
    let (counter, flag) = out.split_at_mut(NONCE_LEN - 1);
    let (_, low) = counter.split_at_mut(NONCE_LEN - 1 - 8);
    low.copy_from_slice(&index.to_be_bytes());
    if let Some(f) = flag.first_mut() {
        *f = u8::from(is_final);
    }
    out
}

/// The cipher of one stream: the chunk key, zeroized on drop (the `zeroize` feature of
/// chacha20poly1305 wipes the key the cipher holds).
pub(crate) struct ChunkCipher(ChaCha20Poly1305);

impl ChunkCipher {
    /// Derives the chunk key of the stream with this key, version, salt and plaintext length.
    pub(crate) fn derive(
        key: &AttachmentKey,
        version: u8,
        salt: &[u8; SALT_LEN],
        plaintext_len: u64,
    ) -> Self {
        let mut chunk_key = Zeroizing::new([0u8; 32]);
        // HKDF-SHA256 gives 32 bytes for any input; the result is never the error.
        let _ = hkdf_sha256_multi(
            Some(salt.as_slice()),
            key.expose(),
            &[
                labels::ATTACHMENT_CHUNK_KEY,
                &[version],
                &plaintext_len.to_be_bytes(),
            ],
            chunk_key.as_mut_slice(),
        );
        Self(ChaCha20Poly1305::new((&*chunk_key).into()))
    }

    /// Encrypts `body` in place and returns its tag.
    pub(crate) fn seal(&self, index: u64, is_final: bool, body: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = Nonce::from(nonce(index, is_final));
        match self.0.encrypt_inout_detached(&nonce, &[], body.into()) {
            Ok(tag) => tag.into(),
            // Only bodies over 256 GiB fail; a body is at most one chunk. Should it ever
            // happen, an all-zero tag makes the chunk refused, never accepted.
            Err(_) => [0u8; TAG_LEN],
        }
    }

    /// Decrypts `body` in place if `tag` authenticates it at this position; on failure `body`
    /// is unchanged.
    pub(crate) fn open(
        &self,
        index: u64,
        is_final: bool,
        body: &mut [u8],
        tag: &[u8],
    ) -> Result<(), AeadError> {
        let nonce = Nonce::from(nonce(index, is_final));
        let tag = Tag::try_from(tag).map_err(|_| AeadError)?;
        self.0
            .decrypt_inout_detached(&nonce, &[], body.into(), &tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_layout() {
        assert_eq!(nonce(0, false), [0; 12]);
        assert_eq!(nonce(0, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            nonce(0x0102_0304_0506_0708, false),
            [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0]
        );
    }
}
