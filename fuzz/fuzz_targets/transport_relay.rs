//! Fuzzes the strict decoder of the example TCP relay protocol (confide-transport with the
//! `tcp` feature): no panic, and whatever decodes re-encodes to exactly the input.
#![no_main]

use confide_transport::tcp::RelayMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = RelayMessage::from_bytes(data) {
        let again = message.to_bytes().expect("a decoded message re-encodes");
        assert_eq!(again, data, "relay message encoding is canonical");
    }
});
