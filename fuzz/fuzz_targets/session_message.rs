//! Fuzz target `session_message`: SessionMessage::from_bytes; a message that decodes re-encodes to the same bytes.
//!
//! The decode-and-check logic is shared with the corpus replay test
//! (crates/confide-session/tests/fuzz_corpus.rs) and lives in
//! crates/confide-session/tests/fuzz_logic/mod.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/confide-session/tests/fuzz_logic/mod.rs"]
mod fuzz_logic;

fuzz_target!(|data: &[u8]| fuzz_logic::message_input(data));
