//! Relay receipts (`docs/transport.md` §3.8, issue 10 item 3): a relay that confirms it
//! stored a frame stops the sender's retransmissions for `RELAY_RECEIPT_HOLD`, so a client
//! offline for a night downloads one copy of each frame instead of a retransmission flood,
//! while a relay that lies about a receipt only delays a message, never loses it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{World, connect, lossy, pair};
use confide::Input;
use confide_crypto::Duration;
use confide_transport::consts::RELAY_RECEIPT_HOLD;
use confide_transport::{Frame, FrameId};

/// Frames node `n` put on the wire from index `from` on, by frame id.
fn frame_ids(world: &World, n: usize, from: usize) -> Vec<FrameId> {
    world.wire[n]
        .borrow()
        .iter()
        .skip(from)
        .map(|(_, frame)| match Frame::from_bytes(frame).unwrap() {
            Frame::Data { id, .. } => id,
            _ => panic!("only data frames"),
        })
        .collect()
}

/// A client and a counselor with an established conversation; returns the world and the
/// counselor's conversation.
fn established(seed: u8) -> (World, confide::ConversationId) {
    let (mut world, _service) = pair(seed, lossy(0, 0, 0));
    let conv = connect(&mut world);
    world.send(0, conv, b"hello");
    let until = world.now().saturating_add(Duration::from_secs(10));
    world.run_until(until);
    let counselor_conv = world.endpoint(1).conversations()[0];
    (world, counselor_conv)
}

/// The counselor writes five texts while the client is offline for eight hours; returns how
/// many frames the counselor uploaded meanwhile and how many the client received.
fn night_offline(world: &mut World, counselor_conv: confide::ConversationId) -> (usize, usize) {
    let client = world.endpoint(0).address().clone();
    let start = world.now();
    let back = start.saturating_add(Duration::from_hours(8));
    world.sim.network_mut().take_offline(&client, start, back);
    let uploaded_before = world.wire[1].borrow().len();
    let received_before = world.live[0].received.len();
    for i in 0..5u8 {
        world.send(1, counselor_conv, &[b'a' + i; 40]);
    }
    world.run_until(back.saturating_sub(Duration::from_secs(1)));
    let uploaded = world.wire[1].borrow().len() - uploaded_before;
    // Without a relay the texts arrive with the next retransmission (at most an hour and a
    // quarter later); through the relay, when the client connects.
    world.run_until(back.saturating_add(Duration::from_secs(90 * 60)));
    let received = world.live[0].received.len() - received_before;
    (uploaded, received)
}

#[test]
fn an_offline_client_downloads_one_copy_of_each_frame_from_a_relay_with_receipts() {
    // Without a relay that confirms storage: the counselor retransmits all night.
    let (mut plain, conv) = established(91);
    let (uploaded_plain, received_plain) = night_offline(&mut plain, conv);
    assert_eq!(received_plain, 5);
    assert!(
        uploaded_plain >= 5 * 10,
        "without receipts each text is retransmitted through the night ({uploaded_plain} frames)"
    );

    // Through a store-and-forward relay that sends receipts.
    let (mut world, conv) = established(91);
    world.sim.network_mut().enable_relay();
    let stats_before = world.sim.network().stats();
    let (uploaded, received) = night_offline(&mut world, conv);
    assert_eq!(received, 5, "every text arrives when the client returns");
    assert_eq!(uploaded, 5, "one upload per text: no retransmission");
    let stats = world.sim.network().stats();
    assert_eq!(stats.relay_replaced - stats_before.relay_replaced, 0);
    // The counselor learned of every delivery, as without the relay.
    assert_eq!(world.endpoint(1).outbox_len(), 0, "every text acknowledged");
    assert_eq!(world.live[1].delivered, plain.live[1].delivered);
}

#[test]
fn a_relay_that_confirms_a_frame_it_lost_only_delays_it() {
    let (mut world, conv) = established(92);
    let client = world.endpoint(0).address().clone();
    let start = world.now();
    // The client is unreachable for an hour and no relay stores anything: the text is lost,
    // but a lying relay confirms it.
    world.sim.network_mut().take_offline(
        &client,
        start,
        start.saturating_add(Duration::from_hours(1)),
    );
    let mark = world.wire[1].borrow().len();
    world.send(1, conv, b"are you there?");
    let id = *frame_ids(&world, 1, mark).last().unwrap();
    world.command(1, |e, now, rng| {
        e.handle_input(rng, Input::RelayReceipt { id, now })
    });
    // No retransmission during the hold, although the text is unacknowledged.
    let hold_end = start.saturating_add(RELAY_RECEIPT_HOLD);
    world.run_until(hold_end.saturating_sub(Duration::from_secs(1)));
    assert_eq!(
        frame_ids(&world, 1, mark),
        vec![id],
        "held back during the receipt's hold"
    );
    assert_eq!(world.endpoint(1).outbox_len(), 1);
    // After it, the schedule resumes and the text arrives.
    world.run_until(hold_end.saturating_add(Duration::from_secs(60)));
    assert!(frame_ids(&world, 1, mark).len() >= 2);
    assert_eq!(
        world.live[0].received.last().unwrap().1,
        b"are you there?".to_vec()
    );
    assert_eq!(world.endpoint(1).outbox_len(), 0, "acknowledged at last");
}

