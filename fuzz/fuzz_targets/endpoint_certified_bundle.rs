//! Fuzzes the certified bundle decoder (what a directory serves for first contact): arbitrary
//! bytes must never panic, and a bundle that parses must encode to exactly the same bytes.
#![no_main]

use confide::CertifiedBundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = CertifiedBundle::from_bytes(data) {
        assert_eq!(bundle.to_bytes(), data, "re-encoding differs");
    }
});
