//! The endpoint's use of symmetric sealed-sender envelopes (`docs/sealed-sender.md` §9):
//! when it switches to them, that a restart goes back to a public-key envelope, and that a
//! replayed or altered symmetric envelope changes nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{World, connect, lossy, pair};
use confide::{DropReason, Input};
use confide_crypto::Duration;
use confide_sealed::SYMMETRIC_ENVELOPE_KIND;
use confide_transport::{Frame, FrameId};

fn settle(world: &mut World) {
    let until = world.now().saturating_add(Duration::from_secs(5));
    world.run_until(until);
}

/// The envelopes node `n` put on the wire from index `from` on: (is it symmetric, frame
/// length, frame id, envelope).
fn envelopes(world: &World, n: usize, from: usize) -> Vec<(bool, usize, FrameId, Vec<u8>)> {
    world.wire[n]
        .borrow()
        .iter()
        .skip(from)
        .filter_map(|(_, frame)| match Frame::from_bytes(frame).unwrap() {
            Frame::Data { id, payload } => Some((
                payload[0] == SYMMETRIC_ENVELOPE_KIND,
                frame.len(),
                id,
                payload,
            )),
            _ => None,
        })
        .collect()
}

/// The state's records without the drop counters (the counters record's last field).
fn state_without_counters(
    world: &mut World,
    n: usize,
) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let key = world.key.clone();
    let blob = world.command(n, |e, _, rng| {
        e.export_state(rng, &key, b"account").unwrap()
    });
    let plain = confide_session::storage::open(
        &key,
        confide_session::storage::StateKind::Endpoint,
        b"account",
        &blob,
    )
    .unwrap()
    .to_vec();
    let counters = 1 + 8 * (DropReason::ALL.len() + 2);
    let mut records = common::snapshot_records(&plain);
    let c = records.get_mut(common::COUNTERS_RECORD).unwrap();
    c.truncate(c.len() - counters);
    records
}

/// A client and a counselor that exchanged texts both ways, so each acknowledged the other's
/// first public-key envelope.
fn established(
    seed: u8,
) -> (
    World,
    confide_sealed::TrustRoots,
    confide::ConversationId,
    confide::ConversationId,
) {
    let (mut world, service) = pair(seed, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"hello");
    settle(&mut world);
    let counselor_conv = world.endpoint(1).conversations()[0];
    world.send(1, counselor_conv, b"I'm here.");
    settle(&mut world);
    (world, service.roots, conv, counselor_conv)
}

#[test]
fn an_established_conversation_switches_to_symmetric_envelopes_after_the_first_acknowledged_one() {
    let (mut world, roots, conv, counselor_conv) = established(81);
    let client = envelopes(&world, 0, 0);
    // The first text and everything until its acknowledgement arrived: public-key.
    assert!(!client[0].0, "the first envelope is public-key");
    let text = [b'x'; 100];
    let mark = (world.wire[0].borrow().len(), world.wire[1].borrow().len());
    world.send(0, conv, &text);
    settle(&mut world);
    let sent = envelopes(&world, 0, mark.0);
    let acks = envelopes(&world, 1, mark.1);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].0,
        "a text after the first acknowledged envelope is symmetric"
    );
    assert!(
        acks.iter().all(|a| a.0),
        "the counselor's acknowledgement too"
    );
    // The target for a 100-byte text, and what its acknowledgement costs now.
    assert!(sent[0].1 <= 400, "100 B text: {} bytes", sent[0].1);
    assert_eq!(sent[0].1, 377);
    // The text's session message ciphertext (256 padded bytes and a 16-byte tag) travels
    // without a second encryption, right after its length (docs/sealed-sender.md §9.3);
    // everything in front of it is sealed.
    let envelope = &sent[0].3;
    assert_eq!(&envelope[17..21], &272u32.to_be_bytes());
    let payload_len = envelope.len() - confide_sealed::SYMMETRIC_ENVELOPE_OVERHEAD;
    assert!(payload_len > 272, "the session header and kind are sealed");
    // The acknowledgement is not a session message: one frame id in a symmetric envelope,
    // all of it sealed.
    assert_eq!(acks[0].1, 79);
    assert_eq!(&acks[0].3[17..21], &0u32.to_be_bytes());
    assert_eq!(world.live[1].received.last().unwrap().1, text.to_vec());
    // Both directions, and the acknowledgements, keep going symmetric.
    world.send(1, counselor_conv, b"ok");
    settle(&mut world);
    assert!(envelopes(&world, 1, mark.1).iter().all(|e| e.0));
    assert_eq!(world.live[0].received.last().unwrap().1, b"ok".to_vec());
    world.assert_no_key_reuse(&roots);
}

