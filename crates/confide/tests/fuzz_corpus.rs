//! Replays the `endpoint_state` and `endpoint_certified_bundle` fuzz corpora through the same
//! code as the fuzz targets: no panic, and every input that decodes encodes to the same bytes.
//! With `CONFIDE_WRITE_CORPUS=1` it first (re)generates the seed corpora from simulated
//! sessions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::needless_range_loop
)]

mod common;

use std::path::PathBuf;

use chacha20::ChaCha20Rng;
use common::{connect, lossy, pair};
use confide::{Endpoint, StorageKey};
use confide_crypto::{Duration, kdf::sha256};
use confide_session::storage::{StateKind, open, seal};
use rand_core::SeedableRng;

fn corpus_dir() -> PathBuf {
    corpus("endpoint_state")
}

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// What the `endpoint_certified_bundle` target does with one input.
fn fuzz_certified_bundle(data: &[u8]) -> bool {
    match confide::CertifiedBundle::from_bytes(data) {
        Ok(bundle) => {
            assert_eq!(bundle.to_bytes(), data, "re-encoding differs");
            true
        }
        Err(_) => false,
    }
}

#[test]
fn certified_bundle_corpus_replays() {
    let dir = corpus("endpoint_certified_bundle");
    if std::env::var_os("CONFIDE_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        let (world, _service) = pair(42, lossy(0, 0, 0));
        let published = world.endpoint(1).published_bundles();
        for bytes in published
            .one_time
            .iter()
            .take(2)
            .chain([&published.last_resort])
        {
            let name = hex::encode(&sha256(&[bytes])[..10]);
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut decoded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if fuzz_certified_bundle(&bytes) {
            decoded += 1;
        }
        for cut in [0, 1, 3, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            assert!(!fuzz_certified_bundle(&bytes[..cut.min(bytes.len())]) || cut >= bytes.len());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            !fuzz_certified_bundle(&longer),
            "trailing bytes are refused"
        );
    }
    assert!(
        decoded >= 3,
        "the seed corpus holds valid certified bundles"
    );
}

/// What the fuzz target does with one input.
fn fuzz_one(data: &[u8]) -> bool {
    let key = StorageKey::new([7; 32]);
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let blob = seal(&mut rng, &key, StateKind::Endpoint, b"account", data);
    match Endpoint::import_state(&key, b"account", &blob) {
        Ok(mut endpoint) => {
            let again = endpoint.export_state(&mut rng, &key, b"account").unwrap();
            let plain = open(&key, StateKind::Endpoint, b"account", &again).unwrap();
            // A state holding an older prekey store (version 1) or session records of version 3
            // is read and written back as the current version: then the re-encoding, never
            // shorter, must be a fixed point. (Each record's own canonical form is checked
            // strictly by the session_state target.)
            if plain[..] == *data {
                // Canonical: nothing to upgrade.
            } else {
                assert!(
                    plain.len() >= data.len(),
                    "an upgrade never shrinks the state"
                );
                let blob = seal(&mut rng, &key, StateKind::Endpoint, b"account", &plain);
                let mut upgraded = Endpoint::import_state(&key, b"account", &blob).unwrap();
                let again = upgraded.export_state(&mut rng, &key, b"account").unwrap();
                let again = open(&key, StateKind::Endpoint, b"account", &again).unwrap();
                assert_eq!(&again[..], &plain[..], "upgraded re-encoding differs");
            }
            true
        }
        Err(_) => false,
    }
}

fn generate() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
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
    for s in states {
        let name = hex::encode(&sha256(&[&s])[..10]);
        std::fs::write(dir.join(name), s).unwrap();
    }
}

#[test]
fn endpoint_state_corpus_replays() {
    if std::env::var_os("CONFIDE_WRITE_CORPUS").is_some() {
        generate();
    }
    let mut decoded = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        if fuzz_one(&bytes) {
            decoded += 1;
        }
        // Mutations of valid states must not panic either.
        for cut in [0, 1, bytes.len() / 3, bytes.len().saturating_sub(1)] {
            let _ = fuzz_one(&bytes[..cut.min(bytes.len())]);
        }
        let mut flipped = bytes.clone();
        if let Some(b) = flipped.get_mut(bytes.len() / 2) {
            *b ^= 0x41;
        }
        let _ = fuzz_one(&flipped);
    }
    assert!(files >= 5, "the corpus is present");
    assert_eq!(decoded, files, "every seed in the corpus is a valid state");
}
