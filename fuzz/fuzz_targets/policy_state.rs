//! Fuzz target `policy_state`: the conversation policy state decoder: no panic, canonical re-
//! encoding, and a restored state survives a timeout.
//!
//! The check is `confide_test_support::fuzzing::policy_state`; the corpus replay test of its crate
//! (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/policy_state/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::policy_state(data));