#[test]
fn after_a_restart_the_first_envelope_is_public_key_again() {
    let (mut world, _, conv, _) = established(82);
    world.send(0, conv, b"symmetric");
    settle(&mut world);
    assert!(envelopes(&world, 0, 0).last().unwrap().0);
    // The client restarts from its store: its sender epoch is gone.
    world.crash(0);
    let mark = world.wire[0].borrow().len();
    world.send(0, conv, b"after the restart");
    settle(&mut world);
    let after: Vec<bool> = envelopes(&world, 0, mark).iter().map(|e| e.0).collect();
    assert!(
        after.iter().all(|s| !s),
        "public-key until acknowledged: {after:?}"
    );
    assert_eq!(
        world.live[1].received.last().unwrap().1,
        b"after the restart".to_vec()
    );
    // Once acknowledged, symmetric again.
    let mark = world.wire[0].borrow().len();
    world.send(0, conv, b"and now small again");
    settle(&mut world);
    assert!(envelopes(&world, 0, mark).iter().all(|e| e.0));
    assert_eq!(
        world.live[1].received.last().unwrap().1,
        b"and now small again".to_vec()
    );
}

#[test]
fn a_replayed_or_altered_symmetric_envelope_is_refused_and_changes_nothing() {
    let (mut world, _, conv, _) = established(83);
    world.send(0, conv, b"once");
    settle(&mut world);
    let (symmetric, _, id, envelope) = envelopes(&world, 0, 0).pop().unwrap();
    assert!(symmetric);
    let received = world.live[1].received.len();
    let before = state_without_counters(&mut world, 1);
    let refused_before = world
        .endpoint(1)
        .stats()
        .dropped(DropReason::EnvelopeRefused);
    let mut inputs = Vec::new();
    // The envelope again under a new frame id (the dedup window does not know it): its
    // tag was consumed.
    let mut other_id = *id.as_bytes();
    other_id[0] ^= 1;
    inputs.push(
        Frame::Data {
            id: FrameId::from_bytes(other_id),
            payload: envelope.clone(),
        }
        .to_bytes()
        .unwrap(),
    );
    // A fresh symmetric envelope with one bit flipped, in every part of it.
    world.send(0, conv, b"twice");
    let fresh = {
        let all = envelopes(&world, 0, 0);
        all.last().unwrap().clone()
    };
    assert!(fresh.0);
    for bit in [0, 8, 8 * 16, 8 * 17, 8 * (fresh.3.len() - 1) + 7] {
        let mut altered = fresh.3.clone();
        altered[bit / 8] ^= 1 << (bit % 8);
        inputs.push(
            Frame::Data {
                id: fresh.2,
                payload: altered,
            }
            .to_bytes()
            .unwrap(),
        );
    }
    for bytes in &inputs {
        world.command(1, |e, now, rng| {
            e.handle_input(rng, Input::Receive { bytes, now })
        });
    }
    assert_eq!(
        before,
        state_without_counters(&mut world, 1),
        "state unchanged"
    );
    assert_eq!(world.live[1].received.len(), received);
    assert!(
        world
            .endpoint(1)
            .stats()
            .dropped(DropReason::EnvelopeRefused)
            >= refused_before + inputs.len() as u64
    );
    // The genuine envelope still opens afterwards.
    settle(&mut world);
    assert_eq!(world.live[1].received.last().unwrap().1, b"twice".to_vec());
}

