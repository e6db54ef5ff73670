//! Property tests of the delivery machine on its own: random operation sequences, with a twin
//! that goes through its byte encoding after every operation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use chacha20::ChaCha20Rng;
use confide_crypto::{Duration, Timestamp};
use confide_transport::consts::{MAX_OUTBOX_MESSAGES, RELAY_RECEIPT_HOLD};
use confide_transport::{
    AckOutcome, Address, Delivery, DeliveryEvent, Frame, FrameId, IncomingStatus,
};
use proptest::prelude::*;
use rand_core::SeedableRng;

#[derive(Debug, Clone)]
enum Op {
    Send {
        to: u8,
        len: usize,
    },
    SendUnacknowledged {
        to: u8,
    },
    /// Ack the n-th id ever sent (modulo), claiming to come from peer `from`.
    Ack {
        nth: usize,
        from: u8,
    },
    AckRandom,
    Advance(u64),
    Timeout,
    PollTransmits,
    PollEvents,
    Incoming {
        id: u8,
        from: u8,
    },
    Cancel {
        nth: usize,
    },
    /// The relay's receipt for the n-th id ever sent (modulo).
    RelayReceipt {
        nth: usize,
    },
    RelayReconnected,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, 0usize..64).prop_map(|(to, len)| Op::Send { to, len }),
        1 => (0u8..3).prop_map(|to| Op::SendUnacknowledged { to }),
        3 => (any::<usize>(), 0u8..3).prop_map(|(nth, from)| Op::Ack { nth, from }),
        1 => Just(Op::AckRandom),
        3 => prop_oneof![0u64..5_000, 0u64..4_000_000, 0u64..900_000_000].prop_map(Op::Advance),
        2 => Just(Op::Timeout),
        2 => Just(Op::PollTransmits),
        2 => Just(Op::PollEvents),
        2 => (0u8..8, 0u8..3).prop_map(|(id, from)| Op::Incoming { id, from }),
        1 => any::<usize>().prop_map(|nth| Op::Cancel { nth }),
        2 => any::<usize>().prop_map(|nth| Op::RelayReceipt { nth }),
        1 => Just(Op::RelayReconnected),
    ]
}

fn peer(n: u8) -> Address {
    Address::new(&[b'p', n]).unwrap()
}

/// Everything the machine showed its caller in one operation.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Sent(Result<FrameId, confide_transport::OutboxError>),
    Ack(AckOutcome),
    Frames(Vec<(Address, Vec<u8>)>),
    Events(Vec<DeliveryEvent>),
    Incoming(IncomingStatus, IncomingStatus),
    Cancelled(bool),
    Receipt(bool),
    Nothing,
}

struct Model {
    sent: Vec<(FrameId, Address)>,
    outcomes: BTreeMap<FrameId, Vec<DeliveryEvent>>,
    now: Timestamp,
    /// Ids a relay receipt holds back, and until when.
    held: BTreeMap<FrameId, Timestamp>,
}

fn model(now: Timestamp) -> Model {
    Model {
        sent: vec![],
        outcomes: BTreeMap::new(),
        now,
        held: BTreeMap::new(),
    }
}

