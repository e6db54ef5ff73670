//! Fuzzes the endpoint state decoder: arbitrary bytes are sealed as an endpoint state blob
//! (so the storage AEAD passes) and imported. Must never panic; a state that imports must
//! export to exactly the same bytes.
#![no_main]

use chacha20::ChaCha20Rng;
use confide::{Endpoint, StorageKey};
use confide_session::storage::{StateKind, open, seal};
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let key = StorageKey::new([7; 32]);
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let blob = seal(&mut rng, &key, StateKind::Endpoint, data);
    if let Ok(mut endpoint) = Endpoint::import_state(&key, &blob) {
        let again = endpoint
            .export_state(&mut rng, &key)
            .expect("an imported state exports");
        let plain = open(&key, StateKind::Endpoint, &again).expect("own blob opens");
        assert_eq!(&plain[..], data, "re-encoding differs");
    }
});
