//! Fuzzes the content frame decoder: it must never panic, and whatever it accepts must
//! re-encode to exactly the input (one encoding per value).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = confide_policy::ContentFrame::decode(data) {
        let encoded = frame.encode().expect("a decoded frame re-encodes");
        assert_eq!(encoded, data, "decoding is not canonical");
    }
});
