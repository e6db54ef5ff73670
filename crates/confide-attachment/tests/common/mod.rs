//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code, unreachable_pub)]

use chacha20::ChaCha20Rng;
use confide_attachment::{
    AttachmentDecryptor, AttachmentKey, AttachmentPointer, BlobId, ContentType, DecryptError,
    EncryptedAttachment, encrypt,
};
use rand_core::{Rng, SeedableRng};

/// A seeded RNG.
pub fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// `len` pseudo-random bytes from `seed`.
pub fn plaintext(seed: u64, len: usize) -> Vec<u8> {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    r.fill_bytes(&mut out);
    out
}

/// Encrypts `plaintext` in one go with a seeded RNG.
pub fn seal(seed: u8, plaintext: &[u8]) -> (Vec<u8>, EncryptedAttachment) {
    encrypt(&mut rng(seed), plaintext).unwrap()
}

/// A file pointer to `sealed`.
pub fn pointer(sealed: &EncryptedAttachment) -> AttachmentPointer {
    AttachmentPointer::new(BlobId::from_bytes([9; 16]), sealed, ContentType::File, None).unwrap()
}

/// What a decryption produced: the plaintext released (only from authenticated chunks) and
/// the outcome (`Ok` only if the stream verified to its end).
pub struct Outcome {
    /// Plaintext handed out, in order.
    pub released: Vec<u8>,
    /// `Ok` only if the stream verified to its end.
    pub result: Result<(), DecryptError>,
}

/// Feeds `blob` to `decryptor` in pieces of the given sizes (cycled; the rest in one piece
/// when `pieces` is empty), collecting what is released, then finishes.
pub fn run(mut decryptor: AttachmentDecryptor, blob: &[u8], pieces: &[usize]) -> Outcome {
    let mut released = Vec::new();
    let mut rest = blob;
    let mut sizes = pieces.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (mut piece, later) = rest.split_at(n);
        rest = later;
        loop {
            match decryptor.push(&mut piece) {
                Ok(Some(plaintext)) => released.extend_from_slice(plaintext),
                Ok(None) => break,
                Err(e) => {
                    // Refusing: every later call is refused too.
                    assert_eq!(decryptor.push(&mut &[1u8][..]), Err(DecryptError::Refused));
                    assert_eq!(decryptor.finish(), Err(DecryptError::Refused));
                    return Outcome {
                        released,
                        result: Err(e),
                    };
                }
            }
        }
    }
    let result = decryptor.finish();
    Outcome { released, result }
}

/// Decrypts `blob` with `key` and `len` in one piece.
pub fn open(key: &AttachmentKey, len: u64, blob: &[u8]) -> Outcome {
    run(AttachmentDecryptor::new(key, len).unwrap(), blob, &[])
}

/// The byte ranges of each chunk of `blob` (the first includes the header).
pub fn chunk_ranges(blob: &[u8]) -> Vec<core::ops::Range<usize>> {
    let mut out = Vec::new();
    let full = confide_attachment::CHUNK_LEN + 16;
    let mut start = 0;
    let mut end = confide_attachment::HEADER_LEN + full;
    while start < blob.len() {
        let e = end.min(blob.len());
        out.push(start..e);
        start = e;
        end = e + full;
    }
    out
}
