//! Fuzz target `relay_request`: the strict decoders of the reference relay's protocol
//! (`confide_relay::protocol`): no panic, canonical re-encoding. It decodes every request
//! type, `RegisterPush` (`0x0B`, push url of at most `MAX_PUSH_URL_LEN` bytes) and the blob
//! requests (`PutBlob` `0x0C`, `BlobStatus` `0x0D`, `GetBlob` `0x0E`, `DeleteBlob` `0x0F`)
//! included, and every relay message (the blob replies `0x88..=0x8B` too); the seed corpus
//! holds one of each.
//!
//! The check is `confide_test_support::fuzzing::relay_request`; the corpus replay test of its
//! crate (`crates/confide-relay/tests/fuzz_corpus.rs`) runs it over `fuzz/corpus/relay_request/`
//! too.
#![no_main]

use confide_test_support::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::relay_request(data));
