//! Known-answer vectors in `docs/test-vectors/transport/`: regenerated from fixed seeds and
//! compared byte for byte with the files (set `CONFIDE_REGENERATE_VECTORS=1` to rewrite them
//! after an intended format change). Also checks that the files' encodings decode.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;

use chacha20::ChaCha20Rng;
use confide_crypto::Timestamp;
use confide_transport::delivery::retransmit_wait;
use confide_transport::{Address, Delivery, Frame, MessageId};
use rand_core::SeedableRng;

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/test-vectors/transport")
        .join(name)
}

fn check_or_write(name: &str, generated: &str) {
    let path = vector_path(name);
    if std::env::var_os("CONFIDE_REGENERATE_VECTORS").is_some() {
        std::fs::write(&path, generated).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        stored, generated,
        "{name} no longer matches the code's output"
    );
}

/// `key = value` lines; returns the values of `key` in order.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.split_once(" = "))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

fn frames_text() -> String {
    let mut s = String::from(
        "# Confide transport frames, version 1 (docs/transport.md).\n\
         # Each case: id (16 bytes), payload, and the encoded frame, all hex.\n",
    );
    for (name, id, payload) in common::sample_frames() {
        let frame = Frame::Data {
            id,
            payload: payload.clone(),
        }
        .to_bytes()
        .unwrap();
        writeln!(s, "\nname = {name}").unwrap();
        writeln!(s, "id = {}", hex::encode(id.as_bytes())).unwrap();
        writeln!(s, "payload = {}", hex::encode(&payload)).unwrap();
        writeln!(s, "frame = {}", hex::encode(&frame)).unwrap();
    }
    s
}

fn delivery_text() -> String {
    let mut s = String::from(
        "# Confide delivery machine, state version 2 (docs/transport.md).\n\
         # retransmit_wait: waits in ms before retransmission number `attempt` of the given id\n\
         # (base 2000 * 2^(attempt-1) capped at 3600000, plus jitter from the id).\n",
    );
    for id in [
        [0x11u8; 16],
        core::array::from_fn(|i| u8::try_from(i * 17).unwrap()),
    ] {
        let id = MessageId::from_bytes(id);
        writeln!(s, "\nwait_id = {}", hex::encode(id.as_bytes())).unwrap();
        let waits: Vec<String> = (1..=14)
            .map(|a| retransmit_wait(&id, a).as_millis().to_string())
            .collect();
        writeln!(s, "waits_ms = {}", waits.join(",")).unwrap();
    }
    // One send with a fixed random source.
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let mut d = Delivery::new();
    let now = Timestamp::from_millis(1_700_000_000_000);
    let id = d
        .send(
            Address::new(b"bob-mailbox").unwrap(),
            b"hello".to_vec(),
            now,
            &mut rng,
        )
        .unwrap();
    let tx = d.poll_transmit().unwrap();
    s.push_str(
        "\n# ChaCha20Rng seed [7; 32]; send(\"bob-mailbox\", \"hello\", now = 1700000000000).\n",
    );
    writeln!(s, "send_id = {}", hex::encode(id.as_bytes())).unwrap();
    writeln!(s, "send_frame = {}", hex::encode(&tx.frame)).unwrap();
    writeln!(s, "send_state = {}", hex::encode(d.to_bytes())).unwrap();
    s.push_str(
        "\n# The sample state of tests/common/mod.rs (seed 7): outbox, queued transmits,\n\
         # unpolled events of both kinds, dedup entries.\n",
    );
    let (sample, _) = common::sample_state(7);
    writeln!(s, "sample_state = {}", hex::encode(sample.to_bytes())).unwrap();
    s
}

#[test]
fn frame_vectors_match() {
    let text = frames_text();
    check_or_write("frames.txt", &text);
    for (i, frame) in values(&text, "frame").into_iter().enumerate() {
        let bytes = hex::decode(frame).unwrap();
        let Frame::Data { id, payload } = Frame::from_bytes(&bytes).unwrap() else {
            unreachable!()
        };
        assert_eq!(hex::encode(id.as_bytes()), values(&text, "id")[i]);
        assert_eq!(hex::encode(payload), values(&text, "payload")[i]);
    }
}

#[test]
fn delivery_vectors_match() {
    let text = delivery_text();
    check_or_write("delivery.txt", &text);
    for key in ["send_state", "sample_state"] {
        let bytes = hex::decode(values(&text, key)[0]).unwrap();
        assert_eq!(Delivery::from_bytes(&bytes).unwrap().to_bytes(), bytes);
    }
}
