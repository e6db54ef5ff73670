//! Attachment benchmarks: encrypting and decrypting a 1 MiB attachment through the streaming
//! API beside its floor, the raw primitives doing the same cryptographic work, measured in one
//! run.
//!
//! Group `attachment/encrypt` and `attachment/decrypt`, function ids `confide`, `floor` and
//! `aead_only`, parameter `1MiB`. After the criterion groups, a short same-process timing
//! prints the confide/floor and confide/aead_only ratios of each (the difference to the floor
//! is the stream's own work: copying chunks in and out of its buffer, the padding check,
//! bookkeeping).
//!
//! Floor: the chunk key's HKDF-SHA256, one ChaCha20-Poly1305 key set-up, then
//! `encrypt_inout_detached` (or `decrypt_inout_detached`) in place over the 16 chunks of
//! 64 KiB of the 1 MiB bucket, with the index and final flag in the nonce, and SHA-256 over
//! the 1 MiB blob (the pointer's digest, which the encryptor computes and the decryptor checks
//! as an app downloads through `for_pointer`). `aead_only` leaves out the HKDF and SHA-256.
//! The decrypt floors also copy the 1 MiB of ciphertext into their buffer first (decryption is
//! in place; the streaming decryptor copies each chunk into its buffer too).
//!
//! Set `CONFIDE_BENCH_QUICK=1` for the short CI mode.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag, aead::AeadInOut};
use confide_attachment::{
    AttachmentDecryptor, AttachmentEncryptor, AttachmentPointer, BlobId, CHUNK_LEN, ContentType,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand_core::SeedableRng;

const LEN: usize = 1024 * 1024;

fn encrypt(rng: &mut ChaCha20Rng, plaintext: &[u8], blob: &mut Vec<u8>) -> usize {
    blob.clear();
    let mut encryptor = AttachmentEncryptor::new(rng, plaintext.len() as u64).unwrap();
    let mut input = plaintext;
    while let Some(ciphertext) = encryptor.push(&mut input).unwrap() {
        blob.extend_from_slice(ciphertext);
    }
    encryptor.finish().unwrap();
    blob.len()
}

fn decrypt(pointer: &AttachmentPointer, blob: &[u8], sink: &mut [u8]) -> usize {
    let mut decryptor = AttachmentDecryptor::for_pointer(pointer).unwrap();
    let mut input = blob;
    let mut at = 0;
    while let Some(plaintext) = decryptor.push(&mut input).unwrap() {
        sink[at..at + plaintext.len()].copy_from_slice(plaintext);
        at += plaintext.len();
    }
    decryptor.finish().unwrap();
    at
}

fn nonce(i: usize, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&(i as u64).to_be_bytes());
    n[11] = u8::from(last);
    Nonce::from(n)
}

/// The chunk key's derivation, as the stream does it (docs/attachments.md §3).
fn chunk_key(key: &[u8; 32], salt: &[u8; 32], len: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), key)
        .expand_multi_info(
            &[b"Confide_v1_Attachment_ChunkKey", &[1], &len.to_be_bytes()],
            &mut out,
        )
        .unwrap();
    out
}

/// SHA-256 over the blob's chunks and tags (the header's 33 bytes left out: noise).
fn digest(buf: &[u8], tags: &[Tag]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (chunk, tag) in buf.chunks(CHUNK_LEN).zip(tags) {
        h.update(chunk);
        h.update(tag);
    }
    h.finalize().into()
}

/// The floor of encryption: the AEAD over each chunk in place, tags kept; with `full`, also
/// the chunk key's HKDF and the blob's SHA-256.
fn floor_encrypt(key: &[u8; 32], buf: &mut [u8], tags: &mut Vec<Tag>, full: bool) {
    if full {
        // Its cost counts; the fixture's AEAD key stands in for its output.
        black_box(chunk_key(key, &[9; 32], buf.len() as u64));
    }
    let cipher = ChaCha20Poly1305::new(key.into());
    tags.clear();
    let count = buf.len().div_ceil(CHUNK_LEN);
    for (i, chunk) in buf.chunks_mut(CHUNK_LEN).enumerate() {
        tags.push(
            cipher
                .encrypt_inout_detached(&nonce(i, i + 1 == count), &[], chunk.into())
                .unwrap(),
        );
    }
    if full {
        black_box(digest(buf, tags));
    }
}

/// The floor of decryption: the AEAD over each chunk in place; with `full`, first the blob's
/// SHA-256 and the chunk key's HKDF. Callers first copy the ciphertext into the buffer (a
/// 1 MiB copy, counted in the floor, as the streaming decryptor also copies each chunk into
/// its buffer).
fn floor_decrypt(key: &[u8; 32], buf: &mut [u8], tags: &[Tag], full: bool) -> bool {
    if full {
        black_box(digest(buf, tags));
        black_box(chunk_key(key, &[9; 32], buf.len() as u64));
    }
    let cipher = ChaCha20Poly1305::new(key.into());
    let count = buf.len().div_ceil(CHUNK_LEN);
    buf.chunks_mut(CHUNK_LEN).enumerate().all(|(i, chunk)| {
        cipher
            .decrypt_inout_detached(&nonce(i, i + 1 == count), &[], chunk.into(), &tags[i])
            .is_ok()
    })
}

