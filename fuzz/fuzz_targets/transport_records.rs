//! Fuzz target `transport_records`: the delivery machine's record decoder (incremental
//! persistence): no panic, canonical records, agreement with the whole-machine snapshot.
//!
//! The check is `confide_test_support::fuzzing::transport_records`; the corpus replay test of
//! its crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/transport_records/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::transport_records(data));
