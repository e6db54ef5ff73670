//! Property test over random small scenarios: any loss, duplication and reordering, any
//! interleaving of sends, with or without a crash: every text arrives exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::needless_range_loop
)]

use crate::common;

use common::{assert_exactly_once, connect, lossy, pair};
use confide_crypto::Duration;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn small_scenarios_deliver_exactly_once(
        seed in 30u8..250,
        loss in 0u32..35,
        dup in 0u32..25,
        reorder in 0u32..30,
        // Each step: which side sends (0/1), or 2 = let time pass, 3 = crash the counselor.
        steps in proptest::collection::vec(0u8..4, 1..14),
    ) {
        let (mut world, service) = pair(seed, lossy(loss, dup, reorder));
        let conv = connect(&mut world);
        world.send(0, conv, b"opening");
        let mut counter = 0;
        for step in steps {
            match step {
                0 | 1 => {
                    let side = usize::from(step);
                    let c = if side == 0 { Some(conv) } else { world.endpoint(1).conversations().first().copied() };
                    if let Some(c) = c {
                        counter += 1;
                        world.send(side, c, format!("{side}:{counter}").as_bytes());
                    }
                }
                2 => {
                    let until = world.now().saturating_add(Duration::from_secs(3));
                    world.run_until(until);
                }
                _ => {
                    // Every state is persisted promptly here, so nothing the app holds is lost.
                    world.crash(1);
                }
            }
        }
        let limit = world.now().saturating_add(Duration::from_days(2));
        let done = world.run_while(limit, |w| {
            w.live[0].delivered == w.live[0].sent.len() && w.live[1].delivered == w.live[1].sent.len()
        });
        prop_assert!(done, "not everything was acknowledged");
        assert_exactly_once(&world, |w, i| &w.live[i]);
        world.assert_no_key_reuse(&service.roots);
    }
}
