//! Property: over a network that loses, reorders, repeats and corrupts messages, with state
//! saved and restored at random points, every authentic message is surfaced at most once
//! with the right plaintext and sender, every repeat is refused (as `Duplicate` while its
//! chain is remembered), every corrupted copy is refused without changing state, and after
//! the network drains both sides still talk. The checks live in
//! `confide_test_support::fuzzing::session` (shared with the `session_interaction` fuzz target); the strategy here produces its byte encoding, so a
//! shrunk failure is also a fuzz input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use confide_test_support::fuzzing::{self, session::Sim};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    SendAlice,
    SendBob,
    Deliver { to_alice: bool, which: u8 },
    Drop { to_alice: bool, which: u8 },
    Duplicate { to_alice: bool, which: u8 },
    Flip { to_alice: bool, which: u8, bit: u16 },
    Snapshot { bob: bool, mode: u8 },
}

fn arg(flag: bool, rest: u8) -> u8 {
    (rest << 1) | u8::from(flag)
}

impl Op {
    /// The `fuzzing::session::Sim::run` encoding (direction bit 0 = from Alice, 1 = from Bob).
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Op::SendAlice => out.push(0),
            Op::SendBob => out.push(2),
            Op::Deliver { to_alice, which } => out.extend([4, arg(to_alice, which)]),
            Op::Drop { to_alice, which } => out.extend([6, arg(to_alice, which)]),
            Op::Duplicate { to_alice, which } => out.extend([7, arg(to_alice, which)]),
            Op::Flip {
                to_alice,
                which,
                bit,
            } => out.extend([8, arg(to_alice, which), (bit >> 8) as u8, bit as u8]),
            Op::Snapshot { bob, mode } => out.extend([9, arg(bob, mode)]),
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::SendAlice),
        3 => Just(Op::SendBob),
        7 => (any::<bool>(), 0..127u8).prop_map(|(to_alice, which)| Op::Deliver { to_alice, which }),
        1 => (any::<bool>(), 0..127u8).prop_map(|(to_alice, which)| Op::Drop { to_alice, which }),
        1 => (any::<bool>(), 0..127u8).prop_map(|(to_alice, which)| Op::Duplicate { to_alice, which }),
        1 => (any::<bool>(), 0..127u8, any::<u16>())
            .prop_map(|(to_alice, which, bit)| Op::Flip { to_alice, which, bit }),
        1 => (any::<bool>(), 0..4u8).prop_map(|(bob, mode)| Op::Snapshot { bob, mode }),
    ]
}

fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in ops {
        o.encode(&mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn hostile_network_conversation(ops in proptest::collection::vec(op(), 0..160)) {
        fuzzing::session_interaction(&encode(&ops));
    }

    /// Bytes straight from the fuzzer's alphabet, as the fuzz target sees them.
    #[test]
    fn raw_operation_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        fuzzing::session_interaction(&bytes);
    }
}

/// A long fixed scenario, to make sure the simulation exercises every path it claims to.
#[test]
fn simulation_is_not_vacuous() {
    let mut sim = Sim::new();
    let mut ops = Vec::new();
    for round in 0..30u8 {
        for _ in 0..3 {
            Op::SendAlice.encode(&mut ops);
        }
        Op::SendBob.encode(&mut ops);
        Op::Deliver {
            to_alice: false,
            which: round % 3,
        }
        .encode(&mut ops);
        Op::Deliver {
            to_alice: false,
            which: 0,
        }
        .encode(&mut ops);
        Op::Duplicate {
            to_alice: false,
            which: round,
        }
        .encode(&mut ops);
        Op::Deliver {
            to_alice: false,
            which: 100,
        }
        .encode(&mut ops);
        Op::Flip {
            to_alice: round % 2 == 0,
            which: 0,
            bit: u16::from(round) * 97,
        }
        .encode(&mut ops);
        Op::Deliver {
            to_alice: true,
            which: 0,
        }
        .encode(&mut ops);
        if round % 5 == 0 {
            Op::Drop {
                to_alice: false,
                which: 1,
            }
            .encode(&mut ops);
            Op::Snapshot {
                bob: round % 2 == 0,
                mode: round / 5,
            }
            .encode(&mut ops);
        }
    }
    sim.run(&ops);
    sim.finish();
    assert!(sim.deliveries > 60, "deliveries {}", sim.deliveries);
    assert!(sim.duplicates > 10, "duplicates {}", sim.duplicates);
    assert!(
        sim.rejected_flips > 10,
        "rejected flips {}",
        sim.rejected_flips
    );
    assert!(
        sim.delivered_count(0) < sim.sent_count(0),
        "nothing was lost"
    );
    assert!(sim.delivered_count(1) > 10);
}
