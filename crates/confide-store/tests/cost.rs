//! What the message store costs on a database file (ignored by default; it measures, it does
//! not check): `cargo test -p confide-store --test cost -- --ignored --nocapture`.
//! Every commit is durable (`synchronous = FULL`: one or more fsyncs), which dominates.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use crate::common;

use std::time::Instant;

use common::{CapturingRng, T0, id, message, open, scratch};
use confide_crypto::Duration;
use confide_store::{MAX_PAGE_LEN, WalClearing};

fn per(label: &str, total: std::time::Duration, n: u32) {
    println!(
        "{label:<58} {:>9.1} µs",
        total.as_secs_f64() * 1e6 / f64::from(n)
    );
}

#[test]
#[ignore = "a measurement, run by hand"]
fn message_store_costs() {
    let dir = scratch("cost");
    let db = dir.join("app.db");
    let mut t = open(&db, b"a");
    let mut rng = CapturingRng::new(1);
    let body = vec![b'x'; 200];
    let n = 300u32;
    let later = Some(T0.saturating_add(Duration::from_mins(10)));
    let start = Instant::now();
    for i in 0..u64::from(n) {
        let expiry = if i % 3 == 0 { later } else { None };
        t.put(&mut rng, T0, &message(1, i, &body, expiry)).unwrap();
    }
    per(
        "put (200 B body, one durable transaction)",
        start.elapsed(),
        n,
    );
    let start = Instant::now();
    for i in 0..100 {
        let _ = t.get(T0, 1, &id(i)).unwrap();
    }
    per("get", start.elapsed(), 100);
    let start = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            t.list(T0, 1, None, MAX_PAGE_LEN).unwrap().len(),
            MAX_PAGE_LEN
        );
    }
    per("list one page (128 entries)", start.elapsed(), 20);
    // Erase one message: the transaction, then the checkpoint, measured apart.
    t.set_wal_clearing(WalClearing::Manual);
    let (mut tx, mut cp) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for i in (1..100).filter(|i| i % 3 != 0).take(40) {
        let s = Instant::now();
        assert_eq!(t.erase(1, &id(i)).unwrap().erased, 1);
        tx += s.elapsed();
        let s = Instant::now();
        assert!(t.clear_wal().unwrap());
        cp += s.elapsed();
    }
    per("erase: delete transaction", tx, 40);
    per("erase: wal_checkpoint(TRUNCATE)", cp, 40);
    per("erase (both, the default)", tx + cp, 40);
    // 100 expired messages: one transaction, one checkpoint.
    t.set_wal_clearing(WalClearing::AfterEachErasure);
    let s = Instant::now();
    let e = t
        .erase_expired(T0.saturating_add(Duration::from_mins(10)))
        .unwrap();
    let total = s.elapsed();
    println!(
        "{:<58} {:>9.1} µs ({} messages, {:.1} µs each)",
        "erase_expired (one transaction, one checkpoint)",
        total.as_secs_f64() * 1e6,
        e.erased,
        total.as_secs_f64() * 1e6 / e.erased as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
