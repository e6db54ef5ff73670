//! What the relay sees of a conversation's start: the frame sizes that `docs/threat-model.md`
//! states (prekey-form vs ratchet-form short texts), read from the document and checked
//! against the frames the endpoints really put on the wire.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{T0, connect, lossy, pair};
use confide_crypto::Duration;
use confide_session::SessionMessage;
use confide_transport::Frame;

const THREAT_MODEL: &str = include_str!("../../../docs/threat-model.md");

/// The number in the row of the wire-size table whose first cell is `row`.
fn documented(row: &str) -> usize {
    let line = THREAT_MODEL
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("| {row} |")))
        .unwrap_or_else(|| panic!("docs/threat-model.md has no row `{row}`"));
    let cell = line.split('|').nth(2).unwrap().trim().replace(',', "");
    cell.parse()
        .unwrap_or_else(|_| panic!("row `{row}`: `{cell}` is not a number"))
}

#[test]
fn frame_sizes_on_the_wire_are_the_documented_buckets() {
    let (mut world, service) = pair(71, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"hello, is anyone there?");
    world.send(0, conv, b"second message, still no answer");
    world.run_until(world.now().saturating_add(Duration::from_secs(5)));
    let counselor_conv = world.endpoint(1).conversations()[0];
    world.send(1, counselor_conv, b"I'm here.");
    world.run_until(world.now().saturating_add(Duration::from_secs(5)));
    world.send(0, conv, b"thank you");
    world.send(0, conv, &[b'x'; 200]);
    world.run_until(world.now().saturating_add(Duration::from_secs(5)));

    let (mut prekey, mut ratchet, mut symmetric) = (Vec::new(), Vec::new(), Vec::new());
    for (sender, recipient) in [(0usize, 1usize), (1, 0)] {
        for (_, frame) in world.wire[sender].borrow().iter() {
            let Frame::Data { payload, .. } = Frame::from_bytes(frame).unwrap() else {
                continue;
            };
            if payload[0] == confide_sealed::SYMMETRIC_ENVELOPE_KIND {
                symmetric.push(frame.len());
                continue;
            }
            let opened = confide_sealed::open_with_grace(
                &world.identities[recipient],
                &service.roots,
                T0,
                Duration::from_days(365),
                &payload,
            )
            .unwrap();
            // Until the peer confirmed the sender's delivery token, it rides in front of the
            // session message (docs/endpoint.md, Delivery tokens).
            let token = opened.payload.get(1) == Some(&confide::consts::KIND_TOKEN_AND_SESSION);
            match SessionMessage::from_bytes(common::session_bytes(&opened.payload)) {
                Ok(SessionMessage::PreKey(_)) => prekey.push((frame.len(), token)),
                Ok(SessionMessage::Ratchet(_)) => ratchet.push((frame.len(), token)),
                _ => {}
            }
        }
    }
    // The client's texts before the first reply travel in prekey form (it had a one-time
    // prekey bundle); everything after, in both directions, in ratchet form. Acknowledgements
    // are session messages too and fall in the same bucket as short texts. Public-key
    // envelopes last until the sender's first one was acknowledged.
    assert!(prekey.len() >= 2, "{prekey:?}");
    assert!(ratchet.len() >= 3, "{ratchet:?}");
    let prekey_len = documented("prekey form, short text, one-time prekey");
    let ratchet_len = documented("ratchet form, short text");
    let token_len = documented("delivery token in front, until the peer confirmed it");
    let with_token = |base: usize, token: bool| base + if token { token_len } else { 0 };
    assert!(
        prekey.iter().all(|&(l, t)| l == with_token(prekey_len, t)),
        "{prekey:?}"
    );
    assert!(
        ratchet
            .iter()
            .all(|&(l, t)| l == with_token(ratchet_len, t)),
        "{ratchet:?}"
    );
    // Once the peer confirmed the token (by acknowledging a frame carrying it, the same
    // acknowledgement that makes the sender's epoch current), frames go symmetric below.
    assert!(
        prekey.iter().all(|&(_, t)| t),
        "first contact carries the token"
    );
    // Once a public-key envelope was acknowledged, the sender switches to symmetric
    // envelopes (docs/sealed-sender.md §9): the same session message, 636 bytes less.
    assert!(!symmetric.is_empty(), "{symmetric:?}");
    let symmetric_len = documented("ratchet form, short text, symmetric envelope");
    // Acknowledgements in symmetric envelopes are not session messages (one id each here:
    // every frame is acknowledged at once).
    let ack_len = documented("acknowledgement of one frame, symmetric envelope");
    assert!(
        symmetric
            .iter()
            .all(|&l| l == symmetric_len || l == ack_len),
        "{symmetric:?}"
    );
    assert!(symmetric.contains(&symmetric_len), "{symmetric:?}");
    assert!(symmetric.contains(&ack_len), "{symmetric:?}");
    assert_eq!(
        ack_len,
        22 + confide_sealed::SYMMETRIC_ENVELOPE_OVERHEAD
            + confide::AcknowledgementPayload::new(&[confide_transport::FrameId::from_bytes(
                [0; 16]
            )])
            .unwrap()
            .to_bytes()
            .len()
    );
    assert_eq!(
        ratchet_len - symmetric_len,
        confide_sealed::ENVELOPE_OVERHEAD - confide_sealed::SYMMETRIC_ENVELOPE_OVERHEAD
    );
    // The difference the relay can see, as documented.
    assert_eq!(
        prekey_len - ratchet_len,
        documented("difference (prekey header)")
    );
    // A prekey message without a one-time prekey is 4 bytes shorter (no one-time id).
    assert_eq!(
        documented("prekey form, short text, no one-time prekey"),
        prekey_len - 4
    );
}

