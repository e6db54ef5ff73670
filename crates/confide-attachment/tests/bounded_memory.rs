//! A 100 MB attachment streams through the encryptor and the decryptor while the heap grows
//! by about one chunk each: memory is bounded by the chunk size, not the attachment size.
//!
//! The counting allocator of `confide-alloc-probe` records every heap block of the process;
//! this file holds one test so that no other test's allocations share the count.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide_alloc_probe::{ScanningAllocator, live_bytes, peak_bytes, reset_peak};
use confide_attachment::{
    AttachmentDecryptor, AttachmentKey, CHUNK_LEN, HEADER_LEN, ciphertext_len,
    dangerous_encryptor_with_key_and_salt,
};
use rand_core::{Rng, SeedableRng};

#[global_allocator]
static ALLOCATOR: ScanningAllocator = ScanningAllocator;

/// The attachment: 100 MB.
const LEN: usize = 100_000_000;
/// The plaintext repeats a random block of a prime length, so no two chunks are equal and a
/// reordered or shifted chunk would not compare equal.
const BLOCK: usize = 65_521;
/// The app hands the encryptor pieces of this size (not a multiple of the chunk size).
const PIECE: usize = 50_000;
/// What the encryptor and decryptor may hold together: one full chunk (with the header and
/// tag) in each, plus 16 KiB for hashers, ciphers and bookkeeping.
const BOUND: usize = 2 * (HEADER_LEN + CHUNK_LEN + 16) + 16 * 1024;

/// Copies plaintext bytes `offset..offset + out.len()` into `out`.
fn fill(block: &[u8], offset: usize, out: &mut [u8]) {
    let mut at = offset % BLOCK;
    let mut done = 0;
    while done < out.len() {
        let n = (BLOCK - at).min(out.len() - done);
        out[done..done + n].copy_from_slice(&block[at..at + n]);
        done += n;
        at = 0;
    }
}

/// Whether `got` equals plaintext bytes `offset..offset + got.len()`.
fn matches(block: &[u8], offset: usize, got: &[u8]) -> bool {
    let mut at = offset % BLOCK;
    let mut done = 0;
    while done < got.len() {
        let n = (BLOCK - at).min(got.len() - done);
        if got[done..done + n] != block[at..at + n] {
            return false;
        }
        done += n;
        at = 0;
    }
    true
}

#[test]
fn a_100_mb_attachment_streams_in_about_one_chunk_of_memory() {
    let mut rng = ChaCha20Rng::from_seed([0x10; 32]);
    let mut block = vec![0u8; BLOCK];
    rng.fill_bytes(&mut block);
    let mut piece = vec![0u8; PIECE];
    let key = AttachmentKey::random(&mut rng);
    let baseline = live_bytes();
    reset_peak();

    // The sender encrypts piece by piece; each chunk of ciphertext goes straight to the
    // receiver's decryptor (which knows key and length from the pointer).
    let mut encryptor =
        dangerous_encryptor_with_key_and_salt(key.clone(), [0x20; 32], LEN as u64).unwrap();
    let mut decryptor = AttachmentDecryptor::new(&key, LEN as u64).unwrap();
    let (mut sent, mut received, mut blob_len) = (0usize, 0usize, 0u64);
    loop {
        let n = PIECE.min(LEN - sent);
        fill(&block, sent, &mut piece[..n]);
        sent += n;
        let mut input = &piece[..n];
        let mut chunks_out = 0;
        while let Some(ciphertext) = encryptor.push(&mut input).unwrap() {
            chunks_out += 1;
            blob_len += ciphertext.len() as u64;
            let mut ciphertext = ciphertext;
            while let Some(plaintext) = decryptor.push(&mut ciphertext).unwrap() {
                assert!(
                    matches(&block, received, plaintext),
                    "plaintext at {received}"
                );
                received += plaintext.len();
            }
        }
        if sent == LEN && chunks_out == 0 {
            break;
        }
    }
    let sealed = encryptor.finish().unwrap();
    decryptor.finish().unwrap();
    let peak = peak_bytes() - baseline;

    assert_eq!(received, LEN);
    assert_eq!(blob_len, ciphertext_len(LEN as u64).unwrap());
    assert_eq!(sealed.ciphertext_len, blob_len);
    assert!(
        peak <= BOUND,
        "peak heap growth {peak} bytes, bound {BOUND}"
    );
    // The probe does count: the two chunk buffers alone are more than one chunk.
    assert!(
        peak > CHUNK_LEN,
        "peak heap growth {peak} bytes is implausibly small"
    );
    eprintln!("100 MB streamed; peak heap growth {peak} bytes (bound {BOUND})");
}
