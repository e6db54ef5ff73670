//! Fuzz target `attachment_pointer`: the strict attachment pointer decoder: no panic, canonical
//! re-encoding, no key in `Debug`.
//!
//! The check is `confide_test_support::fuzzing::attachment_pointer`; the corpus replay test
//! of its crate (`crates/confide-attachment/tests/fuzz_corpus.rs`) runs it over
//! `fuzz/corpus/attachment_pointer/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::attachment_pointer(data));
