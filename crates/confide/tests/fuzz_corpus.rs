//! Replays the `endpoint_state`, `endpoint_certified_bundle` and `endpoint_ack_payload` fuzz
//! corpora through the fuzz
//! targets' checks (`confide_test_support::fuzzing::endpoint_*`): no panic, and every input
//! that decodes encodes to the same bytes. With `CONFIDE_REGENERATE_CORPUS=1` it first
//! (re)generates the seed corpora from simulated sessions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::needless_range_loop
)]

use crate::common;

use chacha20::ChaCha20Rng;
use common::{connect, lossy, pair};
use confide::{AcknowledgementPayload, CertifiedBundle, Endpoint, StorageKey};
use confide_crypto::Duration;
use confide_session::storage::{StateKind, open, seal};
use confide_test_support::{corpus, fuzzing};
use rand_core::SeedableRng;

/// Whether `data` imports as an endpoint state (sealed the way `fuzzing::endpoint_state`
/// seals it).
fn imports(data: &[u8]) -> bool {
    let key = StorageKey::new([7; 32]);
    let blob = seal(
        &mut ChaCha20Rng::from_seed([1; 32]),
        &key,
        StateKind::Endpoint,
        b"account",
        data,
    );
    Endpoint::import_state(&key, b"account", &blob).is_ok()
}

#[test]
fn certified_bundle_corpus_replays() {
    if corpus::regenerate_requested() {
        let (world, _service) = pair(42, lossy(0, 0, 0));
        let published = world.endpoint(1).published_bundles();
        let seeds: Vec<Vec<u8>> = published
            .one_time
            .iter()
            .take(2)
            .chain([&published.last_resort])
            .cloned()
            .collect();
        corpus::write("endpoint_certified_bundle", &seeds);
    }
    let seeds = corpus::replay(
        "endpoint_certified_bundle",
        fuzzing::endpoint_certified_bundle,
    );
    let mut decoded = 0;
    for bytes in &seeds {
        if CertifiedBundle::from_bytes(bytes).is_ok() {
            decoded += 1;
        }
        for cut in [0, 1, 3, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            let cut = &bytes[..cut.min(bytes.len())];
            fuzzing::endpoint_certified_bundle(cut);
            assert!(
                cut.len() == bytes.len() || CertifiedBundle::from_bytes(cut).is_err(),
                "a truncated bundle is refused"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        fuzzing::endpoint_certified_bundle(&longer);
        assert!(
            CertifiedBundle::from_bytes(&longer).is_err(),
            "trailing bytes are refused"
        );
    }
    assert!(
        decoded >= 3,
        "the seed corpus holds valid certified bundles"
    );
}

#[test]
fn ack_payload_corpus_replays() {
    if corpus::regenerate_requested() {
        // Acknowledgement payloads of one, two and many frames, as an endpoint seals them.
        let ids: Vec<confide_transport::FrameId> = (0u8..40)
            .map(|i| confide_transport::FrameId::from_bytes([i.wrapping_mul(37); 16]))
            .collect();
        let mut seeds: Vec<Vec<u8>> = [1usize, 2, 40]
            .iter()
            .map(|&n| AcknowledgementPayload::new(&ids[..n]).unwrap().to_bytes())
            .collect();
        // Two acknowledgements in front of a (short, synthetic) session message.
        seeds.push(
            AcknowledgementPayload::new(&ids[..2])
                .unwrap()
                .in_front_of(&[0x01, 0x02, 0x00, 0x01]),
        );
        corpus::write("endpoint_ack_payload", &seeds);
    }
    let seeds = corpus::replay("endpoint_ack_payload", fuzzing::endpoint_ack_payload);
    assert!(seeds.len() >= 4, "the corpus is present");
    assert!(
        seeds.iter().any(|b| b.get(1) == Some(&0x23)),
        "a wrapped seed"
    );
    for bytes in seeds.iter().filter(|b| b.get(1) == Some(&0x22)) {
        assert!(
            AcknowledgementPayload::from_bytes(bytes).is_ok(),
            "every seed is a valid payload"
        );
        for cut in 0..bytes.len() {
            fuzzing::endpoint_ack_payload(&bytes[..cut]);
            assert!(AcknowledgementPayload::from_bytes(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        fuzzing::endpoint_ack_payload(&longer);
        assert!(AcknowledgementPayload::from_bytes(&longer).is_err());
    }
}

fn generate() {
    let (mut world, _service) = pair(41, lossy(10, 10, 10));
    let mut states = Vec::new();
    let key = world.key.clone();
    let snapshot = |world: &mut common::World, n: usize, states: &mut Vec<Vec<u8>>| {
        let blob = world.command(n, |e, _, rng| {
            e.export_state(rng, &key, b"account").unwrap()
        });
        states.push(
            open(&key, StateKind::Endpoint, b"account", &blob)
                .unwrap()
                .to_vec(),
        );
    };
    snapshot(&mut world, 0, &mut states);
    let conv = connect(&mut world);
    world.send(0, conv, b"first");
    snapshot(&mut world, 0, &mut states);
    world.run_until(world.now().saturating_add(Duration::from_secs(2)));
    snapshot(&mut world, 1, &mut states);
    for i in 0..4 {
        world.send(0, conv, format!("more {i}").as_bytes());
    }
    snapshot(&mut world, 0, &mut states);
    world.run_until(world.now().saturating_add(Duration::from_secs(30)));
    snapshot(&mut world, 0, &mut states);
    snapshot(&mut world, 1, &mut states);
    world.command(0, |e, now, rng| e.close(rng, now, conv).unwrap());
    snapshot(&mut world, 0, &mut states);
    corpus::write("endpoint_state", &states);
}

#[test]
fn endpoint_state_corpus_replays() {
    if corpus::regenerate_requested() {
        generate();
    }
    let seeds = corpus::replay("endpoint_state", fuzzing::endpoint_state);
    for bytes in &seeds {
        // Mutations of valid states must not panic either.
        for cut in [0, 1, bytes.len() / 3, bytes.len().saturating_sub(1)] {
            fuzzing::endpoint_state(&bytes[..cut.min(bytes.len())]);
        }
        let mut flipped = bytes.clone();
        if let Some(b) = flipped.get_mut(bytes.len() / 2) {
            *b ^= 0x41;
        }
        fuzzing::endpoint_state(&flipped);
    }
    assert!(seeds.len() >= 5, "the corpus is present");
    assert!(
        seeds.iter().all(|s| imports(s)),
        "every seed in the corpus is a valid state"
    );
}
