//! Fuzz target `session_interaction`: a fixed seeded pair of parties driven by the bytes (sends,
//! deliveries, drops, duplicates, reordering, bit flips, save/restore): every authentic message
//! decrypts exactly once, duplicates are refused, a failed decrypt changes no state.
//!
//! The check is `confide_test_support::fuzzing::session_interaction`; the corpus replay test of its
//! crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/session_interaction/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::session_interaction(data));
