//! Fuzz target `transport_frame`: the strict transport frame decoder: no panic, canonical re-
//! encoding.
//!
//! The check is `confide_test_support::fuzzing::transport_frame`; the corpus replay test of its
//! crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/transport_frame/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::transport_frame(data));
