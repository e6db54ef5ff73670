//! Fuzz target `sealed_symmetric`: symmetric envelopes opened by a tag directory and stored tag
//! windows: no panic, canonical windows, each envelope opens once, failure changes nothing.
//!
//! The check is `confide_test_support::fuzzing::sealed_symmetric`; the corpus replay test of
//! its crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/sealed_symmetric/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::sealed_symmetric(data));
