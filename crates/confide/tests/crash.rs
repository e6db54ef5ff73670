//! Nothing lost, no key reused: a client and a counselor talk over a lossy simulated network
//! while their apps persist late and crash at random points, restarting from the last
//! confirmed snapshot.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::needless_range_loop
)]

use crate::common;

use std::collections::VecDeque;

use chacha20::ChaCha20Rng;
use common::{World, assert_exactly_once, connect, lossy, pair};
use confide_crypto::Duration;
use rand_core::{Rng, SeedableRng};

fn chance(rng: &mut ChaCha20Rng, percent: u64) -> bool {
    rng.next_u64() % 100 < percent
}

/// Runs one crash scenario; returns the number of crashes.
fn run(seed: u8, per_side: usize, crash_percent: u64, defer_percent: u64) -> usize {
    let (mut world, service) = pair(seed, lossy(10, 5, 5));
    let mut chaos = ChaCha20Rng::from_seed([seed.wrapping_add(100); 32]);
    let client_conv = connect(&mut world);
    let mut plan: [VecDeque<Vec<u8>>; 2] = [
        (0..per_side)
            .map(|i| format!("client {i}").into_bytes())
            .collect(),
        (0..per_side)
            .map(|i| format!("counselor {i}").into_bytes())
            .collect(),
    ];
    // The client's first text and the conversation are persisted before the chaos starts.
    let first = plan[0].pop_front().unwrap();
    world.send(0, client_conv, &first);

    let mut rounds = 0usize;
    while plan.iter().any(|p| !p.is_empty()) {
        rounds += 1;
        assert!(rounds < 100_000, "scenario does not converge");
        for side in 0..2 {
            let conv = if side == 0 {
                Some(client_conv)
            } else {
                world.endpoint(1).conversations().first().copied()
            };
            if let (Some(conv), Some(text)) = (conv, plan[side].front().cloned()) {
                plan[side].pop_front();
                world.send(side, conv, &text);
            }
        }
        chaos_step(
            &mut world,
            &mut chaos,
            &mut plan,
            crash_percent,
            defer_percent,
        );
        let next = world.now().saturating_add(Duration::from_millis(300));
        world.run_until(next);
    }
    // Calm down: apps persist promptly again; run until everything is acknowledged.
    for side in 0..2 {
        world.defer_persist[side] = false;
        world.persist_now(side);
    }
    let limit = world.now().saturating_add(Duration::from_days(2));
    let delivered = world.run_while(limit, |w| {
        w.live[0].delivered == w.live[0].sent.len() && w.live[1].delivered == w.live[1].sent.len()
    });
    if !delivered {
        for side in 0..2 {
            eprintln!(
                "side {side}: sent {} delivered {} received {} outbox {} held? {} stats {:?} convs {:?}",
                world.live[side].sent.len(),
                world.live[side].delivered,
                world.live[side].received.len(),
                world.endpoint(side).outbox_len(),
                world.endpoint(side).needs_persist(),
                world.endpoint(side).stats(),
                world.endpoint(side).conversations(),
            );
        }
        eprintln!(
            "events {:?}",
            &world.live[1]
                .events
                .iter()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
        );
    }
    assert!(delivered, "every text is eventually acknowledged");
    for side in 0..2 {
        world.persist_now(side);
    }
    assert_eq!(
        world.committed[0].sent.len(),
        per_side,
        "the client sent its whole plan"
    );
    assert_eq!(
        world.committed[1].sent.len(),
        per_side,
        "the counselor sent its whole plan"
    );
    assert_exactly_once(&world, |w, i| &w.committed[i]);
    let failures = world.authentication_failures
        + world.endpoint(0).stats().authentication_failures()
        + world.endpoint(1).stats().authentication_failures();
    assert_eq!(failures, 0, "no message ever failed to authenticate");
    world.assert_no_key_reuse(&service.roots);
    world.crashes
}

/// Randomly defers persistence and crashes a node. A crash loses what its app had not
/// persisted: texts it sent since then go back into its plan (the app would resend them).
fn chaos_step(
    world: &mut World,
    chaos: &mut ChaCha20Rng,
    plan: &mut [VecDeque<Vec<u8>>; 2],
    crash_percent: u64,
    defer_percent: u64,
) {
    for side in 0..2 {
        if chance(chaos, crash_percent) {
            let kept = world.committed[side].sent.len();
            let lost: Vec<Vec<u8>> = world.live[side].sent[kept..].to_vec();
            world.crash(side);
            for text in lost.into_iter().rev() {
                plan[side].push_front(text);
            }
        }
        let defer = chance(chaos, defer_percent);
        world.defer_persist[side] = defer;
        if !defer && world.endpoint(side).needs_persist() {
            world.persist_now(side);
        }
    }
}

#[test]
fn crashes_lose_nothing_and_never_reuse_a_key() {
    let crashes = run(7, 60, 8, 40);
    assert!(
        crashes >= 5,
        "the scenario crashed endpoints ({crashes} times)"
    );
}

#[test]
fn crashes_while_every_persist_is_late() {
    let crashes = run(8, 30, 15, 90);
    assert!(
        crashes >= 5,
        "the scenario crashed endpoints ({crashes} times)"
    );
}
