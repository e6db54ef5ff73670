//! Fuzz target `sealed_sender_certificate`: the strict sender-certificate decoder: no panic,
//! canonical re-encoding, validation never panics.
//!
//! The check is `confide_test_support::fuzzing::sealed_sender_certificate`; the corpus replay test
//! of its crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/sealed_sender_certificate/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::sealed_sender_certificate(data));