#[test]
fn a_reconnect_releases_held_frames_and_stray_receipts_change_nothing() {
    let (mut world, conv) = established(93);
    let client = world.endpoint(0).address().clone();
    let start = world.now();
    world.sim.network_mut().take_offline(
        &client,
        start,
        start.saturating_add(Duration::from_secs(30 * 60)),
    );
    let mark = world.wire[1].borrow().len();
    world.send(1, conv, b"still there?");
    let id = *frame_ids(&world, 1, mark).last().unwrap();
    // A receipt for an id nothing waits on: ignored, nothing to persist.
    world.command(1, |e, now, rng| {
        e.confirm_persisted();
        e.handle_input(
            rng,
            Input::RelayReceipt {
                id: FrameId::from_bytes([0x42; 16]),
                now,
            },
        );
        assert!(!e.needs_persist());
    });
    world.command(1, |e, now, rng| {
        e.handle_input(rng, Input::RelayReceipt { id, now })
    });
    world.run_until(start.saturating_add(Duration::from_hours(1)));
    assert_eq!(frame_ids(&world, 1, mark).len(), 1, "held");
    // The transport reconnected to a relay that may have lost it: it goes out at once.
    // The clock stops at the last event; move it to the hour.
    let hour = start.saturating_add(Duration::from_hours(1));
    let _ = world.sim.run_until(&mut world.rng, hour, 1_000);
    assert_eq!(world.now(), hour);
    let reconnected_at = world.now();
    world.command(1, |e, now, rng| {
        e.handle_input(rng, Input::RelayReconnected { now })
    });
    world.run_until(reconnected_at.saturating_add(Duration::from_secs(1)));
    assert_eq!(
        frame_ids(&world, 1, mark),
        vec![id, id],
        "retransmitted at once"
    );
    world.run_until(reconnected_at.saturating_add(Duration::from_secs(10)));
    assert_eq!(
        world.live[0].received.last().unwrap().1,
        b"still there?".to_vec()
    );
}

#[test]
fn a_receipt_does_not_hold_a_symmetric_frame_whose_epoch_is_unproven() {
    // The client's "hello" was public-key and acknowledged: its epoch is current, but no
    // symmetric envelope of it was acknowledged yet (docs/sealed-sender.md §9.5, rule 3).
    let (mut world, _) = established(94);
    let counselor = world.endpoint(1).address().clone();
    let conv = world.endpoint(0).conversations()[0];
    let start = world.now();
    world.sim.network_mut().take_offline(
        &counselor,
        start,
        start.saturating_add(Duration::from_secs(60)),
    );
    let mark = world.wire[0].borrow().len();
    world.send(0, conv, b"first symmetric text");
    let (id, symmetric) = {
        let wire = world.wire[0].borrow();
        let (_, frame) = wire.last().unwrap();
        match Frame::from_bytes(frame).unwrap() {
            Frame::Data { id, payload } => {
                (id, payload[0] == confide_sealed::SYMMETRIC_ENVELOPE_KIND)
            }
            _ => panic!("only data frames"),
        }
    };
    assert!(symmetric, "sealed in the acknowledged epoch");
    world.command(0, |e, now, rng| {
        e.handle_input(rng, Input::RelayReceipt { id, now })
    });
    // Not held: it is retransmitted on the usual schedule (and re-encrypted after three
    // unanswered transmissions), so it arrives once the counselor is back.
    world.run_until(start.saturating_add(Duration::from_secs(30)));
    assert!(
        frame_ids(&world, 0, mark).len() >= 3,
        "retransmitted although the relay confirmed it"
    );
    world.run_until(start.saturating_add(Duration::from_secs(180)));
    assert_eq!(
        world.live[1].received.last().unwrap().1,
        b"first symmetric text".to_vec()
    );
}
