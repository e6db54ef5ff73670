//! Fuzz target `session_interaction`: A fixed seeded pair of parties; the bytes drive sends, deliveries, drops, duplicates, reordering, bit flips and save/restore. Asserts: no panic, every authentic message decrypts to its plaintext exactly once, duplicates are refused, a failed decrypt changes no state.
//!
//! The decode-and-check logic is shared with the corpus replay test
//! (crates/confide-session/tests/fuzz_corpus.rs) and lives in
//! crates/confide-session/tests/fuzz_logic/mod.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/confide-session/tests/fuzz_logic/mod.rs"]
mod fuzz_logic;

fuzz_target!(|data: &[u8]| fuzz_logic::interaction_input(data));
