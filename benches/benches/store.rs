//! Message store benchmarks (`confide_store::Transcript`, `docs/store.md`): what showing,
//! paging and erasing a conversation's messages costs an app, on a database file as apps run it
//! (WAL, `synchronous = FULL`: every writing call waits for an fsync) and, for comparison, in
//! memory (the same SQL and encryption without the disk).
//!
//! Groups and function ids (naming convention of `docs/benchmarks.md`):
//!
//! * `store/put`, parameter `200B`: one 200-byte message stored (its own random key, sealed
//!   row, wrapped key; one transaction). `confide`: a database file; `in_memory`.
//! * `store/get`, parameter `200B`: one message read back and opened, from a file holding 1,000.
//! * `store/list`, parameter `128`: one page of 128 messages (`MAX_PAGE_LEN`), opened, from a
//!   file holding 1,000.
//! * `store/erase`, parameter `1`: one message erased (the delete transaction and the
//!   write-ahead log's checkpoint, so no copy is left: the default `WalClearing`). `confide`: a
//!   file; `in_memory` (no log to clear).
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
#[path = "common/scratch.rs"]
mod scratch;

use std::hint::black_box;
use std::time::{Duration, Instant};

use chacha20::ChaCha20Rng;
use confide::{Party, StorageKey};
use confide_crypto::Timestamp;
use confide_policy::MessageId;
use confide_store::{MAX_PAGE_LEN, NewMessage, Transcript};
use criterion::{BenchmarkId, Criterion};
use rand_core::SeedableRng;
use scratch::ScratchDir;

const NOW: Timestamp = confide_test_support::service::T0;
const BODY_LEN: usize = 200;
/// Messages in the store that `get` and `list` read from.
const HELD: u64 = 1_000;
const CONVERSATION: u64 = 1;

fn key() -> StorageKey {
    StorageKey::new([0x42; 32])
}

fn id(n: u64) -> MessageId {
    let mut b = [0xA0; 16];
    b[8..].copy_from_slice(&n.to_be_bytes());
    MessageId::from_bytes(b)
}

fn message(n: u64, body: &[u8]) -> NewMessage<'_> {
    NewMessage {
        conversation: CONVERSATION,
        id: id(n),
        from: if n.is_multiple_of(2) {
            Party::Us
        } else {
            Party::Peer
        },
        sent_at: Timestamp::from_millis(NOW.as_millis() + n * 1000),
        expires_at: None,
        body,
    }
}

enum Where<'a> {
    File(&'a ScratchDir),
    Memory,
}

impl Where<'_> {
    fn open(&self) -> Transcript {
        match self {
            Where::File(dir) => Transcript::open(dir.fresh_db("app"), b"bench", &key()).unwrap(),
            Where::Memory => Transcript::open_in_memory(b"bench", &key()).unwrap(),
        }
    }
}

/// A store holding `HELD` messages, ids `0..HELD`.
fn filled(place: &Where<'_>, rng: &mut ChaCha20Rng, body: &[u8]) -> Transcript {
    let mut t = place.open();
    for n in 0..HELD {
        t.put(rng, NOW, &message(n, body)).unwrap();
    }
    t
}

fn bench(c: &mut Criterion) {
    let dir = ScratchDir::new("store-bench");
    let body = vec![b'x'; BODY_LEN];
    let mut rng = ChaCha20Rng::from_seed([7; 32]);

    let mut group = c.benchmark_group("store/put");
    for (name, place) in [("confide", Where::File(&dir)), ("in_memory", Where::Memory)] {
        group.bench_function(BenchmarkId::new(name, "200B"), |b| {
            let mut t = place.open();
            let mut n = 0u64;
            b.iter(|| {
                n += 1;
                t.put(&mut rng, NOW, black_box(&message(n, &body))).unwrap();
            });
        });
    }
    group.finish();

    let t = filled(&Where::File(&dir), &mut rng, &body);
    let mut group = c.benchmark_group("store/get");
    group.bench_function(BenchmarkId::new("confide", "200B"), |b| {
        let mut n = 0u64;
        b.iter(|| {
            n = (n + 7) % HELD;
            black_box(t.get(NOW, CONVERSATION, &id(n)).unwrap().unwrap());
        });
    });
    group.finish();

    let mut group = c.benchmark_group("store/list");
    group.bench_function(BenchmarkId::new("confide", MAX_PAGE_LEN), |b| {
        b.iter(|| {
            let page = t.list(NOW, CONVERSATION, None, MAX_PAGE_LEN).unwrap();
            assert_eq!(page.len(), MAX_PAGE_LEN);
            black_box(page);
        });
    });
    group.finish();

    let mut group = c.benchmark_group("store/erase");
    for (name, place) in [("confide", Where::File(&dir)), ("in_memory", Where::Memory)] {
        group.bench_function(BenchmarkId::new(name, 1), |b| {
            let mut t = place.open();
            let mut n = 0u64;
            b.iter_custom(|iters| {
                // Stored untimed, erased timed, one message at a time.
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    t.put(&mut rng, NOW, &message(n, &body)).unwrap();
                    let start = Instant::now();
                    let erased = t.erase(CONVERSATION, black_box(&id(n))).unwrap();
                    total += start.elapsed();
                    assert_eq!(erased.erased, 1);
                }
                total
            });
        });
    }
    group.finish();
    drop(t);
}

fn main() {
    let mut c = common::ci_mode(Criterion::default()).configure_from_args();
    bench(&mut c);
    c.final_summary();
}
