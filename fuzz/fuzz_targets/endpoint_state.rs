//! Fuzzes the endpoint state decoder: arbitrary bytes are sealed as an endpoint state blob
//! (so the storage AEAD passes) and imported. Must never panic; a state that imports must
//! export to exactly the same bytes (or, when its prekey store or session records have an older
//! version, which is upgraded on export, to bytes that are a fixed point).
#![no_main]

use chacha20::ChaCha20Rng;
use confide::{Endpoint, StorageKey};
use confide_session::storage::{StateKind, open, seal};
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let key = StorageKey::new([7; 32]);
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let blob = seal(&mut rng, &key, StateKind::Endpoint, b"account", data);
    if let Ok(mut endpoint) = Endpoint::import_state(&key, b"account", &blob) {
        let again = endpoint
            .export_state(&mut rng, &key, b"account")
            .expect("an imported state exports");
        let plain = open(&key, StateKind::Endpoint, b"account", &again).expect("own blob opens");
        // A state holding an older prekey store (version 1) or session records of version 3
        // is read and written back as the current version: then the re-encoding, never
        // shorter, must be a fixed point. (Each record's own canonical form is checked
        // strictly by the session_state target.)
        if plain[..] == *data {
            // Canonical: nothing to upgrade.
        } else {
            assert!(plain.len() >= data.len(), "an upgrade never shrinks the state");
            let blob = seal(&mut rng, &key, StateKind::Endpoint, b"account", &plain);
            let mut upgraded = Endpoint::import_state(&key, b"account", &blob).unwrap();
            let again = upgraded.export_state(&mut rng, &key, b"account").unwrap();
            let again = open(&key, StateKind::Endpoint, b"account", &again).unwrap();
            assert_eq!(&again[..], &plain[..], "upgraded re-encoding differs");
        }
    }
});
