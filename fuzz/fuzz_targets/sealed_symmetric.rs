//! Fuzz target `sealed_symmetric`: symmetric envelopes opened by a tag directory (first byte
//! even) and stored tag windows (first byte odd). Never panics; a window that decodes
//! re-encodes to the input; whatever opens carries `len - SYMMETRIC_ENVELOPE_OVERHEAD` bytes
//! and opens only once; a failure changes nothing.
//!
//! The logic is shared with the corpus replay test (crates/confide-sealed/tests/fuzz_corpus.rs)
//! and lives in crates/confide-sealed/tests/symmetric_fuzz_logic/mod.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/confide-sealed/tests/symmetric_fuzz_logic/mod.rs"]
mod symmetric_fuzz_logic;

fuzz_target!(|data: &[u8]| symmetric_fuzz_logic::symmetric_input(data));
