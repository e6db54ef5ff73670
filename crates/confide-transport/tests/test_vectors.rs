//! Known-answer vectors in `docs/test-vectors/transport/`: regenerated from fixed seeds and
//! compared byte for byte with the files (set `CONFIDE_REGENERATE_VECTORS=1` to rewrite them
//! after an intended format change). Also checks that the files' encodings decode.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::fmt::Write as _;

use chacha20::ChaCha20Rng;
use confide_crypto::Duration;
use confide_crypto::Timestamp;
use confide_test_support::vectors;
use confide_transport::consts::{GIVE_UP_AFTER, MAX_PAYLOAD_LEN};
use confide_transport::delivery::retransmit_wait;
use confide_transport::{AckOutcome, Address, Delivery, Frame, FrameId, IncomingStatus};
use rand_core::SeedableRng;

fn check_or_write(name: &str, generated: &str) {
    vectors::check_text(&format!("transport/{name}"), generated);
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
         # RNG: ChaCha20Rng::from_seed(seed), the ChaCha20 keystream of the seed (spec.md section\n\
         # 13); Delivery::send draws 16 bytes (the id) per call.\n\
         # waits_ms: retransmit_wait(wait_id, a) for a = 1..14, in ms: the wait scheduled after\n\
         # the a-th transmission (base 2000 * 2^(a-1) capped at 3600000, plus J(id, a) mod\n\
         # (base / 4 + 1); docs/transport.md section 3.2 has J and a worked example).\n",
    );
    for id in [
        [0x11u8; 16],
        core::array::from_fn(|i| u8::try_from(i * 17).unwrap()),
    ] {
        let id = FrameId::from_bytes(id);
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
            &mut rng,
            now,
            Address::new(b"bob-mailbox").unwrap(),
            b"hello".to_vec(),
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
    counters_script(&mut s);
    s
}

