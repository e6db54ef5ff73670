//! Fuzz target `store_transcript_row`: the message store's row decoder (a wrapped key and a
//! sealed body): no panic, and whatever opens is the fixture's own message in its own place.
//!
//! The check is `confide_test_support::fuzzing::store_transcript_row`; the corpus replay test of
//! its crate (`crates/confide-store/tests/fuzz_corpus.rs`) runs it over
//! `fuzz/corpus/store_transcript_row/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::store_transcript_row(data));
