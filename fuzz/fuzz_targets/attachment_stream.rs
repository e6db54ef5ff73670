//! Fuzz target `attachment_stream`: the attachment stream decryptor under a fixture key, fed in
//! pieces: no panic, plaintext only from verified chunks, refusing after a failure, one
//! encoding per attachment.
//!
//! The check is `confide_test_support::fuzzing::attachment_stream`; the corpus replay test
//! of its crate (`crates/confide-attachment/tests/fuzz_corpus.rs`) runs it over
//! `fuzz/corpus/attachment_stream/` too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::attachment_stream(data));
