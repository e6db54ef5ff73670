//! The exact `Debug` output of the transport's types that hold addresses, tokens or payloads,
//! pinned (the hand-written impls name every field, so a new one needs a decision).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use confide_transport::RelayToken;
use confide_transport::driver::Input;

#[test]
fn debug_of_secret_holding_types_is_pinned() {
    let (mut delivery, _) = common::sample_state(5);
    assert_eq!(
        format!("{delivery:?}"),
        "Delivery { outbox: 2, relay_held: 0, queued_transmits: 3, events: 2, dedup_entries: 2, stats: DeliveryStats { sent: 5, retransmitted: 1, delivered: 1, failed: 1, received: 2 }, .. }"
    );
    let tx = delivery.poll_transmit().unwrap();
    assert_eq!(
        format!("{tx:?}"),
        "Transmit { to: Address(<redacted, 11 bytes>), frame_len: 27, has_token: false }"
    );
    assert_eq!(
        format!("{:?}", RelayToken::new([0x5a; 16])),
        "RelayToken([REDACTED])"
    );
    // A receipt's frame id could link a log line to the relay's records.
    let receipt = Input::RelayReceipt {
        id: confide_transport::FrameId::from_bytes([7; 16]),
        now: confide_crypto::Timestamp::from_millis(5),
    };
    assert_eq!(
        format!("{receipt:?}"),
        "RelayReceipt { now: Timestamp(5), .. }"
    );
}
