//! ChaCha20-Poly1305 (RFC 8439), and its extended-nonce variant XChaCha20-Poly1305
//! (draft-irtf-cfrg-xchacha: HChaCha20 derives a subkey from the key and the nonce's first 16
//! bytes, then ChaCha20-Poly1305 runs under it with nonce `0x00000000 || nonce[16..24]`).
//!
//! Every key used with these functions in Confide is single-use or paired with a nonce that
//! the caller guarantees unique for that key; the protocol documents which, per use. The
//! extended variant exists for one long-lived key sealing many values under random nonces
//! (the records of a store, `docs/spec.md` §11): 192 random bits make a repeated nonce
//! negligible however many values are sealed, where 96 would not.

use crate::{CryptoError, secret::AeadKey};
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce, XChaCha20Poly1305, XNonce,
    aead::{AeadInOut, Buffer},
};
use zeroize::Zeroizing;

/// Length of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;
/// Length of a nonce.
pub const NONCE_LEN: usize = 12;
/// Length of an extended (XChaCha20-Poly1305) nonce.
pub const EXTENDED_NONCE_LEN: usize = 24;

/// Encrypts `plaintext` with `aad`; returns `ciphertext || tag`.
#[must_use]
pub fn seal(key: &AeadKey, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN));
    buf.extend_from_slice(plaintext);
    seal_in_place(key, nonce, aad, &mut buf);
    buf
}

/// Encrypts `buf` in place and appends the tag.
pub fn seal_in_place(key: &AeadKey, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
    let cipher = ChaCha20Poly1305::new(key.expose().into());
    encrypt_with(&cipher, &Nonce::from(*nonce), aad, buf);
}

/// Encrypts `buf` in place under `cipher` and appends the tag: the one body of both
/// variants' seal.
fn encrypt_with<C: AeadInOut>(
    cipher: &C,
    nonce: &chacha20poly1305::aead::Nonce<C>,
    aad: &[u8],
    buf: &mut Vec<u8>,
) {
    // Encryption fails only for inputs longer than 256 GiB; callers bound lengths far below.
    if cipher
        .encrypt_in_place(nonce, aad, buf as &mut dyn Buffer)
        .is_err()
    {
        buf.clear();
    }
}

/// Decrypts a copy of `ciphertext || tag` under `cipher` (wiped when dropped): the one body of
/// both variants' open.
fn decrypt_with<C: AeadInOut>(
    cipher: &C,
    nonce: &chacha20poly1305::aead::Nonce<C>,
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if ciphertext.len() < TAG_LEN {
        return Err(CryptoError::AeadFailure);
    }
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_in_place(nonce, aad, &mut *buf as &mut dyn Buffer)
        .map_err(|_| CryptoError::AeadFailure)?;
    Ok(buf)
}

/// Decrypts `ciphertext || tag`; the plaintext is zeroized when dropped.
pub fn open(
    key: &AeadKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let cipher = ChaCha20Poly1305::new(key.expose().into());
    decrypt_with(&cipher, &Nonce::from(*nonce), aad, ciphertext)
}

/// As [`open`], but the plaintext comes with the proof that it authenticated under `key`
/// ([`crate::stored`]): only for state the caller sealed itself under its storage key.
pub fn open_authenticated(
    key: &AeadKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<crate::stored::AuthenticatedPlaintext, CryptoError> {
    open(key, nonce, aad, ciphertext).map(crate::stored::AuthenticatedPlaintext::new)
}

/// XChaCha20-Poly1305: encrypts `plaintext` with `aad` under a 24-byte nonce; returns
/// `ciphertext || tag`. For a long-lived key with random nonces (see the module docs).
#[must_use]
pub fn seal_extended(
    key: &AeadKey,
    nonce: &[u8; EXTENDED_NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN));
    buf.extend_from_slice(plaintext);
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    encrypt_with(&cipher, &XNonce::from(*nonce), aad, &mut buf);
    buf
}

/// XChaCha20-Poly1305: decrypts `ciphertext || tag` from [`seal_extended`]; the plaintext
/// comes with the proof that it authenticated under `key` ([`crate::stored`]): only for
/// state the caller sealed itself under its storage key.
pub fn open_extended_authenticated(
    key: &AeadKey,
    nonce: &[u8; EXTENDED_NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<crate::stored::AuthenticatedPlaintext, CryptoError> {
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    decrypt_with(&cipher, &XNonce::from(*nonce), aad, ciphertext)
        .map(crate::stored::AuthenticatedPlaintext::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8439_vector() {
        let key = AeadKey::from_slice(
            &hex::decode("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
                .unwrap(),
        )
        .unwrap();
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&hex::decode("070000004041424344454647").unwrap());
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct = seal(&key, &nonce, &aad, pt);
        assert_eq!(
            hex::encode(&ct[ct.len() - 16..]),
            "1ae10b594f09e26a7e902ecbd0600691"
        );
        assert_eq!(&open(&key, &nonce, &aad, &ct).unwrap()[..], &pt[..]);
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(
            open(&key, &nonce, &aad, &bad),
            Err(CryptoError::AeadFailure)
        );
        assert_eq!(open(&key, &nonce, b"", &ct), Err(CryptoError::AeadFailure));
        assert_eq!(
            open(&key, &nonce, &aad, &ct[..15]),
            Err(CryptoError::AeadFailure)
        );
    }

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1: the AEAD_XChaCha20_Poly1305 example.
    #[test]
    fn xchacha_draft_vector() {
        let key = AeadKey::from_slice(
            &hex::decode("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
                .unwrap(),
        )
        .unwrap();
        let nonce: [u8; EXTENDED_NONCE_LEN] =
            hex::decode("404142434445464748494a4b4c4d4e4f5051525354555657")
                .unwrap()
                .try_into()
                .unwrap();
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct = seal_extended(&key, &nonce, &aad, pt);
        assert_eq!(hex::encode(&ct[..16]), "bd6d179d3e83d43b9576579493c0e939");
        assert_eq!(
            hex::encode(&ct[ct.len() - 16..]),
            "c0875924c1c7987947deafd8780acf49"
        );
        let opened = open_extended_authenticated(&key, &nonce, &aad, &ct).unwrap();
        assert_eq!(&opened[..], &pt[..]);
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(open_extended_authenticated(&key, &nonce, &aad, &bad).is_err());
        assert!(open_extended_authenticated(&key, &nonce, b"", &ct).is_err());
        assert!(open_extended_authenticated(&key, &nonce, &aad, &ct[..15]).is_err());
    }
}
