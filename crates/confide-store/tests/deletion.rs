//! Real deletion, checked on the raw bytes of the database file, its write-ahead log and its
//! shared-memory index: plaintext never reaches them, and once a message is erased (unsent,
//! expired, its conversation erased) neither its wrapped key, nor its raw key, nor any piece of
//! its ciphertext is left in any of them, while the other messages still read.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::path::Path;

use common::{
    CapturingRng, T0, assert_gone, contains, files, id, message, open, pieces_found, row_counts,
    scratch, stored_blobs,
};
use confide_crypto::{Duration, Timestamp};
use confide_store::{Erasure, SqliteStore, Transcript, WalClearing};

const SLOT: &[u8] = b"client";

/// A body with a distinctive plaintext marker; every fifth is long enough for overflow pages.
fn body(n: u64) -> Vec<u8> {
    let marker = format!("MARKER-{n:05}-my-brother-sam-");
    let repeat = if n.is_multiple_of(5) { 400 } else { 2 };
    marker.repeat(repeat).into_bytes()
}

fn marker(n: u64) -> Vec<u8> {
    format!("MARKER-{n:05}").into_bytes()
}

/// What a test remembers of one stored message to search for later.
struct Captured {
    n: u64,
    wrapped_key: Vec<u8>,
    raw_key: Vec<u8>,
    sealed_body: Vec<u8>,
}

fn capture(db: &Path, seq: u64, n: u64, raw_key: &[u8]) -> Captured {
    let (wrapped_key, sealed_body) = stored_blobs(db, SLOT, seq);
    Captured {
        n,
        wrapped_key,
        raw_key: raw_key.to_vec(),
        sealed_body,
    }
}

fn assert_present(db: &Path, c: &Captured) {
    // Sanity of the search itself: before erasure the pieces are found.
    assert!(
        !pieces_found(db, &c.wrapped_key, 16).is_empty(),
        "the search finds a stored wrapped key"
    );
    assert!(!pieces_found(db, &c.sealed_body, 32).is_empty());
}

fn assert_erased(db: &Path, c: &Captured) {
    assert_gone(db, &c.wrapped_key, 16, "a piece of the wrapped key");
    assert_gone(db, &c.raw_key, 16, "a piece of the raw message key");
    assert_gone(db, &c.sealed_body, 32, "a piece of the ciphertext");
}

/// Stores messages 0..count in conversation 1 (`expiring(n)` gives the expiry), checking after
/// every put that no marker reached any file. Returns what was captured of each.
fn fill(
    db: &Path,
    t: &mut Transcript,
    rng: &mut CapturingRng,
    count: u64,
    expiring: impl Fn(u64) -> Option<Timestamp>,
) -> Vec<Captured> {
    let mut captured = Vec::new();
    for n in 0..count {
        let mark = rng.drawn.len();
        let b = body(n);
        let seq = t.put(rng, T0, &message(1, n, &b, expiring(n))).unwrap();
        let raw_key = rng.since(mark)[..32].to_vec();
        for (name, bytes) in files(db) {
            assert!(!contains(&bytes, &marker(n)), "plaintext marker in {name}");
            assert!(!contains(&bytes, &raw_key), "raw message key in {name}");
        }
        captured.push(capture(db, seq, n, &raw_key));
    }
    captured
}