/// docs/transport.md §3.3: when each counter moves. Appends `step` / `stats` lines and checks
/// the documented values as it goes.
fn counters_script(s: &mut String) {
    s.push_str(
        "\n# counters: a script (ChaCha20Rng seed [9; 32], t0 = 1700000000000 ms) and the five\n\
         # counters after each step: sent,retransmitted,delivered,failed,received.\n",
    );
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    let mut d = Delivery::new();
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    let at = |ms: u64| t0.saturating_add(Duration::from_millis(ms));
    let bob = Address::new(b"bob-mailbox").unwrap();
    let carol = Address::new(b"carol-mailbox").unwrap();
    let step = |s: &mut String, d: &Delivery, what: &str, expected: [u64; 5]| {
        let st = d.stats();
        let got = [
            st.sent,
            st.retransmitted,
            st.delivered,
            st.failed,
            st.received,
        ];
        assert_eq!(got, expected, "{what}");
        writeln!(s, "step = {what}").unwrap();
        let list: Vec<String> = got.iter().map(u64::to_string).collect();
        writeln!(s, "stats = {}", list.join(",")).unwrap();
    };
    let a = d.send(&mut rng, t0, bob.clone(), b"one".to_vec()).unwrap();
    let b = d.send(&mut rng, t0, bob.clone(), b"two".to_vec()).unwrap();
    step(
        s,
        &d,
        "a = send(bob, \"one\", t0); b = send(bob, \"two\", t0)",
        [2, 0, 0, 0, 0],
    );
    while d.poll_transmit().is_some() {}
    d.handle_timeout(at(10_000));
    step(
        s,
        &d,
        "poll_transmit() until None; handle_timeout(t0 + 10000): a and b due, both queued",
        [2, 2, 0, 0, 0],
    );
    d.handle_timeout(at(20_000));
    step(
        s,
        &d,
        "handle_timeout(t0 + 20000) without polling: both due again, attempts 3, but their \
         transmissions are still queued: not counted",
        [2, 2, 0, 0, 0],
    );
    while d.poll_transmit().is_some() {}
    d.handle_timeout(at(40_000));
    step(
        s,
        &d,
        "poll_transmit() until None; handle_timeout(t0 + 40000): both due, both queued",
        [2, 4, 0, 0, 0],
    );
    assert_eq!(d.on_ack(&carol, a), AckOutcome::PeerMismatch);
    step(s, &d, "on_ack(carol, a) = PeerMismatch", [2, 4, 0, 0, 0]);
    assert_eq!(d.on_ack(&bob, a), AckOutcome::Delivered);
    step(s, &d, "on_ack(bob, a) = Delivered", [2, 4, 1, 0, 0]);
    assert_eq!(d.on_ack(&bob, a), AckOutcome::UnknownId);
    step(s, &d, "on_ack(bob, a) again = UnknownId", [2, 4, 1, 0, 0]);
    while d.poll_transmit().is_some() {}
    assert!(d.replace_payload(b, b"two again".to_vec()).unwrap());
    step(
        s,
        &d,
        "poll_transmit() until None; replace_payload(b, \"two again\") queues b: not counted",
        [2, 4, 1, 0, 0],
    );
    let x = FrameId::from_bytes([0x77; 16]);
    let digest = confide_transport::PayloadDigest::from_bytes([0x88; 32]);
    assert_eq!(
        d.check_incoming(x, &digest, at(41_000)),
        IncomingStatus::New
    );
    assert_eq!(
        d.accept_incoming(x, carol.clone(), digest, at(41_000)),
        IncomingStatus::New
    );
    assert!(matches!(
        d.accept_incoming(x, carol.clone(), digest, at(41_001)),
        IncomingStatus::Duplicate { .. }
    ));
    step(
        s,
        &d,
        "check_incoming(77..77, digest 88..88, t0 + 41000); accept_incoming(77..77, carol, \
         88..88, t0 + 41000) = New; accept_incoming(77..77, carol, 88..88, t0 + 41001) = \
         Duplicate",
        [2, 4, 1, 0, 1],
    );
    d.send_unacknowledged(&mut rng, carol.clone(), b"ack".to_vec())
        .unwrap();
    let c = d
        .send(&mut rng, at(50_000), bob.clone(), b"three".to_vec())
        .unwrap();
    assert!(d.cancel(c));
    assert!(
        d.send(
            &mut rng,
            at(50_000),
            bob.clone(),
            vec![0; MAX_PAYLOAD_LEN + 1]
        )
        .is_err()
    );
    step(
        s,
        &d,
        "send_unacknowledged(carol, \"ack\"); c = send(bob, \"three\", t0 + 50000); cancel(c); \
         send(bob, 262145 zero bytes, t0 + 50000) refused",
        [3, 4, 1, 0, 1],
    );
    d.handle_timeout(t0.saturating_add(GIVE_UP_AFTER));
    step(
        s,
        &d,
        "handle_timeout(t0 + 604800000): b given up",
        [3, 4, 1, 1, 1],
    );
    writeln!(s, "counters_state = {}", hex::encode(d.to_bytes())).unwrap();
}

/// An implementation of docs/transport.md §3.2 written from the text, against the code.
fn documented_wait(id: &[u8; 16], a: u32) -> u64 {
    let first = u64::from_be_bytes(id[..8].try_into().unwrap());
    let second = u64::from_be_bytes(id[8..].try_into().unwrap());
    let x = first ^ second.rotate_left(29) ^ u64::from(a);
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let j = z ^ (z >> 31);
    let base = (2000u64 << (a - 1).min(40)).min(3_600_000);
    let spread = base * 25 / 100;
    base + j % (spread + 1)
}

#[test]
fn documented_jitter_matches_the_code() {
    use rand_core::Rng;
    let example: [u8; 16] = core::array::from_fn(|i| u8::try_from(i * 17).unwrap());
    assert_eq!(documented_wait(&example, 1), 2018);
    assert_eq!(documented_wait(&example, 12), 3_925_425);
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    for _ in 0..2000 {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        for a in 1..=60 {
            assert_eq!(
                retransmit_wait(&FrameId::from_bytes(id), a).as_millis(),
                documented_wait(&id, a),
                "{} {a}",
                hex::encode(id)
            );
        }
    }
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