#[test]
fn an_acknowledgement_outside_the_session_opens_once_and_only_unaltered() {
    let (mut world, _, conv, _) = established(84);
    // The counselor's acknowledgement of a text is held back from the client: the client
    // still waits for it.
    world.send(0, conv, b"acknowledge me");
    let (_, _, text_id, _) = envelopes(&world, 0, 0).pop().unwrap();
    let mark = world.wire[1].borrow().len();
    // Everything from the counselor to the client is lost for a while.
    let client = world.endpoint(0).address().clone();
    let counselor = world.endpoint(1).address().clone();
    world
        .sim
        .network_mut()
        .set_link(&counselor, &client, lossy(100, 0, 0));
    world.run_until(world.now().saturating_add(Duration::from_millis(900)));
    let acks = envelopes(&world, 1, mark);
    let (symmetric, len, ack_id, ack) = acks.first().cloned().expect("the counselor acknowledged");
    assert!(symmetric && len == 79, "{acks:?}");
    assert_eq!(
        world.live[0].delivered, 1,
        "only the first text is confirmed so far"
    );

    let before = state_without_counters(&mut world, 0);
    let refused_before = world
        .endpoint(0)
        .stats()
        .dropped(DropReason::EnvelopeRefused);
    // Altered in its tag, its ciphertext and its authentication tag: refused, nothing changes,
    // the text is not taken for delivered.
    let mut altered_inputs = Vec::new();
    for bit in [8, 8 * 17, 8 * 20 + 3, 8 * (ack.len() - 1) + 7] {
        let mut altered = ack.clone();
        altered[bit / 8] ^= 1 << (bit % 8);
        altered_inputs.push(
            Frame::Data {
                id: ack_id,
                payload: altered,
            }
            .to_bytes()
            .unwrap(),
        );
    }
    for bytes in &altered_inputs {
        world.command(0, |e, now, rng| {
            e.handle_input(rng, Input::Receive { bytes, now })
        });
    }
    assert_eq!(
        before,
        state_without_counters(&mut world, 0),
        "state unchanged"
    );
    assert_eq!(
        world
            .endpoint(0)
            .stats()
            .dropped(DropReason::EnvelopeRefused),
        refused_before + altered_inputs.len() as u64
    );
    assert_eq!(world.live[0].delivered, 1);

    // The genuine one confirms the text.
    let genuine = Frame::Data {
        id: ack_id,
        payload: ack.clone(),
    }
    .to_bytes()
    .unwrap();
    world.command(0, |e, now, rng| {
        e.handle_input(
            rng,
            Input::Receive {
                bytes: &genuine,
                now,
            },
        )
    });
    assert_eq!(world.live[0].delivered, 2, "{text_id:?} delivered");
    // Replayed: as the same frame (a network duplicate) and under another frame id (its tag
    // was used): nothing changes.
    let before = state_without_counters(&mut world, 0);
    let mut other = *ack_id.as_bytes();
    other[15] ^= 0x80;
    let replay_elsewhere = Frame::Data {
        id: FrameId::from_bytes(other),
        payload: ack,
    }
    .to_bytes()
    .unwrap();
    for bytes in [&genuine, &replay_elsewhere] {
        world.command(0, |e, now, rng| {
            e.handle_input(rng, Input::Receive { bytes, now })
        });
    }
    assert_eq!(
        before,
        state_without_counters(&mut world, 0),
        "state unchanged"
    );
    assert_eq!(world.live[0].delivered, 2);
    settle(&mut world);
    assert_eq!(world.live[0].delivered, 2);
}

#[test]
fn an_acknowledgement_payload_in_a_public_key_envelope_is_refused() {
    // Only a symmetric envelope, keyed by an epoch the two parties share, may carry an
    // acknowledgement outside the session; in a public-key envelope the certified sender
    // would vouch for ids with no session behind them. The endpoint never sends one.
    let (mut world, service) = pair(85, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"hello");
    let (_, _, text_id, _) = envelopes(&world, 0, 0).pop().unwrap();
    let counselor_identity = world.identities[1].clone();
    let certificate = service.certificate(
        b"counselor-1",
        &counselor_identity,
        confide::Role::Counselor,
    );
    let payload = confide::AcknowledgementPayload::new(&[text_id])
        .unwrap()
        .to_bytes();
    let mut rng = <chacha20::ChaCha20Rng as rand_core::SeedableRng>::from_seed([85; 32]);
    let envelope = confide_sealed::seal(
        &mut rng,
        &counselor_identity,
        &certificate,
        &world.identities[0].public(),
        &payload,
    )
    .unwrap();
    let bytes = Frame::Data {
        id: FrameId::random(&mut rng),
        payload: envelope,
    }
    .to_bytes()
    .unwrap();
    let before = state_without_counters(&mut world, 0);
    let malformed = world
        .endpoint(0)
        .stats()
        .dropped(DropReason::MalformedPayload);
    world.command(0, |e, now, rng| {
        e.handle_input(rng, Input::Receive { bytes: &bytes, now })
    });
    assert_eq!(
        before,
        state_without_counters(&mut world, 0),
        "state unchanged"
    );
    assert_eq!(
        world
            .endpoint(0)
            .stats()
            .dropped(DropReason::MalformedPayload),
        malformed + 1
    );
    assert_eq!(
        world.live[0].delivered, 0,
        "the text is not taken for delivered"
    );
    settle(&mut world);
    assert_eq!(
        world.live[0].delivered, 1,
        "the genuine acknowledgement still does"
    );
}

/// Every whole frame node `n` put on the wire from index `from` on.
fn frames_from(world: &World, n: usize, from: usize) -> Vec<Vec<u8>> {
    world.wire[n]
        .borrow()
        .iter()
        .skip(from)
        .map(|(_, frame)| frame.clone())
        .collect()
}

/// Hands `frame` to node `to` directly (the simulated link between the two is cut).
fn deliver(world: &mut World, to: usize, frame: &[u8]) {
    world.command(to, |e, now, rng| {
        e.handle_input(rng, Input::Receive { bytes: frame, now })
    });
}

