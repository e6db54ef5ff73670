//! Fuzz target `session_bundle`: PreKeyBundle::from_bytes (canonical re-encoding), then verify; a verified bundle must start a session.
//!
//! The decode-and-check logic is shared with the corpus replay test
//! (crates/confide-session/tests/fuzz_corpus.rs) and lives in
//! crates/confide-session/tests/fuzz_logic/mod.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/confide-session/tests/fuzz_logic/mod.rs"]
mod fuzz_logic;

fuzz_target!(|data: &[u8]| fuzz_logic::bundle_input(data));
