//! End-to-end tests of the endpoint over the simulated network.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::needless_range_loop
)]

use crate::common;

use common::{Service, T0, assert_exactly_once, exchange, lossy, pair};
use confide_crypto::Duration;

/// Messages each way in the big runs: 1,000, as the delivery requirement states (about 40 s
/// in a debug build, since the workspace optimises the primitives even there);
/// `CONFIDE_E2E_MESSAGES=<n>` overrides it for quicker local iterations.
fn messages_per_side() -> usize {
    std::env::var("CONFIDE_E2E_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

/// Frames node `i` put on the wire, and how many of them were symmetric envelopes.
fn symmetric_share(world: &common::World, i: usize) -> (usize, usize) {
    let wire = world.wire[i].borrow();
    let symmetric = wire
        .iter()
        .filter(|(_, f)| {
            confide_transport::Frame::from_bytes(f).is_ok_and(|frame| match frame {
                confide_transport::Frame::Data { payload, .. } => {
                    payload.first() == Some(&confide_sealed::SYMMETRIC_ENVELOPE_KIND)
                }
                _ => false,
            })
        })
        .count();
    (wire.len(), symmetric)
}

/// A mobile link as it usually is (2% loss, 1% duplication and reordering), both sides
/// texting for a while from the seed's schedule; every text arrived exactly once. Returns the
/// world, its service and the texts sent per side.
fn mildly_lossy_exchange(seed: u8) -> (common::World, Service, usize) {
    let n = messages_per_side().min(400);
    let (mut world, service) = pair(seed, lossy(2, 1, 1));
    exchange(
        &mut world,
        n,
        Duration::from_millis(50),
        Duration::from_days(2),
        |_, _| {},
    );
    assert_exactly_once(&world, |w, i| &w.live[i]);
    (world, service, n)
}

/// Symmetric envelopes node `i` refused (`DropReason::EnvelopeRefused`).
fn refused_envelopes(world: &common::World, i: usize) -> u64 {
    world
        .endpoint(i)
        .stats()
        .dropped(confide::DropReason::EnvelopeRefused)
}

#[test]
fn a_mildly_lossy_link_runs_on_symmetric_envelopes_after_first_contact() {
    // Seed 1 refuses none. Some schedules refuse a few symmetric envelopes sealed in the
    // round trip before the sender learns that late public-key frames pushed its epoch out
    // (seeds 1 to 24: 55 in all, at most 14 in one run); see the test below.
    let (world, service, n) = mildly_lossy_exchange(1);
    for i in 0..2 {
        assert_eq!(world.live[i].delivered, n);
        let (frames, symmetric) = symmetric_share(&world, i);
        // Measured at 1,000 texts a side: 98.5% symmetric, none refused.
        assert!(
            symmetric * 100 >= frames * 95,
            "node {i}: {symmetric} of {frames} frames symmetric"
        );
        assert_eq!(
            refused_envelopes(&world, 1 - i),
            0,
            "node {i}'s symmetric envelopes all opened"
        );
    }
    world.assert_no_key_reuse(&service.roots);
}

/// The schedules that made one side's symmetric envelopes refused by the hundred (seed 5: 508
/// refused; seed 15: 501 with an intermediate fix that followed the order acknowledgements
/// arrived in). Before the first acknowledgement comes back the client sends a burst of
/// public-key frames, each starting an epoch; the counselor handles one of the newest first,
/// acknowledges it (the client makes that epoch current) and then handles older frames of the
/// burst that were delayed, each installing a window. Eight of them pushed the current epoch's
/// window out, and every envelope of it was `UnknownTag` until re-sealed. Now the counselor
/// keeps windows in order of last use (an epoch in use is the last to go) and the client
/// counts the acknowledgements of those older frames, ending its epoch once eight came:
/// what remains is at most the envelopes of one round trip.
#[test]
fn late_public_key_frames_do_not_strand_the_senders_epoch() {
    for seed in [5, 15] {
        let (world, service, n) = mildly_lossy_exchange(seed);
        for i in 0..2 {
            assert_eq!(world.live[i].delivered, n);
            let refused = refused_envelopes(&world, i);
            assert!(
                refused <= MAX_REFUSED_IN_A_ROUND_TRIP,
                "seed {seed}: node {i} refused {refused} symmetric envelopes"
            );
        }
        world.assert_no_key_reuse(&service.roots);
    }
}

/// Symmetric envelopes one side may refuse on the mildly lossy link: those its peer seals in
/// the round trip before it learns its epoch was pushed out, and their retransmissions before
/// the re-seal (measured: at most 14 over seeds 1 to 24).
const MAX_REFUSED_IN_A_ROUND_TRIP: u64 = 24;

#[test]
fn messages_each_way_survive_loss_duplication_and_reordering() {
    let n = messages_per_side();
    let (mut world, service) = pair(1, lossy(20, 10, 10));
    exchange(
        &mut world,
        n,
        Duration::from_millis(50),
        Duration::from_days(2),
        |_, _| {},
    );
    assert_eq!(world.live[0].sent.len(), n);
    assert_eq!(world.live[1].sent.len(), n);
    assert_exactly_once(&world, |w, i| &w.live[i]);
    assert_eq!(world.live[0].delivered, n, "every client text acknowledged");
    assert_eq!(
        world.live[1].delivered, n,
        "every counselor text acknowledged"
    );
    let stats = world.sim.network().stats();
    assert!(
        stats.lost > 0 && stats.duplicated > 0,
        "the network was lossy"
    );
    for i in 0..2 {
        assert_eq!(world.endpoint(i).stats().authentication_failures(), 0);
        // On this hostile link public-key frames reach the peer out of order often enough
        // to push out of its eight windows the epoch we promoted; the refused symmetric frames
        // are re-encrypted (docs/sealed-sender.md §9.5), so nothing is lost, but many frames
        // stay public-key. Measured: about 40% symmetric, a quarter of them refused, while the
        // peer dropped its windows in install order and we never learnt of it; 48%
        // symmetric, 7% of them refused, with windows kept in order of last use and the
        // late acknowledgements counted. The share depends on the random stream (every
        // record sealed draws a nonce from it): 38.5-47% over seeds 1 to 4 (measured
        // 2026-12-01), so the bound is a third.
        let (frames, symmetric) = symmetric_share(&world, i);
        let refused = world
            .endpoint(1 - i)
            .stats()
            .dropped(confide::DropReason::EnvelopeRefused);
        assert!(
            symmetric * 3 > frames,
            "node {i}: {symmetric} of {frames} frames symmetric"
        );
        assert!(
            refused * 8 < symmetric as u64,
            "node {i}: {refused} of its {symmetric} symmetric envelopes refused"
        );
    }
    world.assert_no_key_reuse(&service.roots);
}

#[test]
fn counselor_offline_for_a_day_still_gets_everything() {
    let n = messages_per_side();
    let (mut world, _service) = pair(2, lossy(20, 10, 10));
    let counselor = world.endpoint(1).address().clone();
    // The counselor answers the first message, then is offline for a day.
    let offline_from = T0.saturating_add(Duration::from_secs(30));
    let offline_until = offline_from.saturating_add(Duration::from_days(1));
    world
        .sim
        .network_mut()
        .take_offline(&counselor, offline_from, offline_until);
    exchange(
        &mut world,
        n,
        Duration::from_millis(100),
        Duration::from_days(3),
        |_, _| {},
    );
    assert!(
        world.now() > offline_until,
        "the run outlasted the offline day"
    );
    assert_exactly_once(&world, |w, i| &w.live[i]);
    assert_eq!(world.live[0].delivered, n);
    assert_eq!(world.live[1].delivered, n);
    assert!(world.sim.network().stats().dropped_by_partition > 0);
}

/// What one change set of the counselor writes when it sends a text of `len` bytes after
/// `days` days of 20 texts each way a day (a day is 40 texts 30 s apart, then 23 hours of
/// quiet): the total, and the conversation record's share. Every record is weighed as the
/// store gets it (`ChangeSet::written_bytes` of that record's key and value).
fn bytes_of_a_text_after(days: u32, len: usize) -> (usize, usize) {
    let (mut world, _service) = pair(1, lossy(0, 0, 0));
    world.verify_records = false;
    let conv = common::connect(&mut world);
    world.send(0, conv, b"hello");
    let pause = |world: &mut common::World, d: Duration| {
        let until = world.now().saturating_add(d);
        world.run_until(until);
        let _ = world.sim.run_until(&mut world.rng, until, usize::MAX);
        world.handle_events();
    };
    pause(&mut world, Duration::from_secs(30));
    let counselor_conv = world.endpoint(1).conversations()[0];
    for day in 0..days {
        for i in 0..20 {
            world.send(0, conv, format!("client, day {day}, {i}").as_bytes());
            pause(&mut world, Duration::from_secs(30));
            world.send(
                1,
                counselor_conv,
                format!("counselor, day {day}, {i}").as_bytes(),
            );
            pause(&mut world, Duration::from_secs(30));
        }
        pause(&mut world, Duration::from_hours(23));
    }
    world.persist_now(1);
    world.defer_persist[1] = true;
    world.command(1, |e, now, rng| {
        e.send(rng, now, counselor_conv, &vec![b'x'; len]).unwrap();
    });
    let key = world.key.clone();
    let node = world.nodes[1];
    world
        .sim
        .command(&mut world.rng, node, |node, rng, _| {
            let changes = node.endpoint.take_changes(rng, &key, b"account").unwrap();
            let conversation: usize = changes
                .puts()
                .filter(|(k, _)| k.first() == Some(&0x03))
                .map(|(k, v)| k.len() + v.len())
                .sum();
            node.endpoint.confirm_persisted();
            (changes.written_bytes(), conversation)
        })
        .unwrap()
}

/// A text's change set does not grow with its conversation's past (issue 10; measured
/// 2026-12-01). Before state version 8 the conversation record, rewritten whole with every
/// text (its session advanced), held the policy's state: every message still tracked and the
/// id of every expired, deleted or retired message (up to 4,096), besides the last 64
/// delivered texts and the windows of up to 8 of the peer's epochs. A 1 KiB text then wrote
/// 9,191 B after 2 days of this scenario, 29,349 B after 30 days and 76,309 B after 120;
/// now each of those is a record of its own, written when it changes, and the same text
/// writes 5,187 B whatever the history (its frame in the outbox, its content in the sent
/// record, the conversation's session); 4,932 B since version 9's compact session records
/// (conversation record 1,389 B; a 100 B text 3,176 B); 3,109 B since version 10, whose
/// outbox entry no longer holds the sealed frame (a 100 B text 2,185 B): within the issue's
/// 4 KB for the 1 KiB text too.
#[test]
fn a_texts_change_set_does_not_grow_with_its_conversations_past() {
    let (early, early_conversation) = bytes_of_a_text_after(2, 1024);
    let (later, later_conversation) = bytes_of_a_text_after(30, 1024);
    assert!(
        later <= early + 64 && later_conversation <= early_conversation + 64,
        "2 days: {early} B (conversation {early_conversation} B); 30 days: {later} B \
         (conversation {later_conversation} B)"
    );
    assert!(later <= 4_000, "a 1 KiB text after 30 days: {later} B");
    assert!(
        later_conversation <= 2_000,
        "the conversation record: {later_conversation} B"
    );
    let (short, _) = bytes_of_a_text_after(30, 100);
    assert!(short <= 4_000, "a 100 B text after 30 days: {short} B");
}