struct Fixture {
    plaintext: Vec<u8>,
    blob: Vec<u8>,
    pointer: AttachmentPointer,
    key: [u8; 32],
    floor_ciphertext: Vec<u8>,
    floor_tags: Vec<Tag>,
}

fn fixture() -> Fixture {
    let plaintext: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let (blob, sealed) = confide_attachment::encrypt(&mut rng, &plaintext).unwrap();
    let pointer = AttachmentPointer::new(
        BlobId::from_bytes([1; 16]),
        &sealed,
        ContentType::File,
        None,
    )
    .unwrap();
    let key = [7u8; 32];
    let mut floor_ciphertext = plaintext.clone();
    let mut floor_tags = Vec::new();
    floor_encrypt(&key, &mut floor_ciphertext, &mut floor_tags, false);
    Fixture {
        plaintext,
        blob,
        pointer,
        key,
        floor_ciphertext,
        floor_tags,
    }
}

fn bench_encrypt(c: &mut Criterion) {
    let f = fixture();
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let mut blob = Vec::with_capacity(f.blob.len());
    let mut buf = f.plaintext.clone();
    let mut tags = Vec::new();
    let mut g = c.benchmark_group("attachment/encrypt");
    g.throughput(criterion::Throughput::Bytes(LEN as u64));
    g.bench_function(BenchmarkId::new("confide", "1MiB"), |b| {
        b.iter(|| encrypt(&mut rng, black_box(&f.plaintext), &mut blob))
    });
    g.bench_function(BenchmarkId::new("floor", "1MiB"), |b| {
        b.iter(|| floor_encrypt(black_box(&f.key), &mut buf, &mut tags, true))
    });
    g.bench_function(BenchmarkId::new("aead_only", "1MiB"), |b| {
        b.iter(|| floor_encrypt(black_box(&f.key), &mut buf, &mut tags, false))
    });
    g.finish();
}

fn bench_decrypt(c: &mut Criterion) {
    let f = fixture();
    let mut sink = vec![0u8; LEN];
    let mut buf = f.floor_ciphertext.clone();
    let mut g = c.benchmark_group("attachment/decrypt");
    g.throughput(criterion::Throughput::Bytes(LEN as u64));
    g.bench_function(BenchmarkId::new("confide", "1MiB"), |b| {
        b.iter(|| decrypt(black_box(&f.pointer), black_box(&f.blob), &mut sink))
    });
    for (id, full) in [("floor", true), ("aead_only", false)] {
        g.bench_function(BenchmarkId::new(id, "1MiB"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&f.floor_ciphertext);
                floor_decrypt(black_box(&f.key), &mut buf, &f.floor_tags, full)
            })
        });
    }
    g.finish();
}

#[path = "common/timing.rs"]
mod timing;
use timing::median_time;

/// Interleaved same-process timing of each operation and its floor; prints the ratios.
fn report_ratios(_c: &mut Criterion) {
    let f = fixture();
    let mut rng = ChaCha20Rng::from_seed([8; 32]);
    let mut blob = Vec::with_capacity(f.blob.len());
    let mut sink = vec![0u8; LEN];
    let mut buf = f.plaintext.clone();
    let mut tags = Vec::new();
    let (rounds, iters) = (9, 5);
    // confide, floor, aead_only; for encrypt, then decrypt.
    let mut sums = [[Duration::ZERO; 3]; 2];
    for _ in 0..3 {
        sums[0][0] += median_time(rounds, iters, || {
            black_box(encrypt(&mut rng, &f.plaintext, &mut blob));
        });
        for (k, full) in [(1, true), (2, false)] {
            sums[0][k] += median_time(rounds, iters, || {
                floor_encrypt(&f.key, &mut buf, &mut tags, full);
                black_box(&buf);
            });
        }
        sums[1][0] += median_time(rounds, iters, || {
            black_box(decrypt(&f.pointer, &f.blob, &mut sink));
        });
        for (k, full) in [(1, true), (2, false)] {
            sums[1][k] += median_time(rounds, iters, || {
                buf.copy_from_slice(&f.floor_ciphertext);
                assert!(floor_decrypt(&f.key, &mut buf, &f.floor_tags, full));
            });
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / 3.0;
    let mib_s = |d: Duration| 3.0 / d.as_secs_f64();
    for (name, [confide, floor, aead]) in ["encrypt", "decrypt"].iter().zip(sums) {
        println!(
            "attachment/{name}/1MiB: confide {:.2} ms ({:.0} MiB/s), floor {:.2} ms, ratio {:.2}x; \
             AEAD only {:.2} ms, ratio {:.2}x",
            ms(confide),
            mib_s(confide),
            ms(floor),
            confide.as_secs_f64() / floor.as_secs_f64(),
            ms(aead),
            confide.as_secs_f64() / aead.as_secs_f64(),
        );
    }
}

criterion_group! {
    name = benches;
    config = common::ci_mode(Criterion::default());
    targets = bench_encrypt, bench_decrypt, report_ratios
}
criterion_main!(benches);