#[test]
fn plaintext_never_reaches_the_files_and_an_erased_message_leaves_no_trace() {
    let dir = scratch("erase");
    let db = dir.join("app.db");
    // The records store shares the file (as in an app).
    let records = SqliteStore::open(&db, SLOT).unwrap();
    let mut t = open(&db, SLOT);
    let mut rng = CapturingRng::new(1);
    let captured = fill(&db, &mut t, &mut rng, 200, |_| None);
    // A short one, a long one (overflow pages) and one in the middle of a page.
    let victims = [3u64, 100, 101, 177];
    for &v in &victims {
        assert_present(&db, &captured[v as usize]);
    }
    for &v in &victims {
        let e = t.erase(1, &id(v)).unwrap();
        assert_eq!(
            e,
            Erasure {
                erased: 1,
                wal_cleared: true
            }
        );
    }
    for &v in &victims {
        assert_erased(&db, &captured[v as usize]);
        assert!(t.get(T0, 1, &id(v)).unwrap().is_none());
    }
    // Erasing again erases nothing.
    assert_eq!(t.erase(1, &id(3)).unwrap().erased, 0);
    // Every other message still reads, in order, with its body.
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = t.list(T0, 1, after, 64).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        seen.extend(page);
    }
    let expected: Vec<u64> = (0..200).filter(|n| !victims.contains(n)).collect();
    assert_eq!(seen.len(), expected.len());
    for (entry, &n) in seen.iter().zip(&expected) {
        assert_eq!(entry.id, id(n));
        assert_eq!(entry.body.as_bytes(), body(n).as_slice());
    }
    // And after closing and reopening.
    drop(t);
    drop(records);
    for &v in &victims {
        assert_erased(&db, &captured[v as usize]);
    }
    let t = open(&db, SLOT);
    assert_eq!(t.len().unwrap(), 196);
    assert!(t.get(T0, 1, &id(3)).unwrap().is_none());
    assert_eq!(
        t.get(T0, 1, &id(4)).unwrap().unwrap().body.as_bytes(),
        body(4).as_slice()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn expired_messages_erased_by_erase_expired_leave_no_trace() {
    let dir = scratch("expired");
    let db = dir.join("app.db");
    let mut t = open(&db, SLOT);
    let mut rng = CapturingRng::new(2);
    let minute = |n: u64| T0.saturating_add(Duration::from_mins(n));
    // Every third message expires after 1 + n % 4 minutes.
    let expiry = move |n: u64| n.is_multiple_of(3).then(|| minute(1 + n % 4));
    let captured = fill(&db, &mut t, &mut rng, 60, expiry);
    let now = minute(3);
    let due: Vec<u64> = (0..60)
        .filter(|&n| expiry(n).is_some_and(|e| e <= now))
        .collect();
    assert!(due.len() >= 10);
    // Reads stop returning an expired message even before it is erased.
    assert!(t.get(now, 1, &id(due[0])).unwrap().is_none());
    let e = t.erase_expired(now).unwrap();
    assert_eq!(
        e,
        Erasure {
            erased: due.len(),
            wal_cleared: true
        }
    );
    for &n in &due {
        assert_erased(&db, &captured[n as usize]);
    }
    // The rest still read (those expiring later included, until they expire).
    let left = t.list(now, 1, None, 128).unwrap();
    assert_eq!(left.len(), 60 - due.len());
    assert!(left.iter().all(|e| !due.contains(&(e.seq - 1))));
    assert_eq!(t.erase_expired(now).unwrap().erased, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_erased_conversation_leaves_no_trace() {
    let dir = scratch("conversation");
    let db = dir.join("app.db");
    let mut t = open(&db, SLOT);
    let mut rng = CapturingRng::new(3);
    let mut in_two = Vec::new();
    for n in 0..40 {
        let b = body(n);
        let conversation = 1 + n % 2;
        let mark = rng.drawn.len();
        let seq = t
            .put(&mut rng, T0, &message(conversation, n, &b, None))
            .unwrap();
        if conversation == 2 {
            let raw_key = rng.since(mark)[..32].to_vec();
            in_two.push(capture(&db, seq, n, &raw_key));
        }
    }
    assert_eq!(t.erase_conversation(2).unwrap().erased, 20);
    for c in &in_two {
        assert_erased(&db, c);
        assert!(t.get(T0, 2, &id(c.n)).unwrap().is_none());
    }
    assert_eq!(t.list(T0, 1, None, 128).unwrap().len(), 20);
    assert!(t.list(T0, 2, None, 128).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Copies the database and its log as they are on disk now: what a power cut leaves.
fn crash_image(db: &Path, to: &Path) {
    for suffix in ["", "-wal"] {
        let from = format!("{}{suffix}", db.display());
        if Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{suffix}", to.display())).unwrap();
        }
    }
}

#[test]
fn a_crash_between_the_erasure_and_the_checkpoint_is_completed_at_the_next_open() {
    let dir = scratch("crash");
    let db = dir.join("app.db");
    let mut t = open(&db, SLOT);
    let mut rng = CapturingRng::new(4);
    let captured = fill(&db, &mut t, &mut rng, 30, |_| None);
    // Erase without the checkpoint, then "crash" (copy the files as they are).
    t.set_wal_clearing(WalClearing::Manual);
    assert_eq!(
        t.erase(1, &id(7)).unwrap(),
        Erasure {
            erased: 1,
            wal_cleared: false
        }
    );
    let image = dir.join("crashed.db");
    crash_image(&db, &image);
    // Before the checkpoint an old copy survives somewhere: that is why the store clears the log.
    let c = &captured[7];
    assert!(
        !pieces_found(&image, &c.wrapped_key, 16).is_empty()
            || !pieces_found(&image, &c.sealed_body, 32).is_empty(),
        "without the checkpoint an old copy of the erased row is still in the files"
    );
    // Reopening the crashed files completes the erasure.
    let reopened = open(&image, SLOT);
    assert_erased(&image, c);
    assert!(reopened.get(T0, 1, &id(7)).unwrap().is_none());
    assert_eq!(reopened.len().unwrap(), 29);
    assert_eq!(row_counts(&image), (29, 29));
    // The live store clears its log on demand too.
    assert!(t.clear_wal().unwrap());
    assert_erased(&db, c);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_crash_in_the_middle_of_a_write_leaves_a_consistent_store() {
    let dir = scratch("midway");
    let db = dir.join("app.db");
    let mut t = open(&db, SLOT);
    let mut rng = CapturingRng::new(5);
    let _ = fill(&db, &mut t, &mut rng, 10, |_| None);
    // Another writer is half-way through a put (a key row without its message, a counter
    // moved) when the power goes.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT INTO confide_message_keys (account, seq, wrapped) VALUES (x'636c69656e74', 99, x'00');
         UPDATE confide_transcript_accounts SET next_seq = 100;",
    )
    .unwrap();
    let image = dir.join("crashed.db");
    crash_image(&db, &image);
    drop(conn);
    let mut reopened = open(&image, SLOT);
    assert_eq!(row_counts(&image), (10, 10));
    assert_eq!(reopened.list(T0, 1, None, 128).unwrap().len(), 10);
    // It goes on from where the last commit left it.
    let b = body(10);
    assert_eq!(
        reopened
            .put(&mut rng, T0, &message(1, 10, &b, None))
            .unwrap(),
        11
    );
    let _ = std::fs::remove_dir_all(&dir);
}
