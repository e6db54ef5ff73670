//! A throughput measurement (ignored by default; run it by hand):
//! `cargo test -p confide-relay --test load -- --ignored --nocapture`. Senders on separate
//! connections store frames for eight mailboxes through one relay process on SQLite (each receipt follows a
//! durable commit), while each owner is connected and receives them as pushes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Instant;

use common::*;
use confide_relay::client::RelayConnection;

const SENDERS: u32 = 8;
const FRAMES_PER_SENDER: u32 = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; run by hand"]
async fn frames_per_second_stored_and_delivered() {
    let dir = TempDir::new("load");
    let relay = RelayProcess::start(dir.path(), &[]);
    let total = SENDERS * FRAMES_PER_SENDER;
    let mut owners = Vec::new();
    for t in 0..SENDERS {
        let mailbox = address(&format!("load {t}"));
        let mut o = owner(relay.addr, &mailbox, &key(1)).await;
        owners.push(tokio::spawn(async move {
            for _ in 0..FRAMES_PER_SENDER {
                let f = delivery(&mut o).await;
                o.confirm(&[id_of(&f)]).await.unwrap();
            }
        }));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..SENDERS {
        let (addr, mailbox) = (relay.addr, address(&format!("load {t}")));
        tasks.push(tokio::spawn(async move {
            let mut s = RelayConnection::connect(addr).await.unwrap();
            for n in 0..FRAMES_PER_SENDER {
                s.send(
                    &mailbox,
                    None,
                    &frame(frame_id(t * 100_000 + n), &[7; 1024]),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks.into_iter().chain(owners) {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{total} frames of 1 KiB from {SENDERS} senders to {SENDERS} connected owners: stored (receipted), pushed and confirmed in {secs:.2} s = {:.0} frames/s",
        f64::from(total) / secs
    );
}
