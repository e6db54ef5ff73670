//! Fuzzes the conversation policy state decoder: it must never panic, whatever it accepts must
//! re-encode to exactly the input, and a restored state must survive a timeout without panic.
#![no_main]

use confide_crypto::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut state) = confide_policy::ConversationPolicy::from_bytes(data) {
        let encoded = state
            .to_bytes()
            .expect("a restored state has no pending events");
        assert_eq!(&encoded[..], data, "decoding is not canonical");
        state.handle_timeout(Timestamp::MAX);
        while state.poll_event().is_some() {}
        let _ = state.poll_timeout();
    }
});
