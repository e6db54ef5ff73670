//! Fuzz target `endpoint_certified_bundle`: the certified bundle decoder (what a directory serves
//! for first contact): no panic, canonical re-encoding.
//!
//! The check is `confide_test_support::fuzzing::endpoint_certified_bundle`; the corpus replay test
//! of its crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/endpoint_certified_bundle/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::endpoint_certified_bundle(data));
