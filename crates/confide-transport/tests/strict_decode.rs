//! Strict decoding: every single-bit flip, truncation and trailing byte of a frame and of the
//! saved state is handled without panic; whatever still decodes re-encodes to the same bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use confide_crypto::Timestamp;
use confide_crypto::codec::DecodeError;
use confide_transport::{Delivery, Frame};
use proptest::prelude::*;

fn frame_round_trip(bytes: &[u8]) -> bool {
    match Frame::from_bytes(bytes) {
        Ok(frame) => {
            assert_eq!(frame.to_bytes().unwrap(), bytes, "canonical");
            true
        }
        Err(_) => false,
    }
}

fn state_round_trip(bytes: &[u8]) -> bool {
    match Delivery::from_bytes(bytes) {
        Ok(mut d) => {
            assert_eq!(d.to_bytes(), bytes, "canonical");
            // A decoded state is a working machine.
            d.handle_timeout(Timestamp::from_millis(u64::MAX));
            while d.poll_transmit().is_some() {}
            while d.poll_event().is_some() {}
            true
        }
        Err(_) => false,
    }
}

fn mutations(bytes: &[u8], decodes: impl Fn(&[u8]) -> bool) {
    assert!(decodes(bytes));
    for bit in 0..bytes.len() * 8 {
        let mut m = bytes.to_vec();
        m[bit / 8] ^= 1 << (bit % 8);
        let _ = decodes(&m);
    }
    for cut in 0..bytes.len() {
        assert!(!decodes(&bytes[..cut]), "truncation to {cut} refused");
    }
    for extra in [0u8, 1, 0xff] {
        let mut m = bytes.to_vec();
        m.push(extra);
        assert!(!decodes(&m), "trailing byte refused");
    }
}

#[test]
fn frames_survive_every_mutation() {
    for (_, id, payload) in common::sample_frames() {
        let bytes = Frame::Data { id, payload }.to_bytes().unwrap();
        mutations(&bytes, frame_round_trip);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Frame::from_bytes(&trailing),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
    }
}

#[test]
fn states_survive_every_mutation() {
    for seed in [1u8, 2] {
        let (d, _) = common::sample_state(seed);
        let bytes = d.to_bytes();
        mutations(&bytes, state_round_trip);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Delivery::from_bytes(&trailing),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
    }
    mutations(&Delivery::new().to_bytes(), state_round_trip);
}

#[test]
fn state_invariants_are_checked() {
    let (d, _) = common::sample_state(3);
    let bytes = d.to_bytes();
    // Version.
    for other in [1u8, 2, 4] {
        let mut v = bytes.clone();
        v[0] = other;
        assert!(
            matches!(
                Delivery::from_bytes(&v),
                Err(DecodeError::UnknownVersion { found, .. }) if found == other
            ),
            "version {other} is refused"
        );
    }
    // A re-acknowledgement count above the budget (the core's last field: version, next_seq,
    // five counters, next_seen_order, reack_window_start, then the count at 65..69).
    let mut c = bytes.clone();
    c[65..69].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        Delivery::from_bytes(&c),
        Err(DecodeError::InvalidValue { .. })
    ));
    // next_seq lowered below the outbox's sequence numbers.
    let mut s = bytes.clone();
    s[1..9].copy_from_slice(&0u64.to_be_bytes());
    assert!(matches!(
        Delivery::from_bytes(&s),
        Err(DecodeError::InvalidValue {
            field: "outbox seq"
        })
    ));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = frame_round_trip(&bytes);
        let _ = state_round_trip(&bytes);
    }

    #[test]
    fn frames_round_trip(id in any::<[u8; 16]>(), payload in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        let frame = Frame::Data { id: confide_transport::FrameId::from_bytes(id), payload };
        let bytes = frame.to_bytes().unwrap();
        prop_assert_eq!(Frame::from_bytes(&bytes).unwrap(), frame);
    }
}
