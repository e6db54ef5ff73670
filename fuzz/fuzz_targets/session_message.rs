//! Fuzz target `session_message`: `SessionMessage::from_bytes`; a message that decodes re-encodes
//! to the same bytes.
//!
//! The check is `confide_test_support::fuzzing::session_message`; the corpus replay test of its
//! crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/session_message/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::session_message(data));
