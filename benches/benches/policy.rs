//! Policy-layer benchmarks.
//!
//! Naming convention (as in `session.rs`): group `policy/<operation>`, function ids `confide`
//! and `floor`, a size parameter.
//!
//! * `policy/per_message` (1KiB): `floor` is ChaCha20-Poly1305 encrypt + decrypt of 1 KiB with
//!   `confide_crypto::aead` (what the session's encrypt + decrypt of 1 KiB is dominated by);
//!   `policy_only` is the policy's own per-message work: stamp an outgoing 1 KiB text into a
//!   content frame (sender tracks it) and process the incoming frame (receiver decodes, checks,
//!   schedules its expiry); `confide` is both together (stamp, encrypt, decrypt, process).
//!   The sender and receiver states are reset every 1024 messages, so about 500 messages are
//!   tracked on average, each with a one-hour timer in the scheduler.
//! * `policy/scheduler_insert`, `policy/scheduler_cancel`, `policy/scheduler_pop_due`
//!   (1k / 10k / 100k pending expiries): `confide` is [`confide_policy::ExpiryQueue`] (two
//!   ordered indexes, O(log n) cancel without stale entries); `floor` is a single
//!   `BTreeSet<(deadline, id)>`, the least an ordered deadline set can do (its cancel needs the
//!   deadline handed in). Each op is timed in chunks of 1000 at the stated queue size; the
//!   untimed half of each chunk restores the size.
//!
//! After the criterion groups a short same-process timing prints the policy overhead as a
//! percentage of the AEAD floor and the scheduler's per-op cost at each size (growth should be
//! logarithmic: roughly +1 step per tenfold size, not tenfold).
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

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use chacha20::ChaCha20Rng;
use confide_crypto::aead::{self, NONCE_LEN};
use confide_crypto::secret::AeadKey;
use confide_crypto::{Duration as PolicyDuration, Timestamp};
use confide_policy::{
    ConversationPolicy, ExpiryQueue, Incoming, MessageId, OrgBounds, RetentionPolicy, Side,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand_core::{Rng, SeedableRng};

const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);
const TEXT_LEN: usize = 1024;
const RESET_EVERY: u64 = 1024;
const CHUNK: usize = 1000;
const SIZES: [(usize, &str); 3] = [(1_000, "1k"), (10_000, "10k"), (100_000, "100k")];

// ---- per message ----------------------------------------------------------------------------

struct Conversation {
    sender: ConversationPolicy,
    receiver: ConversationPolicy,
    counter: u64,
    text: Vec<u8>,
    key: AeadKey,
}

fn fresh_pair() -> (ConversationPolicy, ConversationPolicy) {
    let policy = RetentionPolicy::after_send(PolicyDuration::from_hours(1));
    (
        ConversationPolicy::new(Side::Initiator, OrgBounds::UNRESTRICTED, policy),
        ConversationPolicy::new(Side::Responder, OrgBounds::UNRESTRICTED, policy),
    )
}

impl Conversation {
    fn new() -> Self {
        let (sender, receiver) = fresh_pair();
        Self {
            sender,
            receiver,
            counter: 0,
            text: vec![0x61; TEXT_LEN],
            key: AeadKey::new([7; 32]),
        }
    }

