//! Replays the `store_transcript_row` fuzz corpus through the fuzz target's check
//! (`confide_test_support::fuzzing::store_transcript_row`): no panic, and whatever opens is the
//! fixture's message. With `CONFIDE_REGENERATE_CORPUS=1` it first (re)generates the seeds:
//! rows sealed for the fixture with bodies of several lengths.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide::Party;
use confide_store::row::{open_row, seal_row};
use confide_test_support::{corpus, fuzzing};
use rand_core::SeedableRng;

const TARGET: &str = "store_transcript_row";

fn generate() {
    let (keys, header, id) = fuzzing::store_row_fixture();
    let mut rng = ChaCha20Rng::from_seed([0x46; 32]);
    let seeds: Vec<Vec<u8>> = [&b""[..], b"hi", b"I'd rather not use names.", &[0x41; 300]]
        .iter()
        .zip([Party::Us, Party::Peer, Party::Peer, Party::Us])
        .map(|(body, from)| {
            let row = seal_row(&mut rng, &keys, &header, &id, from, body).unwrap();
            [row.wrapped_key, row.sealed_body].concat()
        })
        .collect();
    corpus::write(TARGET, &seeds);
}

#[test]
fn store_transcript_row_corpus_replays() {
    if corpus::regenerate_requested() {
        generate();
    }
    let seeds = corpus::replay(TARGET, fuzzing::store_transcript_row);
    let (keys, header, _) = fuzzing::store_row_fixture();
    let split = confide_store::row::WRAPPED_KEY_LEN;
    assert!(seeds.len() >= 4, "the corpus is present");
    for seed in &seeds {
        let (wrapped, body) = seed.split_at(split);
        assert!(
            open_row(&keys, &header, wrapped, body).is_ok(),
            "every seed is a valid row"
        );
        // Truncations, extensions and flipped bytes are refused without a panic.
        for cut in [0, 1, split - 1, split, split + 1, seed.len() - 1] {
            fuzzing::store_transcript_row(&seed[..cut]);
            let (w, b) = seed[..cut].split_at(cut.min(split));
            assert!(open_row(&keys, &header, w, b).is_err());
        }
        let mut longer = seed.clone();
        longer.push(0);
        fuzzing::store_transcript_row(&longer);
        assert!(open_row(&keys, &header, wrapped, &longer[split..]).is_err());
        for at in [0, 1, split / 2, split, split + 1, seed.len() - 1] {
            let mut flipped = seed.clone();
            flipped[at] ^= 0x20;
            fuzzing::store_transcript_row(&flipped);
            let (w, b) = flipped.split_at(split);
            assert!(open_row(&keys, &header, w, b).is_err(), "flip at {at}");
        }
    }
}
