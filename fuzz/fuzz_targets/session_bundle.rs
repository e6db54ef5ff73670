//! Fuzz target `session_bundle`: `PreKeyBundle::from_bytes` (canonical re-encoding), then verify; a
//! verified bundle must start a session.
//!
//! The check is `confide_test_support::fuzzing::session_bundle`; the corpus replay test of its
//! crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/session_bundle/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::session_bundle(data));
