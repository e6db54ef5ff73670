//! The delivery machine under a lossy, duplicating, reordering, partitioned simulated network.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use chacha20::ChaCha20Rng;
use confide_crypto::{Duration, Timestamp};
use confide_sim::{LinkConfig, NodeId, RunOutcome, SimNetwork, Simulation};
use confide_test_support::messenger::{AppEvent, Messenger};
use confide_transport::consts::{GIVE_UP_AFTER, MAX_OUTBOX_MESSAGES};
use confide_transport::{Address, FrameId};
use proptest::prelude::*;
use rand_core::SeedableRng;

const START: u64 = 1_700_000_000_000;
const NODES: usize = 3;
const STEP_BUDGET: usize = 200_000;

#[derive(Debug, Clone)]
enum Action {
    Send { from: usize, to: usize },
    Restart(usize),
}

#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    link: LinkConfig,
    /// (milliseconds after start, action), applied in time order.
    actions: Vec<(u64, Action)>,
    /// (node, start offset, length) of an offline period.
    outage: Option<(usize, u64, u64)>,
}

struct Outcome {
    events: Vec<(NodeId, AppEvent)>,
    sent: Vec<(usize, usize, FrameId)>,
}

fn address(i: usize) -> Address {
    Address::new(format!("mailbox-{i}").as_bytes()).unwrap()
}

fn run(plan: &Plan, with_restarts: bool) -> Outcome {
    let mut rng = ChaCha20Rng::seed_from_u64(plan.seed);
    let mut net = SimNetwork::new(plan.seed ^ 0x5eed);
    net.set_default_link(plan.link);
    if let Some((node, start, len)) = plan.outage {
        net.take_offline(
            &address(node),
            Timestamp::from_millis(START + start),
            Timestamp::from_millis(START + start + len),
        );
    }
    let mut sim = Simulation::new(net, Timestamp::from_millis(START));
    let nodes: Vec<NodeId> = (0..NODES)
        .map(|i| sim.add_node(address(i), Messenger::new(address(i))))
        .collect();
    let mut actions = plan.actions.clone();
    actions.sort_by_key(|(at, _)| *at);
    let mut sent = Vec::new();
    for (n, (at, action)) in actions.iter().enumerate() {
        let outcome = sim.run_until(&mut rng, Timestamp::from_millis(START + at), STEP_BUDGET);
        assert!(!matches!(outcome, RunOutcome::StepBudgetExhausted));
        match action {
            Action::Send { from, to } => {
                let to_addr = address(*to);
                let body = n.to_be_bytes();
                let id = sim
                    .command(&mut rng, nodes[*from], |m, rng, now| {
                        m.send(rng, now, &to_addr, &body)
                    })
                    .unwrap()
                    .unwrap();
                sent.push((*from, *to, id));
            }
            Action::Restart(node) if with_restarts => {
                sim.command(&mut rng, nodes[*node], |m, _, _| m.restart());
            }
            Action::Restart(_) => {}
        }
        for &node in &nodes {
            assert!(sim.endpoint(node).unwrap().delivery.outbox_len() <= MAX_OUTBOX_MESSAGES);
        }
    }
    let limit = sim.now().saturating_add(Duration::from_days(30));
    let outcome = sim.run_until(&mut rng, limit, STEP_BUDGET);
    assert!(
        matches!(outcome, RunOutcome::Quiescent { .. }),
        "everything settles: {outcome:?}"
    );
    for &node in &nodes {
        let m = sim.endpoint(node).unwrap();
        assert_eq!(m.delivery.outbox_len(), 0, "the outbox drains");
        assert_eq!(m.delivery.dedup_len(), 0, "the dedup window forgets by age");
    }
    Outcome {
        events: sim.take_events(),
        sent,
    }
}

