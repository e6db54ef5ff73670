//! Fuzz target `transport_state`: the saved delivery state decoder: no panic, canonical re-
//! encoding, and a decoded state runs to the end of time.
//!
//! The check is `confide_test_support::fuzzing::transport_state`; the corpus replay test of its
//! crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/transport_state/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::transport_state(data));
