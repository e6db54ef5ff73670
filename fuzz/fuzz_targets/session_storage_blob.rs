//! Fuzz target `session_storage_blob`: the decoders of encrypted state at rest (`CFDS` blobs of
//! version 2 and record blobs of version 3, spec.md section 11): no panic; a blob opens only for
//! its own slot and record; a sealed input opens to itself and, with one byte changed, not at all.
//!
//! The check is `confide_test_support::fuzzing::session_storage_blob`; the corpus replay
//! test of its crate (`tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/session_storage_blob/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::session_storage_blob(data));