fn apply(d: &mut Delivery, op: &Op, m: &mut Model, rng: &mut ChaCha20Rng) -> Seen {
    match op {
        Op::Send { to, len } => {
            let r = d.send(rng, m.now, peer(*to), vec![*to; *len]);
            if let Ok(id) = r {
                m.sent.push((id, peer(*to)));
            }
            Seen::Sent(r)
        }
        Op::SendUnacknowledged { to } => Seen::Sent(d.send_unacknowledged(rng, peer(*to), vec![9])),
        Op::Ack { nth, from } => match m.sent.get(nth % m.sent.len().max(1)) {
            Some((id, to)) => {
                let outcome = d.on_ack(&peer(*from), *id);
                if outcome == AckOutcome::Delivered {
                    assert_eq!(to, &peer(*from), "only the recipient's ack delivers");
                }
                Seen::Ack(outcome)
            }
            None => Seen::Nothing,
        },
        Op::AckRandom => Seen::Ack(d.on_ack(&peer(0), FrameId::random(rng))),
        Op::Advance(ms) => {
            m.now = m.now.saturating_add(Duration::from_millis(*ms));
            Seen::Nothing
        }
        Op::Timeout => {
            d.handle_timeout(m.now);
            Seen::Nothing
        }
        Op::PollTransmits => {
            let mut frames = Vec::new();
            while let Some(tx) = d.poll_transmit() {
                let Frame::Data { id, .. } = Frame::from_bytes(&tx.frame).unwrap() else {
                    panic!("only data frames")
                };
                // A receipt holds every copy back until its hold ends (or a reconnect).
                assert!(
                    m.held.get(&id).is_none_or(|until| m.now >= *until),
                    "a frame the relay confirmed went out again during its hold"
                );
                frames.push((tx.to, tx.frame));
            }
            Seen::Frames(frames)
        }
        Op::PollEvents => {
            let mut events = Vec::new();
            while let Some(e) = d.poll_event() {
                let id = match e {
                    DeliveryEvent::Delivered(id) | DeliveryEvent::DeliveryFailed(id) => id,
                    _ => unreachable!(),
                };
                m.outcomes.entry(id).or_default().push(e);
                events.push(e);
            }
            Seen::Events(events)
        }
        Op::Incoming { id, from } => {
            let id = FrameId::from_bytes([*id; 16]);
            // One payload per id here: the digest follows the id.
            let digest = confide_transport::PayloadDigest::from_bytes([id.as_bytes()[0]; 32]);
            let checked = d.check_incoming(id, &digest, m.now);
            let accepted = d.accept_incoming(id, peer(*from), digest, m.now);
            if let IncomingStatus::Duplicate { .. } = checked {
                assert_eq!(checked, accepted, "check and accept agree");
            }
            Seen::Incoming(checked, accepted)
        }
        Op::Cancel { nth } => match m.sent.get(nth % m.sent.len().max(1)) {
            Some((id, _)) => Seen::Cancelled(d.cancel(*id)),
            None => Seen::Nothing,
        },
        Op::RelayReceipt { nth } => match m.sent.get(nth % m.sent.len().max(1)) {
            Some((id, _)) => {
                let waiting = d.is_waiting(*id);
                let held = d.on_relay_receipt(m.now, *id);
                assert_eq!(held, waiting, "a receipt holds exactly the waiting frames");
                if held {
                    m.held.insert(*id, m.now.saturating_add(RELAY_RECEIPT_HOLD));
                }
                Seen::Receipt(held)
            }
            None => Seen::Nothing,
        },
        Op::RelayReconnected => {
            d.on_relay_reconnected();
            m.held.clear();
            Seen::Nothing
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn restoring_after_any_operation_changes_nothing(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..80),
        restart_mask in any::<u128>(),
    ) {
        let start = Timestamp::from_millis(1_700_000_000_000);
        let mut live = Delivery::new();
        let mut twin = Delivery::new();
        let mut rng_live = ChaCha20Rng::seed_from_u64(seed);
        let mut rng_twin = ChaCha20Rng::seed_from_u64(seed);
        let mut m_live = model(start);
        let mut m_twin = model(start);
        for (i, op) in ops.iter().enumerate() {
            let before = live.clone();
            let seen_live = apply(&mut live, op, &mut m_live, &mut rng_live);
            let seen_twin = apply(&mut twin, op, &mut m_twin, &mut rng_twin);
            prop_assert_eq!(&seen_live, &seen_twin);
            if matches!(op, Op::Timeout) {
                // After handle_timeout(now) nothing is due any more: no busy loop. (Checked
                // before a restart below, which, like a reconnect, makes held frames due.)
                prop_assert!(live.poll_timeout().is_none_or(|t| t > m_live.now));
            }
            // A refused send or ignored ack leaves the state exactly as it was.
            if matches!(seen_live, Seen::Sent(Err(_)) | Seen::Ack(AckOutcome::UnknownId | AckOutcome::PeerMismatch)) {
                prop_assert_eq!(&live, &before);
            }
            if restart_mask >> (i % 128) & 1 == 1 {
                let bytes = twin.to_bytes();
                twin = Delivery::from_bytes(&bytes).unwrap();
                prop_assert_eq!(twin.to_bytes(), bytes);
                // Relay receipts are not saved: a restart is a reconnect.
                live.on_relay_reconnected();
                m_live.held.clear();
                m_twin.held.clear();
            }
            prop_assert_eq!(&live, &twin);
            prop_assert!(live.outbox_len() <= MAX_OUTBOX_MESSAGES);
        }
        // Each id reaches at most one outcome, and only sent ids do.
        for (id, outcomes) in &m_live.outcomes {
            prop_assert_eq!(outcomes.len(), 1);
            prop_assert!(m_live.sent.iter().any(|(s, _)| s == id));
        }
    }
}

/// A store of the machine's records, kept up to date from [`Delivery::take_changes`] the way
/// an incremental store is.
#[derive(Default)]
struct RecordStore {
    core: Vec<u8>,
    outbox: BTreeMap<FrameId, Vec<u8>>,
    seen: BTreeMap<FrameId, Vec<u8>>,
    /// The same dedup window kept in chunks instead (a second store, from the same changes).
    seen_chunks: BTreeMap<u64, Vec<u8>>,
}

impl RecordStore {
    /// Applies the changes since the last call.
    fn apply(&mut self, d: &mut Delivery) {
        self.core = d.core_record();
        let changes = d.take_changes();
        for id in changes.outbox {
            match d.outbox_record(id) {
                Some(r) => self.outbox.insert(id, r),
                None => self.outbox.remove(&id),
            };
        }
        for id in changes.seen {
            match d.seen_record(id) {
                Some(r) => self.seen.insert(id, r),
                None => self.seen.remove(&id),
            };
        }
        for chunk in changes.seen_chunks {
            match d.seen_chunk_record(chunk) {
                Some(r) => self.seen_chunks.insert(chunk, r),
                None => self.seen_chunks.remove(&chunk),
            };
        }
    }

    /// The machine from the chunked form of the dedup window.
    fn load_chunked(&self) -> Delivery {
        Delivery::from_chunked_records(
            &self.core,
            self.outbox.values().map(Vec::as_slice),
            [],
            self.seen_chunks.iter().map(|(k, v)| (*k, v.as_slice())),
        )
        .unwrap()
    }

    fn load(&self) -> Delivery {
        Delivery::from_records(
            &self.core,
            self.outbox.values().map(Vec::as_slice),
            self.seen.values().map(Vec::as_slice),
        )
        .unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Written record by record (only what changed), the machine reloads to exactly the live
    /// one whenever its outputs are drained: no change is ever missed.
    #[test]
    fn incremental_records_reload_to_the_live_machine(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let start = Timestamp::from_millis(1_700_000_000_000);
        let mut live = Delivery::new();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut model = model(start);
        let mut store = RecordStore::default();
        store.apply(&mut live);
        for op in &ops {
            let _ = apply(&mut live, op, &mut model, &mut rng);
            // Drain outputs the way the endpoint does before it persists.
            while live.poll_transmit().is_some() {}
            while live.poll_event().is_some() {}
            store.apply(&mut live);
            let loaded = store.load();
            prop_assert_eq!(loaded.to_bytes(), live.to_bytes());
            prop_assert_eq!(store.load_chunked().to_bytes(), live.to_bytes());
            // Exactly the chunks that hold entries are stored.
            prop_assert_eq!(
                store.seen_chunks.keys().copied().collect::<Vec<_>>(),
                live.entries().seen_chunks
            );
            prop_assert_eq!(store.outbox.len(), live.outbox_len());
            prop_assert_eq!(store.seen.len(), live.dedup_len());
        }
    }
}

#[test]
fn records_are_strict() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let now = Timestamp::from_millis(1_700_000_000_000);
    let mut d = Delivery::new();
    let to = Address::new(b"peer").unwrap();
    let id = d.send(&mut rng, now, to.clone(), b"x".to_vec()).unwrap();
    let core = d.core_record();
    let entry = d.outbox_record(id).unwrap();
    // The same entry twice, a trailing byte, an entry the core never issued: refused.
    assert!(Delivery::from_records(&core, [&entry[..], &entry[..]], []).is_err());
    let mut long = entry.clone();
    long.push(0);
    assert!(Delivery::from_records(&core, [&long[..]], []).is_err());
    let fresh = Delivery::new();
    assert!(Delivery::from_records(&fresh.core_record(), [&entry[..]], []).is_err());
    // A wrong version byte.
    let mut old = core.clone();
    old[0] = 2;
    assert!(Delivery::from_records(&old, [], []).is_err());
    let loaded = Delivery::from_records(&core, [&entry[..]], []).unwrap();
    assert!(loaded.is_waiting(id));
    // The queued first transmission is not in the records: the entry waits for its timer.
    assert!(loaded.clone().poll_transmit().is_none());
}

/// The dedup window in chunks of `DEDUP_ENTRIES_PER_CHUNK` by arrival order: 40 entries are 3
/// chunks; a new entry changes only its own chunk, forgetting the oldest changes the first;
/// the chunks reload to the same machine, alone or beside per-entry records of other entries;
/// and reading is strict.
/// `forget_changes` drops what `take_changes` would have reported, and only that: the
/// next change is reported again.
#[test]
fn forgotten_changes_are_not_reported_and_later_ones_are() {
    let now = Timestamp::from_millis(1_750_000_000_000);
    let mut d = Delivery::new();
    let from = Address::new(b"peer").unwrap();
    let id = |i: u8| FrameId::from_bytes([i; 16]);
    for i in 0..20u8 {
        let _ = d.accept_incoming(
            id(i),
            from.clone(),
            confide_transport::PayloadDigest::from_bytes([i; 32]),
            now,
        );
    }
    d.forget_changes();
    let changes = d.take_changes();
    assert!(changes.outbox.is_empty() && changes.seen.is_empty() && changes.seen_chunks.is_empty());
    let _ = d.accept_incoming(
        id(20),
        from,
        confide_transport::PayloadDigest::from_bytes([20; 32]),
        now,
    );
    let changes = d.take_changes();
    assert_eq!(changes.seen, [id(20)]);
    assert_eq!(changes.seen_chunks, [1]);
}

#[test]
fn the_dedup_window_is_stored_in_chunks() {
    use confide_transport::consts::{DEDUP_ENTRIES_PER_CHUNK, DEDUP_WINDOW_AGE};
    use confide_transport::{IncomingStatus, PayloadDigest};
    assert_eq!(DEDUP_ENTRIES_PER_CHUNK, 16);
    let now = Timestamp::from_millis(1_700_000_000_000);
    let mut d = Delivery::new();
    let from = Address::new(b"peer").unwrap();
    let id = |i: u8| FrameId::from_bytes([i; 16]);
    for i in 0..40u8 {
        assert_eq!(
            d.accept_incoming(id(i), from.clone(), PayloadDigest::from_bytes([i; 32]), now),
            IncomingStatus::New
        );
    }
    let changes = d.take_changes();
    assert_eq!(changes.seen_chunks, [0, 1, 2]);
    assert_eq!(d.entries().seen_chunks, [0, 1, 2]);
    assert!(d.seen_chunk_record(3).is_none());
    let chunks: Vec<(u64, Vec<u8>)> = (0..3)
        .map(|k| (k, d.seen_chunk_record(k).unwrap()))
        .collect();
    assert_eq!(chunks[0].1[1], 16, "sixteen entries in a full chunk");
    assert_eq!(chunks[2].1[1], 8);
    let core = d.core_record();
    let as_slices = |c: &[(u64, Vec<u8>)]| -> Vec<(u64, Vec<u8>)> { c.to_vec() };
    let load = |seen: &[Vec<u8>], chunks: &[(u64, Vec<u8>)]| {
        Delivery::from_chunked_records(
            &core,
            [],
            seen.iter().map(Vec::as_slice),
            chunks.iter().map(|(k, v)| (*k, v.as_slice())),
        )
    };
    assert_eq!(load(&[], &chunks).unwrap().to_bytes(), d.to_bytes());
    // The first chunk as per-entry records beside the other two chunks.
    let per_entry: Vec<Vec<u8>> = (0..16).map(|i| d.seen_record(id(i)).unwrap()).collect();
    assert_eq!(
        load(&per_entry, &chunks[1..]).unwrap().to_bytes(),
        d.to_bytes()
    );
    // Twice the same entry (per entry and in its chunk): refused.
    assert!(load(&per_entry, &chunks).is_err());
    // A chunk under another number, an empty one, a trailing byte, a truncated one, entries
    // out of order: refused.
    let mut wrong = as_slices(&chunks);
    wrong[0].0 = 5;
    assert!(load(&[], &wrong).is_err());
    let mut empty = as_slices(&chunks);
    empty[2].1.truncate(1);
    empty[2].1.push(0);
    assert!(load(&[], &empty).is_err());
    let mut long = as_slices(&chunks);
    long[1].1.push(0);
    assert!(load(&[], &long).is_err());
    let mut short = as_slices(&chunks);
    short[1].1.pop();
    assert!(load(&[], &short).is_err());
    let mut overfull = as_slices(&chunks);
    overfull[0].1[1] = 17;
    assert!(load(&[], &overfull).is_err());
    // A chunk's entries above its orders (chunk 2 stored as chunk 1), and two entries of a
    // chunk out of order (each entry here is 77 bytes: the same 4-byte address).
    let mut above = as_slices(&chunks);
    above[2].0 = 1;
    above.remove(1);
    assert!(load(&[], &above).is_err());
    let entry = 16 + 8 + 1 + 4 + 8 + 32 + 8;
    let mut swapped = as_slices(&chunks);
    let (first, second) = (2..2 + entry, 2 + entry..2 + 2 * entry);
    let a = swapped[0].1[first.clone()].to_vec();
    let b = swapped[0].1[second.clone()].to_vec();
    swapped[0].1[first].copy_from_slice(&b);
    swapped[0].1[second].copy_from_slice(&a);
    assert!(load(&[], &swapped).is_err());
    // The ids of each chunk, in order.
    assert_eq!(d.seen_chunk_ids(1), (16..32).map(id).collect::<Vec<_>>());
    assert_eq!(d.seen_chunk_ids(2), (32..40).map(id).collect::<Vec<_>>());
    assert!(d.seen_chunk_ids(3).is_empty());
    // Changes name only the chunks touched.
    assert_eq!(
        d.accept_incoming(
            id(40),
            from.clone(),
            PayloadDigest::from_bytes([40; 32]),
            now
        ),
        IncomingStatus::New
    );
    assert_eq!(d.take_changes().seen_chunks, [2]);
    let later = now.saturating_add(DEDUP_WINDOW_AGE);
    d.handle_timeout(later.saturating_add(Duration::from_millis(1)));
    assert_eq!(d.dedup_len(), 0, "every entry expired");
    assert_eq!(d.take_changes().seen_chunks, [0, 1, 2]);
    assert!(d.entries().seen_chunks.is_empty());
}
