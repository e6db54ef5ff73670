//! Replays the fuzz corpora of `transport_frame`, `transport_state` and `transport_records` through the fuzz
//! targets' checks (`confide_test_support::fuzzing::transport_*`). With
//! `CONFIDE_REGENERATE_CORPUS=1` it first (re)writes the seed corpora from the deterministic
//! samples.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::sync::Once;

use confide_test_support::{corpus, fuzzing};
use confide_transport::{Delivery, Frame};

/// Rewrites the seed corpora once per run when `CONFIDE_REGENERATE_CORPUS=1`.
fn regenerate_when_asked() {
    static ONCE: Once = Once::new();
    if !corpus::regenerate_requested() {
        return;
    }
    ONCE.call_once(|| {
        let mut frames: Vec<Vec<u8>> = common::sample_frames()
            .into_iter()
            .map(|(_, id, payload)| Frame::Data { id, payload }.to_bytes().unwrap())
            .collect();
        let mut states = vec![Delivery::new().to_bytes()];
        let mut records = vec![records_of(&Delivery::new())];
        for seed in 1..=4 {
            let (d, polled) = common::sample_state(seed);
            states.push(d.to_bytes());
            frames.extend(polled);
            records.push(records_of(&d));
            if let Some(chunked) = chunk_records_of(&d) {
                records.push(chunked);
            }
        }
        corpus::write("transport_frame", &frames);
        corpus::write("transport_state", &states);
        corpus::write("transport_records", &records);
    });
}

/// The records of a machine's outbox entries.
fn outbox_records(d: &Delivery) -> Vec<Vec<u8>> {
    d.entries()
        .outbox
        .iter()
        .map(|id| d.outbox_record(*id).unwrap())
        .collect()
}

/// A machine's records, framed as the `transport_records` target reads them.
fn records_of(d: &Delivery) -> Vec<u8> {
    let entries = d.entries();
    let outbox = outbox_records(d);
    let seen: Vec<Vec<u8>> = entries
        .seen
        .iter()
        .map(|id| d.seen_record(*id).unwrap())
        .collect();
    fuzzing::join_transport_records(&d.core_record(), &outbox, &seen)
}

/// A machine's records with its dedup window in chunks, framed as the `transport_records`
/// target reads chunks (the `i`-th dedup record is chunk `i`); `None` unless its chunks are
/// numbered from 0 without a gap, as in a young machine.
fn chunk_records_of(d: &Delivery) -> Option<Vec<u8>> {
    let entries = d.entries();
    if entries.seen_chunks.is_empty()
        || entries
            .seen_chunks
            .iter()
            .enumerate()
            .any(|(i, k)| *k != i as u64)
    {
        return None;
    }
    let outbox = outbox_records(d);
    let chunks: Vec<Vec<u8>> = entries
        .seen_chunks
        .iter()
        .map(|k| d.seen_chunk_record(*k).unwrap())
        .collect();
    Some(fuzzing::join_transport_records(
        &d.core_record(),
        &outbox,
        &chunks,
    ))
}

#[test]
fn records_corpus_replays() {
    regenerate_when_asked();
    let inputs = corpus::replay("transport_records", fuzzing::transport_records);
    assert!(
        inputs.iter().any(|i| {
            fuzzing::split_transport_records(i).is_some_and(|(core, outbox, seen)| {
                !outbox.is_empty() && Delivery::from_records(core, outbox, seen).is_ok()
            })
        }),
        "the seed corpus holds loadable records with outbox entries"
    );
    assert!(
        inputs.iter().any(|i| {
            fuzzing::split_transport_records(i).is_some_and(|(core, outbox, seen)| {
                !seen.is_empty()
                    && Delivery::from_chunked_records(
                        core,
                        outbox,
                        [],
                        seen.iter().enumerate().map(|(k, r)| (k as u64, *r)),
                    )
                    .is_ok()
            })
        }),
        "and records with the dedup window in chunks"
    );
}

#[test]
fn frame_corpus_replays() {
    regenerate_when_asked();
    let inputs = corpus::replay("transport_frame", fuzzing::transport_frame);
    assert!(
        inputs.iter().any(|i| Frame::from_bytes(i).is_ok()),
        "the seed corpus holds valid frames"
    );
}

#[test]
fn state_corpus_replays() {
    regenerate_when_asked();
    let inputs = corpus::replay("transport_state", fuzzing::transport_state);
    assert!(
        inputs.iter().any(|i| Delivery::from_bytes(i).is_ok()),
        "the seed corpus holds valid states"
    );
}
