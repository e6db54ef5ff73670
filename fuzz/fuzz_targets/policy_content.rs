//! Fuzz target `policy_content`: the content frame decoder: no panic, and whatever it accepts re-
//! encodes to the input.
//!
//! The check is `confide_test_support::fuzzing::policy_content`; the corpus replay test of its
//! crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/policy_content/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::policy_content(data));
