//! The exact `Debug` output of the policy layer's secret-holding types, pinned (the
//! hand-written impls name every field, so a new one needs a decision).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use confide_crypto::Timestamp;
use confide_policy::{
    ConversationPolicy, MessageId, MessageText, OrgBounds, RetentionPolicy, Side,
};

#[test]
fn debug_of_secret_holding_types_is_pinned() {
    let mut policy = ConversationPolicy::new(
        Side::Initiator,
        OrgBounds::UNRESTRICTED,
        RetentionPolicy::Off,
    );
    let frame = policy
        .send_text(
            MessageId::from_bytes([0xab; 16]),
            b"a private disclosure",
            Timestamp::from_millis(1_750_000_000_000),
        )
        .unwrap();
    assert_eq!(
        format!("{frame:?}"),
        "OutgoingFrame { id: MessageId(abababab..), len: 60, .. }"
    );
    assert_eq!(
        format!("{:?}", MessageText::new(b"a private disclosure".to_vec())),
        "MessageText(20 bytes, [REDACTED])"
    );
}
