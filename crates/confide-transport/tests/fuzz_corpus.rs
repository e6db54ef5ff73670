//! Replays the fuzz corpora of `transport_frame`, `transport_state` (and, with the `tcp`
//! feature, `transport_relay`) through the same checks
//! as the fuzz targets. With `CONFIDE_WRITE_CORPUS=1` it first (re)writes the seed corpora
//! from the deterministic samples.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;

use confide_crypto::Timestamp;
use confide_transport::{Delivery, Frame};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// FNV-1a, for stable file names only.
fn name_of(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn write_corpus(target: &str, inputs: &[Vec<u8>]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    for input in inputs {
        std::fs::write(dir.join(name_of(input)), input).unwrap();
    }
}

fn read_corpus(target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(corpus_dir(target)).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.push(std::fs::read(path).unwrap());
        }
    }
    out
}

fn maybe_write_corpora() {
    if std::env::var_os("CONFIDE_WRITE_CORPUS").is_none() {
        return;
    }
    let mut frames: Vec<Vec<u8>> = common::sample_frames()
        .into_iter()
        .map(|(_, id, payload)| Frame::Data { id, payload }.to_bytes().unwrap())
        .collect();
    let mut states = vec![Delivery::new().to_bytes()];
    for seed in 1..=4 {
        let (d, polled) = common::sample_state(seed);
        states.push(d.to_bytes());
        frames.extend(polled);
    }
    #[cfg(feature = "tcp")]
    {
        use confide_transport::Address;
        use confide_transport::tcp::RelayMessage;
        let mailbox = Address::new(b"counselor-mailbox").unwrap();
        let relay: Vec<Vec<u8>> = [
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
                frame: frames[1].clone(),
            },
            RelayMessage::SendTo {
                to: mailbox,
                token: Some(confide_transport::RelayToken::new([0x22; 16])),
                frame: frames[1].clone(),
            },
            RelayMessage::Deliver {
                frame: frames[2].clone(),
            },
        ]
        .iter()
        .map(|m| m.to_bytes().unwrap())
        .collect();
        write_corpus("transport_relay", &relay);
    }
    write_corpus("transport_frame", &frames);
    write_corpus("transport_state", &states);
}

#[cfg(feature = "tcp")]
#[test]
fn relay_corpus_replays() {
    use confide_transport::tcp::RelayMessage;
    maybe_write_corpora();
    let inputs = read_corpus("transport_relay");
    assert!(!inputs.is_empty());
    let mut decoded = 0;
    for input in &inputs {
        if let Ok(message) = RelayMessage::from_bytes(input) {
            assert_eq!(&message.to_bytes().unwrap(), input);
            decoded += 1;
        }
    }
    assert!(decoded > 0, "the seed corpus holds valid relay messages");
}

#[test]
fn frame_corpus_replays() {
    maybe_write_corpora();
    let inputs = read_corpus("transport_frame");
    assert!(!inputs.is_empty());
    let mut decoded = 0;
    for input in &inputs {
        if let Ok(frame) = Frame::from_bytes(input) {
            assert_eq!(&frame.to_bytes().unwrap(), input);
            decoded += 1;
        }
    }
    assert!(decoded > 0, "the seed corpus holds valid frames");
}

#[test]
fn state_corpus_replays() {
    maybe_write_corpora();
    let inputs = read_corpus("transport_state");
    assert!(!inputs.is_empty());
    let mut decoded = 0;
    for input in &inputs {
        if let Ok(mut d) = Delivery::from_bytes(input) {
            assert_eq!(&d.to_bytes(), input);
            let _ = d.poll_timeout();
            d.handle_timeout(Timestamp::from_millis(u64::MAX));
            while d.poll_transmit().is_some() {}
            while d.poll_event().is_some() {}
            assert_eq!(d.outbox_len(), 0);
            decoded += 1;
        }
    }
    assert!(decoded > 0, "the seed corpus holds valid states");
}
