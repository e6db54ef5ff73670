//! Fuzzes the strict decoder of the saved delivery state: no panic, whatever decodes
//! re-encodes to exactly the input, and a decoded state runs (timeouts, polling) without
//! panicking.
#![no_main]

use confide_crypto::Timestamp;
use confide_transport::Delivery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut delivery) = Delivery::from_bytes(data) {
        assert_eq!(delivery.to_bytes(), data, "state encoding is canonical");
        let _ = delivery.poll_timeout();
        delivery.handle_timeout(Timestamp::from_millis(u64::MAX));
        while delivery.poll_transmit().is_some() {}
        while delivery.poll_event().is_some() {}
        assert_eq!(
            delivery.outbox_len(),
            0,
            "everything gives up at the end of time"
        );
    }
});