const README: &str = include_str!("../../../README.md");

/// The Confide column of the README's wire-size row whose first cell is `row`.
fn readme_bytes(row: &str) -> usize {
    let line = README
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("| {row} |")))
        .unwrap_or_else(|| panic!("README.md has no wire-size row `{row}`"));
    let cell = line.split('|').nth(2).unwrap().trim().replace(',', "");
    cell.parse()
        .unwrap_or_else(|_| panic!("row `{row}`: `{cell}` is not a number"))
}

#[test]
fn texts_and_acknowledgements_in_an_established_conversation_cost_what_the_readme_says() {
    let (mut world, _service) = pair(72, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, &[b'x'; 100]);
    let first_contact = world.wire[0].borrow()[0].1.len();
    assert_eq!(first_contact, readme_bytes("first contact, 100 B text"));
    world.run_until(world.now().saturating_add(Duration::from_secs(5)));
    let counselor_conv = world.endpoint(1).conversations()[0];
    world.send(1, counselor_conv, b"I'm here.");
    world.run_until(world.now().saturating_add(Duration::from_secs(5)));
    // Both sides now seal symmetrically and both delivery tokens are confirmed.
    for (row, len) in [("20 B text", 20), ("100 B text", 100), ("1 KiB text", 1024)] {
        let marks = (world.wire[0].borrow().len(), world.wire[1].borrow().len());
        world.send(0, conv, &vec![b'x'; len]);
        world.run_until(world.now().saturating_add(Duration::from_secs(5)));
        let sent: Vec<usize> = world.wire[0].borrow()[marks.0..]
            .iter()
            .map(|(_, f)| f.len())
            .collect();
        let acks: Vec<usize> = world.wire[1].borrow()[marks.1..]
            .iter()
            .map(|(_, f)| f.len())
            .collect();
        assert_eq!(sent.len(), 1, "{row}: one frame, no retransmission");
        assert_eq!(acks.len(), 1, "{row}: one acknowledgement");
        assert_eq!(sent[0], readme_bytes(row), "{row}");
        assert_eq!(acks[0], readme_bytes("its acknowledgement"), "ack of {row}");
    }
    assert!(
        readme_bytes("100 B text") <= 400,
        "the issue's target for a 100 B text"
    );
    assert!(
        readme_bytes("its acknowledgement") <= 150,
        "the issue's target for a standalone acknowledgement"
    );
}
