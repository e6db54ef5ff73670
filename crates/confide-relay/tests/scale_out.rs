//! Two relay processes on one PostgreSQL database: a frame sent through one process is pushed
//! to an owner connected to the other while it stays connected (LISTEN/NOTIFY wake-ups),
//! within a bounded time, exactly once; and a wake-up listener whose connection is killed
//! reconnects without leaving an owner waiting. Skipped (with the reason printed) when
//! `CONFIDE_TEST_POSTGRES_URL` is unset; each test keeps its tables in a fresh schema.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use confide_relay::client::RelayConnection;
use confide_transport::{Address, FrameId};

/// How long a cross-process delivery may take (the measured figure is milliseconds).
const CROSS_PROCESS_BOUND: Duration = Duration::from_secs(5);

/// Two relay processes sharing the schema `schema` of the test database.
fn two_relays(url: &str, schema: &str) -> (RelayProcess, RelayProcess) {
    let a = RelayProcess::start_db(url, "127.0.0.1:0", &["--db-schema", schema]);
    let b = RelayProcess::start_db(url, "127.0.0.1:0", &["--db-schema", schema]);
    (a, b)
}

/// The next delivery on `owner` within [`CROSS_PROCESS_BOUND`], and how long it took.
async fn pushed(owner: &mut RelayConnection, since: Instant) -> (Vec<u8>, Duration) {
    let frame = tokio::time::timeout(CROSS_PROCESS_BOUND, owner.next_delivery())
        .await
        .expect("a frame stored through the other process is pushed within the bound")
        .unwrap();
    (frame, since.elapsed())
}

/// No delivery arrives on `owner` within `wait`.
async fn nothing_more(owner: &mut RelayConnection, wait: Duration) {
    if let Ok(got) = tokio::time::timeout(wait, owner.next_delivery()).await {
        panic!("unexpected delivery: {:?}", got.map(|f| id_of(&f)));
    }
}

fn unique(name: &str, schema: &str) -> Address {
    // Notifications travel on one channel per database: addresses of their own keep other
    // tests' wake-ups (harmless anyway) from touching this test's mailboxes.
    let tail = schema.rsplit('_').next().unwrap();
    address(&format!("{name}-{tail}"))
}

#[tokio::test]
async fn an_owner_on_one_process_is_pushed_frames_sent_through_the_other_exactly_once() {
    if !cfg!(feature = "postgres") {
        println!("skipped: the relay is built without the `postgres` feature");
        return;
    }
    let Some(url) = postgres_url("scale-out push") else {
        return;
    };
    within(async {
        let schema = fresh_schema("scaleout");
        let (a, b) = two_relays(&url, &schema);
        let (mb_a, mb_b) = (unique("owner-on-a", &schema), unique("owner-on-b", &schema));
        // Owners on both processes, senders on both (each on a connection of its own).
        let mut owner_b = owner(b.addr, &mb_b, &key(1)).await;
        let mut owner_a = owner(a.addr, &mb_a, &key(2)).await;
        let mut via_a = RelayConnection::connect(a.addr).await.unwrap();
        let mut via_b = RelayConnection::connect(b.addr).await.unwrap();

        // One at a time: each frame reaches the owner on the other process while it stays
        // connected (it never authenticates again).
        let mut worst = Duration::ZERO;
        let mut seen_b: HashSet<FrameId> = HashSet::new();
        let mut seen_a: HashSet<FrameId> = HashSet::new();
        for n in 0..10u32 {
            let id = frame_id(n);
            let start = Instant::now();
            via_a
                .send(&mb_b, None, &frame(id, b"a to b"))
                .await
                .unwrap();
            let (got, took) = pushed(&mut owner_b, start).await;
            assert_eq!(id_of(&got), id);
            assert!(seen_b.insert(id), "delivered twice");
            owner_b.confirm(&[id]).await.unwrap();
            worst = worst.max(took);

            let id = frame_id(1_000 + n);
            let start = Instant::now();
            via_b
                .send(&mb_a, None, &frame(id, b"b to a"))
                .await
                .unwrap();
            let (got, took) = pushed(&mut owner_a, start).await;
            assert_eq!(id_of(&got), id);
            assert!(seen_a.insert(id), "delivered twice");
            owner_a.confirm(&[id]).await.unwrap();
            worst = worst.max(took);
        }

        // A burst through A: all of it reaches B's owner, each frame once, in order.
        let burst: Vec<FrameId> = (100..140u32).map(frame_id).collect();
        let start = Instant::now();
        for id in &burst {
            via_a
                .send(&mb_b, None, &frame(*id, b"burst"))
                .await
                .unwrap();
        }
        let mut got = Vec::new();
        while got.len() < burst.len() {
            let (f, _) = pushed(&mut owner_b, start).await;
            got.push(id_of(&f));
        }
        let burst_took = start.elapsed();
        assert_eq!(got, burst, "every frame once, in store order");
        owner_b.confirm(&burst).await.unwrap();
        nothing_more(&mut owner_b, Duration::from_millis(300)).await;
        nothing_more(&mut owner_a, Duration::from_millis(10)).await;
        // Nothing else waits in either mailbox, seen from either process.
        assert_only_probe_waits(a.addr, &mb_b, &mut owner_b, 9_000).await;
        assert_only_probe_waits(b.addr, &mb_a, &mut owner_a, 9_001).await;
        println!(
            "cross-process push: worst single frame {worst:?}; burst of {} frames {burst_took:?}",
            burst.len()
        );
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_killed_wake_up_listener_reconnects_and_no_owner_waits_forever() {
    let Some(url) = postgres_url("listener reconnect") else {
        return;
    };
    within(async {
        let schema = fresh_schema("relisten");
        let (a, b) = two_relays(&url, &schema);
        let mb = unique("owner-relisten", &schema);
        let mut owner_b = owner(b.addr, &mb, &key(3)).await;
        let mut via_a = RelayConnection::connect(a.addr).await.unwrap();
        let id = frame_id(1);
        via_a.send(&mb, None, &frame(id, b"before")).await.unwrap();
        let (got, _) = pushed(&mut owner_b, Instant::now()).await;
        assert_eq!(id_of(&got), id);
        owner_b.confirm(&[id]).await.unwrap();

        // Kill every wake-up listener's connection (other tests' relays reconnect too).
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = $1",
                &[&confide_relay::postgres::WAKE_LISTENER_APPLICATION_NAME],
            )
            .await
            .unwrap();
        assert!(rows.len() >= 2, "both processes' listeners were connected");
        // Sent at once: the notification may be lost while B reconnects; the wake-up after
        // the reconnect must still bring the frame to the connected owner.
        let start = Instant::now();
        for n in 2..6u32 {
            via_a
                .send(&mb, None, &frame(frame_id(n), b"during"))
                .await
                .unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 4 {
            let (f, _) = pushed(&mut owner_b, start).await;
            got.push(id_of(&f));
        }
        assert_eq!(got, (2..6u32).map(frame_id).collect::<Vec<_>>());
        owner_b.confirm(&got).await.unwrap();
        // And the listener works again: a later frame is pushed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = frame_id(7);
        let start = Instant::now();
        via_a.send(&mb, None, &frame(id, b"after")).await.unwrap();
        let (got, took) = pushed(&mut owner_b, start).await;
        assert_eq!(id_of(&got), id);
        owner_b.confirm(&[id]).await.unwrap();
        nothing_more(&mut owner_b, Duration::from_millis(200)).await;
        println!("after the listener reconnected, a frame took {took:?}");
        drop(client);
        driver.abort();
    })
    .await;
}