    fn next_id(&mut self) -> MessageId {
        if self.counter.is_multiple_of(RESET_EVERY) {
            (self.sender, self.receiver) = fresh_pair();
        }
        self.counter += 1;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.counter.to_be_bytes());
        MessageId::from_bytes(b)
    }

    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        n
    }

    /// Stamp outgoing + process incoming.
    fn policy_only(&mut self) -> usize {
        let id = self.next_id();
        let frame = self.sender.send_text(id, &self.text, NOW).unwrap();
        match self
            .receiver
            .handle_incoming(frame.as_bytes(), NOW)
            .unwrap()
        {
            Incoming::Message(m) => m.content.kind().len(),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Stamp, encrypt, decrypt, process.
    fn full(&mut self) -> usize {
        let id = self.next_id();
        let nonce = self.nonce();
        let frame = self.sender.send_text(id, &self.text, NOW).unwrap();
        let sealed = aead::seal(&self.key, &nonce, b"", frame.as_bytes());
        let opened = aead::open(&self.key, &nonce, b"", &sealed).unwrap();
        match self.receiver.handle_incoming(&opened, NOW).unwrap() {
            Incoming::Message(m) => m.content.kind().len(),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The floor: ChaCha20-Poly1305 encrypt + decrypt of 1 KiB.
    fn floor(&mut self) -> usize {
        self.counter += 1;
        let nonce = self.nonce();
        let sealed = aead::seal(&self.key, &nonce, b"", &self.text);
        aead::open(&self.key, &nonce, b"", &sealed).unwrap().len()
    }
}

fn bench_per_message(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy/per_message");
    let mut conv = Conversation::new();
    g.bench_function(BenchmarkId::new("floor", "1KiB"), |b| {
        b.iter(|| black_box(conv.floor()))
    });
    g.bench_function(BenchmarkId::new("policy_only", "1KiB"), |b| {
        b.iter(|| black_box(conv.policy_only()))
    });
    g.bench_function(BenchmarkId::new("confide", "1KiB"), |b| {
        b.iter(|| black_box(conv.full()))
    });
    g.finish();
}

// ---- scheduler ------------------------------------------------------------------------------

fn random_id(rng: &mut ChaCha20Rng) -> MessageId {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    MessageId::from_bytes(b)
}

/// A deadline within the next 30 days.
fn random_deadline(rng: &mut ChaCha20Rng) -> Timestamp {
    NOW.saturating_add(PolicyDuration::from_millis(rng.next_u64() % 2_592_000_000))
}

struct Scheduler {
    queue: ExpiryQueue<MessageId>,
    set: BTreeSet<(Timestamp, MessageId)>,
    rng: ChaCha20Rng,
}

impl Scheduler {
    fn new(n: usize) -> Self {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let mut queue = ExpiryQueue::new();
        let mut set = BTreeSet::new();
        for _ in 0..n {
            let (id, at) = (random_id(&mut rng), random_deadline(&mut rng));
            queue.insert(id, at);
            set.insert((at, id));
        }
        Self { queue, set, rng }
    }

    fn batch(&mut self, early: bool) -> Vec<(MessageId, Timestamp)> {
        (0..CHUNK)
            .map(|i| {
                let at = if early {
                    // Due before anything prefilled, so pop_due takes exactly these.
                    NOW.saturating_sub(PolicyDuration::from_millis((CHUNK - i) as u64))
                } else {
                    random_deadline(&mut self.rng)
                };
                (random_id(&mut self.rng), at)
            })
            .collect()
    }

    /// Total time of `iters` timed ops of kind `op` on the `confide` queue or the `floor` set.
    fn time(&mut self, iters: u64, op: Op, floor: bool) -> Duration {
        let mut total = Duration::ZERO;
        let mut done = 0u64;
        while done < iters {
            let batch = self.batch(op == Op::PopDue);
            let n = (iters - done).min(CHUNK as u64) as usize;
            let batch = &batch[..n];
            match (op, floor) {
                (Op::Insert, false) => {
                    let t = Instant::now();
                    for (id, at) in batch {
                        black_box(self.queue.insert(*id, *at));
                    }
                    total += t.elapsed();
                    for (id, _) in batch {
                        black_box(self.queue.cancel(id));
                    }
                }
                (Op::Insert, true) => {
                    let t = Instant::now();
                    for (id, at) in batch {
                        black_box(self.set.insert((*at, *id)));
                    }
                    total += t.elapsed();
                    for (id, at) in batch {
                        black_box(self.set.remove(&(*at, *id)));
                    }
                }
                (Op::Cancel, false) => {
                    for (id, at) in batch {
                        black_box(self.queue.insert(*id, *at));
                    }
                    let t = Instant::now();
                    for (id, _) in batch {
                        black_box(self.queue.cancel(id));
                    }
                    total += t.elapsed();
                }
                (Op::Cancel, true) => {
                    for (id, at) in batch {
                        black_box(self.set.insert((*at, *id)));
                    }
                    let t = Instant::now();
                    for (id, at) in batch {
                        black_box(self.set.remove(&(*at, *id)));
                    }
                    total += t.elapsed();
                }
                (Op::PopDue, false) => {
                    for (id, at) in batch {
                        black_box(self.queue.insert(*id, *at));
                    }
                    let t = Instant::now();
                    for _ in 0..n {
                        black_box(self.queue.pop_due(NOW));
                    }
                    total += t.elapsed();
                }
                (Op::PopDue, true) => {
                    for (id, at) in batch {
                        black_box(self.set.insert((*at, *id)));
                    }
                    let t = Instant::now();
                    for _ in 0..n {
                        black_box(self.set.pop_first());
                    }
                    total += t.elapsed();
                }
            }
            done += n as u64;
        }
        total
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert,
    Cancel,
    PopDue,
}

fn bench_scheduler(c: &mut Criterion) {
    for (op, name) in [
        (Op::Insert, "policy/scheduler_insert"),
        (Op::Cancel, "policy/scheduler_cancel"),
        (Op::PopDue, "policy/scheduler_pop_due"),
    ] {
        let mut g = c.benchmark_group(name);
        for (n, label) in SIZES {
            let mut s = Scheduler::new(n);
            g.bench_function(BenchmarkId::new("confide", label), |b| {
                b.iter_custom(|iters| s.time(iters, op, false))
            });
            g.bench_function(BenchmarkId::new("floor", label), |b| {
                b.iter_custom(|iters| s.time(iters, op, true))
            });
        }
        g.finish();
    }
}

// ---- same-process report --------------------------------------------------------------------

#[path = "common/timing.rs"]
mod timing;
use timing::median_time;

fn report(_c: &mut Criterion) {
    let mut conv = Conversation::new();
    let (rounds, iters) = (15, 2000);
    let (mut floor, mut policy, mut full) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        floor += median_time(rounds, iters, || {
            black_box(conv.floor());
        });
        policy += median_time(rounds, iters, || {
            black_box(conv.policy_only());
        });
        full += median_time(rounds, iters, || {
            black_box(conv.full());
        });
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / 3.0;
    println!(
        "policy/per_message/1KiB: policy {:.2} us, AEAD floor {:.2} us, policy overhead {:.1}% of the floor; stamp+encrypt+decrypt+process {:.2} us ({:.2}x the floor)",
        us(policy),
        us(floor),
        100.0 * policy.as_secs_f64() / floor.as_secs_f64(),
        us(full),
        full.as_secs_f64() / floor.as_secs_f64()
    );
    for (op, name) in [
        (Op::Insert, "insert"),
        (Op::Cancel, "cancel"),
        (Op::PopDue, "pop_due"),
    ] {
        let mut line = format!("policy/scheduler_{name}:");
        let mut first = None;
        for (n, label) in SIZES {
            let mut s = Scheduler::new(n);
            let per_op = (0..5)
                .map(|_| s.time(20_000, op, false).as_secs_f64() * 1e9 / 20_000.0)
                .fold(f64::MAX, f64::min);
            let base = *first.get_or_insert(per_op);
            line += &format!(" {label} {per_op:.0} ns ({:.2}x)", per_op / base);
        }
        println!("{line}");
    }
}

criterion_group! {
    name = benches;
    config = common::ci_mode(Criterion::default());
    targets = bench_per_message, bench_scheduler, report
}
criterion_main!(benches);
