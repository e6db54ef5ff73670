//! Replays the attachment fuzz corpora through the fuzz targets' checks
//! (`confide_test_support::fuzzing::attachment_*`).
//!
//! Set `CONFIDE_REGENERATE_CORPUS=1` to (re)write the seed corpora: pointers of every content
//! type and edge value, and blobs encrypted under the stream target's fixture key (so
//! mutations start deep in the stream), with a few malformed ones.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Once;

use confide_attachment::{
    AttachmentDecryptor, AttachmentKey, AttachmentPointer, BlobId, CiphertextDigest, ContentType,
    MAX_DURATION, MAX_PLAINTEXT_LEN, dangerous_encryptor_with_key_and_salt,
};
use confide_crypto::Duration;
use confide_test_support::fuzzing::attachment::{
    STREAM_KEY, join_stream_input, split_stream_input,
};
use confide_test_support::{corpus, fuzzing};

fn regenerate_when_asked() {
    static ONCE: Once = Once::new();
    if corpus::regenerate_requested() {
        ONCE.call_once(generate);
    }
}

fn pointer_seeds() -> Vec<Vec<u8>> {
    let cases = [
        (ContentType::VoiceNote, Some(Duration::from_secs(9)), 14_000),
        (
            ContentType::VoiceNote,
            Some(MAX_DURATION),
            MAX_PLAINTEXT_LEN,
        ),
        (ContentType::Image, None, 2_000_000),
        (ContentType::File, None, 0),
        (
            ContentType::Other(4),
            Some(Duration::from_millis(1)),
            70_000,
        ),
        (ContentType::Other(255), None, 1),
    ];
    let mut out: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(i, (t, d, len))| {
            let i = u8::try_from(i).unwrap();
            AttachmentPointer::from_parts(
                BlobId::from_bytes([i; 16]),
                AttachmentKey::new([i.wrapping_add(0x40); 32]),
                CiphertextDigest::from_bytes([i.wrapping_add(0x80); 32]),
                *len,
                *t,
                *d,
            )
            .unwrap()
            .to_bytes()
            .to_vec()
        })
        .collect();
    // A key equal to the digest (a fuzzer once took the digest's hex in `Debug` for the key).
    out.push(
        AttachmentPointer::from_parts(
            BlobId::from_bytes([0x45; 16]),
            AttachmentKey::new([0x45; 32]),
            CiphertextDigest::from_bytes([0x45; 32]),
            54,
            ContentType::Other(0xb0),
            Some(Duration::from_millis(0x0123)),
        )
        .unwrap()
        .to_bytes()
        .to_vec(),
    );
    // Malformed: version 2, a trailing byte.
    let mut v2 = out[0].clone();
    v2[0] = 2;
    let mut long = out[2].clone();
    long.push(0);
    out.extend([v2, long]);
    out
}

/// A blob of `len` bytes of plaintext under the stream fixture key and the salt `[salt; 32]`.
fn blob(len: u32, salt: u8) -> Vec<u8> {
    let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut encryptor = dangerous_encryptor_with_key_and_salt(
        AttachmentKey::new(STREAM_KEY),
        [salt; 32],
        u64::from(len),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut input = &plaintext[..];
    while let Some(ciphertext) = encryptor.push(&mut input).unwrap() {
        out.extend_from_slice(ciphertext);
    }
    out
}

fn stream_seeds() -> Vec<Vec<u8>> {
    let one = blob(5, 1);
    let two = blob(65_537, 2);
    let mut truncated = two.clone();
    truncated.truncate(two.len() - 100);
    vec![
        join_stream_input(5, 255, &one),
        join_stream_input(0, 7, &blob(0, 3)),
        join_stream_input(65_537, 200, &two),
        join_stream_input(65_537, 255, &truncated),
        // Wrong length for the blob; a short header.
        join_stream_input(6, 255, &one),
        join_stream_input(5, 1, &one[..20]),
    ]
}

fn generate() {
    corpus::write("attachment_pointer", &pointer_seeds());
    corpus::write("attachment_stream", &stream_seeds());
}

#[test]
fn replay_attachment_pointer_corpus() {
    regenerate_when_asked();
    let seeds = corpus::replay("attachment_pointer", fuzzing::attachment_pointer);
    let decoded = seeds
        .iter()
        .filter(|s| AttachmentPointer::from_bytes(s).is_ok())
        .count();
    assert!(decoded >= 6, "the seeds reach the accepting path");
    assert!(decoded < seeds.len(), "and the refusing one");
}

#[test]
fn replay_attachment_stream_corpus() {
    regenerate_when_asked();
    let seeds = corpus::replay("attachment_stream", fuzzing::attachment_stream);
    let key = AttachmentKey::new(STREAM_KEY);
    let verified = seeds
        .iter()
        .filter(|seed| {
            let Some((len, _, blob)) = split_stream_input(seed) else {
                return false;
            };
            let mut decryptor = AttachmentDecryptor::new(&key, len).unwrap();
            let mut input = blob;
            while let Ok(Some(_)) = decryptor.push(&mut input) {}
            decryptor.finish().is_ok()
        })
        .count();
    assert!(verified >= 3, "the seeds reach the end of the stream");
    assert!(verified < seeds.len(), "and the refusals");
}
