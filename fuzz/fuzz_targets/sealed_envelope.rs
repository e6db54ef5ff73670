//! Fuzz target `sealed_envelope`: sealed-envelope decoding and opening (for the fixed recipient of
//! the sealed fixture): no panic, canonical re-encoding, and an opened payload of exactly `len -
//! ENVELOPE_OVERHEAD` bytes.
//!
//! The check is `confide_test_support::fuzzing::sealed_envelope`; the corpus replay test of its
//! crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/sealed_envelope/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::sealed_envelope(data));
