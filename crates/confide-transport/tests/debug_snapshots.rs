//! The exact `Debug` output of the transport's types that hold addresses, tokens or payloads,
//! pinned (the hand-written impls name every field, so a new one needs a decision).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use confide_transport::RelayToken;

#[test]
fn debug_of_secret_holding_types_is_pinned() {
    let (mut delivery, _) = common::sample_state(5);
    assert_eq!(
        format!("{delivery:?}"),
        "Delivery { outbox: 2, queued_transmits: 3, events: 2, dedup_entries: 2, stats: DeliveryStats { sent: 5, retransmitted: 1, delivered: 1, failed: 1, received: 2 }, .. }"
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
}
