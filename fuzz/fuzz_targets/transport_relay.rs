//! Fuzz target `transport_relay`: the strict decoder of the examples' loopback TCP relay protocol
//! (`confide_examples::tcp`): no panic, canonical re-encoding.
//!
//! The check is `confide_test_support::fuzzing::transport_relay`; the corpus replay test of its
//! crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/transport_relay/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::transport_relay(data));