/// Checks what the users would see, and returns (delivered, failed) counts.
fn check(plan: &Plan, outcome: &Outcome) -> (usize, usize) {
    let mut received: BTreeMap<FrameId, usize> = BTreeMap::new();
    let mut terminal: BTreeMap<FrameId, Vec<&AppEvent>> = BTreeMap::new();
    for (node, event) in &outcome.events {
        match event {
            AppEvent::Received { from, id, body } => {
                let (f, t, _) = outcome
                    .sent
                    .iter()
                    .find(|(_, _, s)| s == id)
                    .expect("only sent messages arrive");
                assert_eq!(node.0, *t, "arrives at its recipient");
                assert_eq!(from, &address(*f));
                assert_eq!(body.len(), 8);
                *received.entry(*id).or_default() += 1;
            }
            AppEvent::Delivered(id) | AppEvent::Failed(id) => {
                let (f, _, _) = outcome.sent.iter().find(|(_, _, s)| s == id).unwrap();
                assert_eq!(node.0, *f, "reported to its sender");
                terminal.entry(*id).or_default().push(event);
            }
        }
    }
    let (mut delivered, mut failed) = (0, 0);
    for (_, _, id) in &outcome.sent {
        let got = received.get(id).copied().unwrap_or(0);
        assert!(got <= 1, "delivered to the app at most once");
        let outcomes = terminal.get(id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            outcomes.len(),
            1,
            "exactly one of Delivered / DeliveryFailed"
        );
        match outcomes[0] {
            AppEvent::Delivered(_) => {
                assert_eq!(got, 1, "Delivered means the recipient's app has it");
                delivered += 1;
            }
            AppEvent::Failed(_) => {
                // Received-and-failed needs every acknowledgement lost: only with loss or an
                // outage. Without an outage long enough to reach the give-up deadline, loss
                // alone never exhausts a week of retransmissions here.
                assert!(plan.outage.is_some() || plan.link.loss_per_million > 0 || got == 0);
                failed += 1;
            }
            _ => unreachable!(),
        }
    }
    (delivered, failed)
}

fn plan_strategy(max_outage: u64) -> impl Strategy<Value = Plan> {
    let action = prop_oneof![
        4 => (0..NODES, 1..NODES).prop_map(|(from, d)| Action::Send { from, to: (from + d) % NODES }),
        1 => (0..NODES).prop_map(Action::Restart),
    ];
    (
        any::<u64>(),
        0u32..500_000,
        0u32..300_000,
        0u32..500_000,
        0u64..3_000,
        proptest::collection::vec((0u64..600_000, action), 1..16),
        proptest::option::of((0..NODES, 0u64..600_000, 0..max_outage)),
    )
        .prop_map(
            |(seed, loss, dup, reorder, max_delay, actions, outage)| Plan {
                seed,
                link: LinkConfig::perfect(Duration::from_millis(10))
                    .with_delay(
                        Duration::from_millis(10),
                        Duration::from_millis(10 + max_delay),
                    )
                    .with_loss(loss)
                    .with_duplication(dup)
                    .with_reordering(reorder),
                actions,
                outage,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Under loss, duplication, reordering and outages shorter than the give-up deadline,
    /// every message is delivered exactly once and reported Delivered; restarting nodes
    /// (state through bytes) at random points changes nothing at all.
    #[test]
    fn short_outages_lose_nothing(plan in plan_strategy(GIVE_UP_AFTER.as_millis() / 2)) {
        let plain = run(&plan, false);
        let (delivered, failed) = check(&plan, &plain);
        prop_assert_eq!(failed, 0);
        prop_assert_eq!(delivered, plain.sent.len());
        let restarted = run(&plan, true);
        prop_assert_eq!(&restarted.events, &plain.events);
    }

    /// Outages that may outlast the give-up deadline: every message still ends in exactly one
    /// outcome, is never delivered twice, and restarts change nothing.
    #[test]
    fn long_outages_fail_cleanly(plan in plan_strategy(GIVE_UP_AFTER.as_millis() * 2)) {
        let plain = run(&plan, false);
        let _ = check(&plan, &plain);
        let restarted = run(&plan, true);
        prop_assert_eq!(&restarted.events, &plain.events);
    }
}

#[test]
fn offline_outbox_keeps_retrying_until_the_peer_returns() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut net = SimNetwork::new(11);
    let three_days = Duration::from_days(3).as_millis();
    net.take_offline(
        &address(1),
        Timestamp::from_millis(START),
        Timestamp::from_millis(START + three_days),
    );
    let mut sim = Simulation::new(net, Timestamp::from_millis(START));
    let a = sim.add_node(address(0), Messenger::new(address(0)));
    let _b = sim.add_node(address(1), Messenger::new(address(1)));
    let id = sim
        .command(&mut rng, a, |m, rng, now| {
            m.send(rng, now, &address(1), b"are you there?")
        })
        .unwrap()
        .unwrap();
    let _ = sim.run_until(
        &mut rng,
        Timestamp::from_millis(START + three_days - 1),
        STEP_BUDGET,
    );
    assert!(sim.take_events().is_empty());
    let retries = sim.endpoint(a).unwrap().delivery.stats().retransmitted;
    assert!(retries >= 55, "kept retrying while offline: {retries}");
    // With the backoff capped at 1 hour (+25% jitter), delivery follows the return within 76 min.
    let _ = sim.run_until(
        &mut rng,
        Timestamp::from_millis(START + three_days + 76 * 60_000),
        STEP_BUDGET,
    );
    let events = sim.take_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(events[0].1, AppEvent::Received { .. }));
    assert_eq!(events[1], (a, AppEvent::Delivered(id)));
}

