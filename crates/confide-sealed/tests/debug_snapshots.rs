//! The exact `Debug` output of the sealed-sender types that hold keys, tokens or identify a
//! person, pinned (the hand-written impls name every field, so a new one needs a decision).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide_sealed::{DeliveryToken, ProfileKey, Role, SealedEnvelope, open, seal};
use confide_test_support::sealed_fixture::*;
use rand_core::SeedableRng;

#[test]
fn debug_of_secret_holding_types_is_pinned() {
    let mut rng = ChaCha20Rng::from_seed([0x33; 32]);
    assert_eq!(
        format!("{:?}", server_key()),
        "ServerKey { certificate: ServerCertificate { root_key_id: 1, server_key_id: 100, expires_at: Timestamp(1757776000000), .. }, .. }"
    );
    assert_eq!(
        format!(
            "{:?}",
            claims(&sender().public(), Role::Counselor, Some(SENDER_NAME))
        ),
        "SenderClaims { role: Counselor, .. }"
    );
    let cert = sender_certificate();
    assert_eq!(
        format!("{cert:?}"),
        "SenderCertificate { role: Counselor, expires_at: Timestamp(1750086400000), server_certificate: ServerCertificate { root_key_id: 1, server_key_id: 100, expires_at: Timestamp(1757776000000), .. }, .. }"
    );
    let bytes = seal(&mut rng, &sender(), &cert, &recipient().public(), b"secret").unwrap();
    assert_eq!(
        format!("{:?}", SealedEnvelope::from_bytes(&bytes).unwrap()),
        "SealedEnvelope { payload_len: 6, .. }"
    );
    let opened = open(&recipient(), &roots(), NOW, &bytes).unwrap();
    assert_eq!(
        format!("{opened:?}"),
        "Opened { sender: ValidatedSender { role: Counselor, .. }, payload_len: 6 }"
    );
    assert_eq!(
        format!("{:?}", opened.sender),
        "ValidatedSender { role: Counselor, .. }"
    );
    let profile = ProfileKey::new([0x11; 32]);
    let token = DeliveryToken::derive(&profile).unwrap();
    assert_eq!(format!("{profile:?}"), "ProfileKey([REDACTED])");
    assert_eq!(format!("{token:?}"), "DeliveryToken([REDACTED])");
    assert_eq!(format!("{:?}", token.verifier()), "TokenVerifier(..)");
}
