//! Attachment benchmarks: encrypting and decrypting a 1 MiB attachment through the streaming
//! API beside its floor, the raw ChaCha20-Poly1305 work on the same chunks, measured in one run.
//!
//! Group `attachment/encrypt` and `attachment/decrypt`, function ids `confide` and `floor`,
//! parameter `1MiB`. After the criterion groups, a short same-process timing prints the
//! confide/floor ratio of each (the difference is the stream's own work: key derivation,
//! copying chunks in and out, the SHA-256 digest of the blob, and the padding check).
//!
//! Floor: one ChaCha20-Poly1305 key set-up, then `encrypt_inout_detached` (or
//! `decrypt_inout_detached`) in place over the 16 chunks of 64 KiB of the 1 MiB bucket, with
//! the index and final flag in the nonce; the decrypt floor also copies the 1 MiB of
//! ciphertext into its buffer first (decryption is in place). Decrypt is measured with the
//! pointer's digest check, as an app would download.
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
use std::time::{Duration, Instant};

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

/// The floor of encryption: the AEAD over each chunk in place, tags kept.
fn floor_encrypt(key: &[u8; 32], buf: &mut [u8], tags: &mut Vec<Tag>) {
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
}

/// The floor of decryption: the AEAD over each chunk in place. Callers first copy the
/// ciphertext into the buffer (a 1 MiB copy, counted in the floor, as the streaming decryptor
/// also copies each chunk into its buffer).
fn floor_decrypt(key: &[u8; 32], buf: &mut [u8], tags: &[Tag]) -> bool {
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
    floor_encrypt(&key, &mut floor_ciphertext, &mut floor_tags);
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
        b.iter(|| floor_encrypt(black_box(&f.key), &mut buf, &mut tags))
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
    g.bench_function(BenchmarkId::new("floor", "1MiB"), |b| {
        b.iter(|| {
            buf.copy_from_slice(&f.floor_ciphertext);
            floor_decrypt(black_box(&f.key), &mut buf, &f.floor_tags)
        })
    });
    g.finish();
}

/// Median time per call over `rounds` rounds of `iters` calls.
fn median_time(rounds: usize, iters: u32, mut run: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                run();
            }
            start.elapsed() / iters
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

/// Interleaved same-process timing of each operation and its floor; prints the ratios.
fn report_ratios(_c: &mut Criterion) {
    let f = fixture();
    let mut rng = ChaCha20Rng::from_seed([8; 32]);
    let mut blob = Vec::with_capacity(f.blob.len());
    let mut sink = vec![0u8; LEN];
    let mut buf = f.plaintext.clone();
    let mut tags = Vec::new();
    let (rounds, iters) = (9, 5);
    let mut sums = [Duration::ZERO; 4];
    for _ in 0..3 {
        sums[0] += median_time(rounds, iters, || {
            black_box(encrypt(&mut rng, &f.plaintext, &mut blob));
        });
        sums[1] += median_time(rounds, iters, || {
            floor_encrypt(&f.key, &mut buf, &mut tags);
            black_box(&buf);
        });
        sums[2] += median_time(rounds, iters, || {
            black_box(decrypt(&f.pointer, &f.blob, &mut sink));
        });
        // The floor decrypts a copy of its ciphertext; the copy (a 1 MiB memcpy) is counted,
        // as the streaming decryptor copies each chunk into its buffer too.
        sums[3] += median_time(rounds, iters, || {
            buf.copy_from_slice(&f.floor_ciphertext);
            assert!(floor_decrypt(&f.key, &mut buf, &f.floor_tags));
        });
    }
    for (name, confide, floor) in [("encrypt", sums[0], sums[1]), ("decrypt", sums[2], sums[3])] {
        let mib_s = |d: Duration| 3.0 / d.as_secs_f64();
        println!(
            "attachment/{name}/1MiB: confide {:.2} ms ({:.0} MiB/s), floor {:.2} ms ({:.0} MiB/s), ratio {:.2}x",
            confide.as_secs_f64() * 1e3 / 3.0,
            mib_s(confide),
            floor.as_secs_f64() * 1e3 / 3.0,
            mib_s(floor),
            confide.as_secs_f64() / floor.as_secs_f64()
        );
    }
}

criterion_group! {
    name = benches;
    config = common::ci_mode(Criterion::default());
    targets = bench_encrypt, bench_decrypt, report_ratios
}
criterion_main!(benches);
