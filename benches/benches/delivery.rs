//! Transport benchmarks: the delivery machine's own overhead.
//!
//! Naming convention (as in `session.rs`): group `transport/<operation>`, function ids
//! `confide` and `floor`, a size parameter.
//!
//! * `transport/send_ack` (1KiB): `confide` is one message's whole life in the delivery
//!   machine: `send` (outbox entry, random id), `poll_transmit` (frame encoding), `on_ack` and
//!   `poll_event`. `floor` is the least any reliable sender must do for it: keep a copy of the
//!   payload until acknowledged and write a 22-byte header plus the payload into a frame buffer.
//! * `transport/state_roundtrip` (100x1KiB): `confide` is `Delivery::to_bytes` plus the strict
//!   `Delivery::from_bytes` of an outbox of 100 one-KiB messages; `floor` copies the same
//!   number of bytes twice between preallocated buffers.
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

use chacha20::ChaCha20Rng;
use confide_crypto::Timestamp;
use confide_transport::consts::FRAME_HEADER_LEN;
use confide_transport::{AckOutcome, Address, Delivery};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand_core::SeedableRng;

const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);
const PAYLOAD_LEN: usize = 1024;

fn bench_send_ack(c: &mut Criterion) {
    let mut group = c.benchmark_group("transport/send_ack");
    let peer = Address::new(b"counselor-mailbox").unwrap();
    let payload = vec![0x5a; PAYLOAD_LEN];
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let mut delivery = Delivery::new();
    group.bench_function(BenchmarkId::new("confide", "1KiB"), |b| {
        b.iter(|| {
            let id = delivery
                .send(&mut rng, NOW, peer.clone(), payload.clone())
                .unwrap();
            let tx = delivery.poll_transmit().unwrap();
            black_box(&tx.frame);
            assert_eq!(delivery.on_ack(&peer, id), AckOutcome::Delivered);
            black_box(delivery.poll_event());
        });
    });
    group.bench_function(BenchmarkId::new("floor", "1KiB"), |b| {
        b.iter(|| {
            let kept = black_box(payload.clone());
            let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + kept.len());
            frame.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
            frame.extend_from_slice(&kept);
            black_box(frame);
        });
    });
    group.finish();
}

fn bench_state_roundtrip(c: &mut Criterion) {
    let mut group = c.benchmark_group("transport/state_roundtrip");
    let peer = Address::new(b"counselor-mailbox").unwrap();
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let mut delivery = Delivery::new();
    for _ in 0..100 {
        let _ = delivery
            .send(&mut rng, NOW, peer.clone(), vec![0x5a; PAYLOAD_LEN])
            .unwrap();
    }
    while delivery.poll_transmit().is_some() {}
    let len = delivery.to_bytes().len();
    group.bench_function(BenchmarkId::new("confide", "100x1KiB"), |b| {
        b.iter(|| {
            let bytes = delivery.to_bytes();
            black_box(Delivery::from_bytes(black_box(&bytes)).unwrap());
        });
    });
    let source = vec![0x5au8; len];
    let (mut first, mut second) = (vec![0u8; len], vec![0u8; len]);
    group.bench_function(BenchmarkId::new("floor", "100x1KiB"), |b| {
        b.iter(|| {
            first.copy_from_slice(black_box(&source));
            second.copy_from_slice(black_box(&first));
            black_box(&second);
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::ci_mode(Criterion::default());
    targets = bench_send_ack, bench_state_roundtrip
}
criterion_main!(benches);
