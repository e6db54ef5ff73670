//! The exact `Debug` output of the facade's secret-holding types, pinned (the hand-written
//! impls name every field, so a new one needs a decision).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{connect, lossy, pair};
use confide::StorageKey;

#[test]
fn debug_of_secret_holding_types_is_pinned() {
    let (mut world, _service) = pair(77, lossy(0, 0, 0));
    assert_eq!(
        format!("{:?}", world.endpoint(0)),
        "Endpoint { conversations: 0, tombstones: 0, outbox: 0, held_transmits: 0, events: 0, unconfirmed_changes: 0, .. }"
    );
    let conv = connect(&mut world);
    world.send(0, conv, b"a private disclosure");
    assert_eq!(
        format!("{:?}", world.endpoint(0)),
        "Endpoint { conversations: 1, tombstones: 0, outbox: 1, held_transmits: 0, events: 0, unconfirmed_changes: 0, .. }"
    );
    let bundles = world.endpoint(1).published_bundles();
    assert_eq!(
        format!("{bundles:?}"),
        "PublishedBundles { one_time: 100, last_resort_len: 1837 }"
    );
    assert_eq!(
        format!("{:?}", StorageKey::new([0x42; 32])),
        "StorageKey([REDACTED])"
    );
}