#[test]
fn unreachable_peer_fails_exactly_at_the_give_up_deadline() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let mut net = SimNetwork::new(12);
    net.cut(&address(0), &address(1));
    let mut sim = Simulation::new(net, Timestamp::from_millis(START));
    let a = sim.add_node(address(0), Messenger::new(address(0)));
    let _b = sim.add_node(address(1), Messenger::new(address(1)));
    let id = sim
        .command(&mut rng, a, |m, rng, now| {
            m.send(rng, now, &address(1), b"hello")
        })
        .unwrap()
        .unwrap();
    let deadline = Timestamp::from_millis(START).saturating_add(GIVE_UP_AFTER);
    let _ = sim.run_until(
        &mut rng,
        Timestamp::from_millis(deadline.as_millis() - 1),
        STEP_BUDGET,
    );
    assert!(sim.take_events().is_empty());
    let _ = sim.run_until(&mut rng, deadline, STEP_BUDGET);
    assert_eq!(sim.take_events(), vec![(a, AppEvent::Failed(id))]);
    assert_eq!(sim.now(), deadline);
    assert_eq!(sim.endpoint(a).unwrap().delivery.outbox_len(), 0);
}

#[test]
fn duplicates_are_re_acknowledged_not_redelivered() {
    // Every frame is duplicated and acks are lost half the time.
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let mut net = SimNetwork::new(13);
    net.set_link(
        &address(0),
        &address(1),
        LinkConfig::perfect(Duration::from_millis(30)).with_duplication(1_000_000),
    );
    net.set_link(
        &address(1),
        &address(0),
        LinkConfig::perfect(Duration::from_millis(30)).with_loss(500_000),
    );
    let mut sim = Simulation::new(net, Timestamp::from_millis(START));
    let a = sim.add_node(address(0), Messenger::new(address(0)));
    let b = sim.add_node(address(1), Messenger::new(address(1)));
    let mut ids = Vec::new();
    for i in 0..20u8 {
        ids.push(
            sim.command(&mut rng, a, |m, rng, now| {
                m.send(rng, now, &address(1), &[i])
            })
            .unwrap()
            .unwrap(),
        );
    }
    let _ = sim.run_until(
        &mut rng,
        Timestamp::from_millis(START + 86_400_000),
        STEP_BUDGET,
    );
    let events = sim.take_events();
    let received = events
        .iter()
        .filter(|(n, e)| *n == b && matches!(e, AppEvent::Received { .. }))
        .count();
    let delivered = events
        .iter()
        .filter(|(n, e)| *n == a && matches!(e, AppEvent::Delivered(_)))
        .count();
    assert_eq!(received, 20);
    assert_eq!(delivered, 20);
    assert!(sim.network().stats().duplicated >= 20);
}
