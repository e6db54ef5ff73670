//! Fuzz target `endpoint_state`: the endpoint state import (the bytes sealed as a state blob): no
//! panic, and an imported state exports to the same bytes (or, after a prekey store upgrade, to a
//! fixed point).
//!
//! The check is `confide_test_support::fuzzing::endpoint_state`; the corpus replay test of its
//! crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/endpoint_state/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::endpoint_state(data));
