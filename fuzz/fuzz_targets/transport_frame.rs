//! Fuzzes the strict decoder of transport frames: no panic, and whatever decodes re-encodes
//! to exactly the input (one encoding per value).
#![no_main]

use confide_transport::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::from_bytes(data) {
        let again = frame.to_bytes().expect("a decoded frame re-encodes");
        assert_eq!(again, data, "frame encoding is canonical");
    }
});