/// Hands node `to` everything node `from` put on the wire since `mark`, after letting its
/// acknowledgement timers run for five seconds (each frame `copies` times); returns the new
/// mark.
fn forward(world: &mut World, from: usize, to: usize, mark: usize, copies: usize) -> usize {
    // Five seconds pass even when nothing is due (the link is cut).
    let until = world.now().saturating_add(Duration::from_secs(5));
    world.run_until(until);
    let _ = world.sim.run_until(&mut world.rng, until, usize::MAX);
    world.handle_events();
    let frames = frames_from(world, from, mark);
    for frame in &frames {
        for _ in 0..copies {
            deliver(world, to, frame);
        }
    }
    mark + frames.len()
}

/// The whole frame of one of [`envelopes`]' entries.
fn data_frame(e: &(bool, usize, FrameId, Vec<u8>)) -> Vec<u8> {
    Frame::Data {
        id: e.2,
        payload: e.3.clone(),
    }
    .to_bytes()
    .unwrap()
}

#[test]
fn late_older_public_key_frames_end_the_senders_epoch_once_they_may_have_pushed_it_out() {
    let (mut world, roots, conv, _) = established(84);
    let max = confide_sealed::MAX_EPOCHS_PER_CONVERSATION;
    // The client restarts (its epochs are gone) and sends twenty texts while the link is
    // cut: twenty public-key envelopes, each starting an epoch.
    world.crash(0);
    let client = world.endpoint(0).address().clone();
    let counselor = world.endpoint(1).address().clone();
    world.sim.network_mut().cut(&client, &counselor);
    let mark = world.wire[0].borrow().len();
    for i in 0..20u8 {
        world.send(0, conv, &[b'a' + i]);
    }
    let burst = envelopes(&world, 0, mark);
    assert_eq!(burst.len(), 20);
    assert!(burst.iter().all(|e| !e.0), "all public-key");
    let mut back = world.wire[1].borrow().len();
    // One text from the client, handed to the counselor alone (not the retransmissions of
    // the burst): is it symmetric?
    let text = |world: &mut World, body: &[u8], back: &mut usize| {
        let mark = world.wire[0].borrow().len();
        world.send(0, conv, body);
        let sent = envelopes(world, 0, mark);
        assert_eq!(sent.len(), 1);
        deliver(world, 1, &data_frame(&sent[0]));
        assert_eq!(world.live[1].received.last().unwrap().1, body.to_vec());
        *back = forward(world, 1, 0, *back, 1);
        sent[0].0
    };
    let refused = |world: &World| {
        world
            .endpoint(1)
            .stats()
            .dropped(DropReason::EnvelopeRefused)
    };
    let refused_before = refused(&world);

    // The counselor handles the newest first and acknowledges it: the client makes that
    // epoch current.
    deliver(&mut world, 1, &data_frame(&burst[19]));
    back = forward(&mut world, 1, 0, back, 1);
    // Seven older frames arrive late; their acknowledgements reach the client. The window
    // of the current epoch is still held (eight windows), so the client keeps using it.
    for e in &burst[12..19] {
        deliver(&mut world, 1, &data_frame(e));
    }
    back = forward(&mut world, 1, 0, back, 1);
    assert!(
        text(&mut world, b"A", &mut back),
        "seven installs: still symmetric"
    );
    // That envelope made the window the counselor's last used. Two more late frames, each
    // arriving four times (the counselor acknowledges the copies again: only the first
    // acknowledgement of a frame counts), leave it in place.
    let mark = back;
    for e in &burst[10..12] {
        for _ in 0..4 {
            deliver(&mut world, 1, &data_frame(e));
            back = forward(&mut world, 1, 0, back, 1);
        }
    }
    assert!(
        back - mark >= 8,
        "each copy was acknowledged again ({} frames)",
        back - mark
    );
    assert!(
        text(&mut world, b"B", &mut back),
        "used since: still symmetric"
    );
    // Eight more late frames: the window may be gone now (it is: least recently used).
    for e in &burst[2..2 + max] {
        deliver(&mut world, 1, &data_frame(e));
    }
    forward(&mut world, 1, 0, back, 1);
    // So the client's next envelope is a public-key one, which the counselor opens.
    // (Had the client kept its epoch, the text would go symmetric and be refused as
    // `UnknownTag` until re-sealed.)
    assert!(
        !text(&mut world, b"after the burst", &mut back),
        "public-key, starting a new epoch"
    );
    assert_eq!(world.live[1].received.len(), 1 + 18 + 3);
    assert_eq!(refused(&world), refused_before, "nothing refused");
    // Once that is acknowledged, symmetric again; the link heals and everything settles.
    assert!(text(&mut world, b"small again", &mut back));
    world.sim.network_mut().heal(&client, &counselor);
    let until = world.now().saturating_add(Duration::from_secs(600));
    world.run_until(until);
    // The two frames of the burst never handed over arrive with their retransmissions.
    assert_eq!(world.live[1].received.len(), 1 + 20 + 4);
    assert_eq!(refused(&world), refused_before);
    world.assert_no_key_reuse(&roots);
}
