//! Fuzz target `session_state`: `SessionRecord` / `PreKeyStore` / `Session::from_bytes`, selected
//! by the first byte (mod 3): canonical re-encoding, then use without panic.
//!
//! The check is `confide_test_support::fuzzing::session_state`; the corpus replay test of its crate
//! (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/session_state/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::session_state(data));
