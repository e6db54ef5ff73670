//! Fuzz target `endpoint_ack_payload`: the decoder of an acknowledgement sealed outside the
//! session (`docs/endpoint.md`, "Acknowledgements"): no panic, canonical re-encoding.
//!
//! The check is `confide_test_support::fuzzing::endpoint_ack_payload`; the corpus replay test
//! of its crate (`crates/confide/tests/fuzz_corpus.rs`) runs it over
//! `fuzz/corpus/endpoint_ack_payload/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::endpoint_ack_payload(data));
