//! Deterministic samples of the transport's encodings, shared by the strict-decode tests, the
//! test vectors and the fuzz corpora.
#![allow(dead_code, unreachable_pub)]

use confide_crypto::Timestamp;
use confide_transport::{Address, Delivery, DeliveryEvent, FrameId, PayloadDigest};

/// Deterministic sample frames: (name, id, payload).
pub fn sample_frames() -> Vec<(&'static str, FrameId, Vec<u8>)> {
    vec![
        ("data-empty-payload", FrameId::from_bytes([0; 16]), vec![]),
        (
            "data-short-payload",
            FrameId::from_bytes(core::array::from_fn(|i| u8::try_from(i).unwrap())),
            b"opaque sealed envelope".to_vec(),
        ),
        (
            "data-300-byte-payload",
            FrameId::from_bytes([0xa5; 16]),
            (0..300u32)
                .map(|i| u8::try_from(i % 251).unwrap())
                .collect(),
        ),
    ]
}

/// A deterministic delivery machine that exercises every part of the state encoding:
/// outbox entries (one retransmitted), a queued outbox transmit, a queued unacknowledged
/// frame, unpolled events of both kinds, and dedup entries. Returns the machine and the
/// frames polled along the way.
pub fn sample_state(seed: u8) -> (Delivery, Vec<Vec<u8>>) {
    use chacha20::ChaCha20Rng;
    use confide_crypto::Duration;
    use rand_core::SeedableRng;

    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    let alice = Address::new(b"alice").unwrap();
    let bob = Address::new(b"bob-mailbox").unwrap();
    let mut d = Delivery::new();
    let mut frames = Vec::new();
    // Sent a week ago: gives up at the timeout below, leaving a DeliveryFailed event.
    let week_ago = t0.saturating_sub(confide_transport::consts::GIVE_UP_AFTER);
    let lost = d
        .send(
            &mut rng,
            week_ago.saturating_add(Duration::from_secs(1)),
            bob.clone(),
            b"lost".to_vec(),
        )
        .unwrap();
    let first = d
        .send(&mut rng, t0, bob.clone(), b"first".to_vec())
        .unwrap();
    let second = d
        .send(
            &mut rng,
            t0.saturating_add(Duration::from_secs(1)),
            alice.clone(),
            b"second".to_vec(),
        )
        .unwrap();
    while let Some(tx) = d.poll_transmit() {
        frames.push(tx.frame);
    }
    let _ = d.accept_incoming(
        FrameId::from_bytes([seed; 16]),
        alice.clone(),
        PayloadDigest::from_bytes([seed; 32]),
        t0,
    );
    let _ = d.accept_incoming(
        FrameId::from_bytes([seed ^ 0xff; 16]),
        bob.clone(),
        PayloadDigest::from_bytes([seed ^ 0xff; 32]),
        t0,
    );
    // The first message is retransmitted once and stays queued.
    d.handle_timeout(t0.saturating_add(Duration::from_millis(2_600)));
    let _ = d.on_ack(&alice, second);
    let _ = d
        .send(
            &mut rng,
            t0.saturating_add(Duration::from_secs(3)),
            bob.clone(),
            b"third".to_vec(),
        )
        .unwrap();
    let _ = d
        .send_unacknowledged(&mut rng, alice.clone(), b"ack".to_vec())
        .unwrap();
    let doomed = d.send(&mut rng, t0, alice, b"doomed".to_vec()).unwrap();
    let _ = d.cancel(doomed);
    assert!(d.is_waiting(first));
    let mut probe = d.clone();
    assert_eq!(
        probe.poll_event(),
        Some(DeliveryEvent::DeliveryFailed(lost))
    );
    assert_eq!(probe.poll_event(), Some(DeliveryEvent::Delivered(second)));
    (d, frames)
}
