//! Replays the `transport_relay` fuzz corpus (the loopback relay protocol of
//! `confide_examples::tcp`) through the fuzz target's check
//! (`confide_test_support::fuzzing::transport_relay`). With `CONFIDE_REGENERATE_CORPUS=1` it
//! first (re)writes the seed corpus.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use confide_examples::tcp::RelayMessage;
use confide_test_support::{corpus, fuzzing};
use confide_transport::{Address, Frame, FrameId, RelayToken};

fn seeds() -> Vec<Vec<u8>> {
    let mailbox = Address::new(b"counselor-mailbox").unwrap();
    let frame = |n: u8, payload: &[u8]| {
        Frame::Data {
            id: FrameId::from_bytes([n; 16]),
            payload: payload.to_vec(),
        }
        .to_bytes()
        .unwrap()
    };
    [
        RelayMessage::Register {
            mailbox: mailbox.clone(),
            verifier: None,
        },
        RelayMessage::Register {
            mailbox: mailbox.clone(),
            verifier: Some([0x11; 32]),
        },
        RelayMessage::SendTo {
            to: mailbox.clone(),
            token: None,
            frame: frame(1, b"opaque sealed envelope"),
        },
        RelayMessage::SendTo {
            to: mailbox,
            token: Some(RelayToken::new([0x22; 16])),
            frame: frame(1, b"opaque sealed envelope"),
        },
        RelayMessage::Deliver {
            frame: frame(2, &[0xa5; 300]),
        },
    ]
    .iter()
    .map(|m| m.to_bytes().unwrap())
    .collect()
}

#[test]
fn relay_corpus_replays() {
    if corpus::regenerate_requested() {
        corpus::write("transport_relay", &seeds());
    }
    let inputs = corpus::replay("transport_relay", fuzzing::transport_relay);
    assert!(
        inputs.iter().any(|i| RelayMessage::from_bytes(i).is_ok()),
        "the seed corpus holds valid relay messages"
    );
}

#[test]
fn seeds_decode_and_reencode() {
    for seed in seeds() {
        assert_eq!(
            RelayMessage::from_bytes(&seed).unwrap().to_bytes().unwrap(),
            seed
        );
    }
}
