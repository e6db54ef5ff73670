//! The message store's contract: what it keeps and returns, what it refuses (a wrong storage
//! key, a moved or modified row, a duplicate, an expired message), that a refused write
//! changes nothing, the migration of a version-1 file, and a model-based property test of
//! put / erase / list sequences.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use common::{CapturingRng, T0, id, key, message, open, row_counts, scratch};
use confide::{MessageId, Party, StorageKey};
use confide_crypto::{Duration, Timestamp};
use confide_store::row::MAX_BODY_LEN;
use confide_store::{
    MAX_PAGE_LEN, MAX_STORED_TIME, NewMessage, RowError, SQLITE_SCHEMA_VERSION, SqliteStore, Store,
    Transcript, TranscriptError,
};
use proptest::prelude::*;

#[test]
fn a_wrong_storage_key_does_not_open_the_store() {
    let dir = scratch("wrong-key");
    let db = dir.join("app.db");
    let mut t = open(&db, b"a");
    t.put(
        &mut CapturingRng::new(1),
        T0,
        &message(1, 1, b"hello", None),
    )
    .unwrap();
    drop(t);
    let other = StorageKey::new([0x43; 32]);
    assert!(matches!(
        Transcript::open(&db, b"a", &other),
        Err(TranscriptError::WrongKey)
    ));
    // Another account in the same file has its own key.
    let b = Transcript::open(&db, b"b", &other).unwrap();
    assert!(b.is_empty().unwrap());
    assert!(b.get(T0, 1, &id(1)).unwrap().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_row_moved_to_another_message_or_modified_does_not_open() {
    let dir = scratch("swap");
    let db = dir.join("app.db");
    let mut t = open(&db, b"a");
    let mut rng = CapturingRng::new(2);
    for n in 1..=3 {
        t.put(
            &mut rng,
            T0,
            &message(1, n, format!("text {n}").as_bytes(), None),
        )
        .unwrap();
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    // Message 2's body in message 1's row: the key unwraps, the body does not open.
    conn.execute_batch(
        "UPDATE confide_messages SET body = (SELECT body FROM confide_messages WHERE seq = 2) WHERE seq = 1",
    )
    .unwrap();
    assert!(matches!(
        t.get(T0, 1, &id(1)),
        Err(TranscriptError::Row(RowError::BodyRefused))
    ));
    // Message 3's whole row (key and body) under message 2's id: the key does not unwrap.
    conn.execute_batch(
        "UPDATE confide_message_keys SET wrapped = (SELECT wrapped FROM confide_message_keys WHERE seq = 3) WHERE seq = 2;
         UPDATE confide_messages SET body = (SELECT body FROM confide_messages WHERE seq = 3) WHERE seq = 2;",
    )
    .unwrap();
    assert!(matches!(
        t.get(T0, 1, &id(2)),
        Err(TranscriptError::Row(RowError::KeyRefused))
    ));
    // Message 3 moved to another conversation, or given a later expiry: refused.
    conn.execute_batch("UPDATE confide_messages SET conversation = 9 WHERE seq = 3")
        .unwrap();
    assert!(matches!(
        t.list(T0, 9, None, 10),
        Err(TranscriptError::Row(RowError::KeyRefused))
    ));
    conn.execute_batch(
        "UPDATE confide_messages SET conversation = 1, expires_at = 9000000000000 WHERE seq = 3",
    )
    .unwrap();
    assert!(matches!(
        t.get(T0, 1, &id(3)),
        Err(TranscriptError::Row(RowError::KeyRefused))
    ));
    conn.execute_batch("UPDATE confide_messages SET expires_at = NULL WHERE seq = 3")
        .unwrap();
    assert_eq!(
        t.get(T0, 1, &id(3)).unwrap().unwrap().body.as_bytes(),
        b"text 3"
    );
    // A wrapped key of another version, or truncated: typed errors.
    conn.execute_batch(
        "UPDATE confide_message_keys SET wrapped = CAST(x'02' || substr(wrapped, 2) AS BLOB) WHERE seq = 3",
    )
    .unwrap();
    assert!(matches!(
        t.get(T0, 1, &id(3)),
        Err(TranscriptError::Row(RowError::UnknownVersion(2)))
    ));
    conn.execute_batch(
        "UPDATE confide_message_keys SET wrapped = substr(wrapped, 1, 80) WHERE seq = 3",
    )
    .unwrap();
    assert!(matches!(
        t.get(T0, 1, &id(3)),
        Err(TranscriptError::Row(RowError::Length))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn entries_come_back_as_stored_in_order_and_paged() {
    let mut t = Transcript::open_in_memory(b"a", &key()).unwrap();
    let mut rng = CapturingRng::new(3);
    for n in 0..10 {
        let seq = t
            .put(
                &mut rng,
                T0,
                &message(5, n, format!("m{n}").as_bytes(), None),
            )
            .unwrap();
        assert_eq!(seq, n + 1);
    }
    let first = t.list(T0, 5, None, 4).unwrap();
    let second = t.list(T0, 5, Some(first[3].seq), 4).unwrap();
    let all: Vec<_> = first.iter().chain(&second).collect();
    for (n, e) in all.iter().enumerate() {
        let n = n as u64;
        assert_eq!(e.id, id(n));
        assert_eq!(e.body.as_bytes(), format!("m{n}").as_bytes());
        assert_eq!(
            e.from,
            if n.is_multiple_of(2) {
                Party::Us
            } else {
                Party::Peer
            }
        );
        assert_eq!(e.sent_at, Timestamp::from_millis(T0.as_millis() + n * 1000));
        assert_eq!(e.expires_at, None);
    }
    assert!(t.list(T0, 4, None, 4).unwrap().is_empty());
    assert!(matches!(
        t.list(T0, 5, None, MAX_PAGE_LEN + 1),
        Err(TranscriptError::PageTooLong { .. })
    ));
}

#[test]
fn a_refused_write_changes_nothing() {
    let dir = scratch("refused");
    let db = dir.join("app.db");
    let mut t = open(&db, b"a");
    let mut rng = CapturingRng::new(4);
    t.put(&mut rng, T0, &message(1, 1, b"one", None)).unwrap();
    assert!(t.clear_wal().unwrap());
    let before = std::fs::read(&db).unwrap();
    // The same id again, an expired message, a body too long, a time out of range.
    assert!(matches!(
        t.put(&mut rng, T0, &message(1, 1, b"again", None)),
        Err(TranscriptError::Duplicate)
    ));
    assert!(matches!(
        t.put(&mut rng, T0, &message(1, 2, b"late", Some(T0))),
        Err(TranscriptError::AlreadyExpired)
    ));
    let long = vec![0u8; MAX_BODY_LEN + 1];
    assert!(matches!(
        t.put(&mut rng, T0, &message(1, 3, &long, None)),
        Err(TranscriptError::Row(RowError::BodyTooLong { .. }))
    ));
    let mut far = message(1, 4, b"far", None);
    far.sent_at = Timestamp::from_millis(MAX_STORED_TIME.as_millis() + 1);
    assert!(matches!(
        t.put(&mut rng, T0, &far),
        Err(TranscriptError::TimeOutOfRange)
    ));
    assert!(t.clear_wal().unwrap());
    assert!(
        std::fs::read(&db).unwrap() == before,
        "the file is unchanged"
    );
    assert_eq!(row_counts(&db), (1, 1));
    // The same id in another conversation is another message; the sequence went on from 1.
    assert_eq!(
        t.put(&mut rng, T0, &message(2, 1, b"two", None)).unwrap(),
        2
    );
    // A body of exactly the maximum is kept.
    let max = vec![7u8; MAX_BODY_LEN];
    t.put(&mut rng, T0, &message(1, 5, &max, None)).unwrap();
    assert_eq!(
        t.get(T0, 1, &id(5)).unwrap().unwrap().body.len(),
        MAX_BODY_LEN
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_version_1_file_is_migrated_with_its_records_and_a_newer_one_refused() {
    let dir = scratch("migrate");
    let db = dir.join("app.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE confide_records (account BLOB NOT NULL, key BLOB NOT NULL,
                 value BLOB NOT NULL, PRIMARY KEY (account, key)) WITHOUT ROWID;
             INSERT INTO confide_records VALUES (x'61', x'01', x'deadbeef');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let mut t = open(&db, b"a");
    t.put(&mut CapturingRng::new(5), T0, &message(1, 1, b"hi", None))
        .unwrap();
    let records = SqliteStore::open(&db, b"a").unwrap();
    assert_eq!(
        records.records().unwrap(),
        vec![(vec![1], vec![0xde, 0xad, 0xbe, 0xef])]
    );
    let version: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SQLITE_SCHEMA_VERSION);
    drop((t, records));
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 3")
        .unwrap();
    assert!(matches!(
        Transcript::open(&db, b"a", &key()),
        Err(TranscriptError::UnknownSchema {
            found: 3,
            supported: 2
        })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debug_output_shows_no_secret_or_content() {
    let mut t = Transcript::open_in_memory(b"secret-account", &key()).unwrap();
    t.put(
        &mut CapturingRng::new(6),
        T0,
        &message(1, 1, b"very private", None),
    )
    .unwrap();
    let entry = t.get(T0, 1, &id(1)).unwrap().unwrap();
    let keys = confide_store::row::TranscriptKeys::derive(&key(), b"secret-account").unwrap();
    let new = message(1, 2, b"very private", None);
    for shown in [
        format!("{t:?}"),
        format!("{entry:?}"),
        format!("{new:?}"),
        format!("{keys:?}"),
        format!("{:?}", keys.tag(1, &id(1))),
    ] {
        assert!(!shown.contains("private"), "{shown}");
        assert!(!shown.contains("secret-account"), "{shown}");
        assert!(!shown.to_lowercase().contains("4242"), "{shown}");
    }
    // Errors name no id, conversation or content.
    let e = t.put(
        &mut CapturingRng::new(6),
        T0,
        &message(1, 1, b"very private", None),
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "the conversation already holds a message with this id"
    );
}

// ---- Model-based property test ----

#[derive(Debug, Clone)]
enum Op {
    Put {
        conversation: u64,
        n: u64,
        len: usize,
        ttl_minutes: Option<u64>,
    },
    Erase {
        conversation: u64,
        n: u64,
    },
    EraseConversation(u64),
    EraseExpired,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u64, 0..8u64, 0..300usize, proptest::option::of(0..5u64)).prop_map(
            |(conversation, n, len, ttl_minutes)| Op::Put { conversation, n, len, ttl_minutes }
        ),
        2 => (0..3u64, 0..8u64).prop_map(|(conversation, n)| Op::Erase { conversation, n }),
        1 => (0..3u64).prop_map(Op::EraseConversation),
        1 => Just(Op::EraseExpired),
        1 => (0..4u64).prop_map(Op::Advance),
    ]
}

/// What the model keeps of a message.
#[derive(Debug, Clone, PartialEq)]
struct Kept {
    seq: u64,
    id: MessageId,
    body: Vec<u8>,
    expires_at: Option<Timestamp>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn put_erase_and_list_follow_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut t = Transcript::open_in_memory(b"model", &key()).unwrap();
        let mut rng = CapturingRng::new(9);
        let mut model: BTreeMap<(u64, u64), Kept> = BTreeMap::new();
        let mut next_seq = 1;
        let mut now = T0;
        for op in ops {
            match op {
                Op::Put { conversation, n, len, ttl_minutes } => {
                    let body = vec![u8::try_from(n).unwrap(); len];
                    let expires_at = ttl_minutes.map(|m| now.saturating_add(Duration::from_mins(m)));
                    let result = t.put(&mut rng, now, &NewMessage {
                        conversation, id: id(n), from: Party::Peer, sent_at: now, expires_at, body: &body,
                    });
                    if expires_at.is_some_and(|e| e <= now) {
                        prop_assert!(matches!(result, Err(TranscriptError::AlreadyExpired)));
                    } else {
                        match model.entry((conversation, n)) {
                            Entry::Occupied(_) => {
                                prop_assert!(matches!(result, Err(TranscriptError::Duplicate)));
                            }
                            Entry::Vacant(slot) => {
                                prop_assert_eq!(result.unwrap(), next_seq);
                                slot.insert(Kept { seq: next_seq, id: id(n), body, expires_at });
                                next_seq += 1;
                            }
                        }
                    }
                }
                Op::Erase { conversation, n } => {
                    let erased = t.erase(conversation, &id(n)).unwrap().erased;
                    prop_assert_eq!(erased, usize::from(model.remove(&(conversation, n)).is_some()));
                }
                Op::EraseConversation(c) => {
                    let before = model.len();
                    model.retain(|(conversation, _), _| *conversation != c);
                    prop_assert_eq!(t.erase_conversation(c).unwrap().erased, before - model.len());
                }
                Op::EraseExpired => {
                    let before = model.len();
                    model.retain(|_, k| k.expires_at.is_none_or(|e| e > now));
                    prop_assert_eq!(t.erase_expired(now).unwrap().erased, before - model.len());
                }
                Op::Advance(minutes) => now = now.saturating_add(Duration::from_mins(minutes)),
            }
            prop_assert_eq!(t.len().unwrap(), model.len());
            for c in 0..3 {
                let mut expected: Vec<&Kept> = model
                    .iter()
                    .filter(|((conversation, _), k)| *conversation == c && k.expires_at.is_none_or(|e| e > now))
                    .map(|(_, k)| k)
                    .collect();
                expected.sort_by_key(|k| k.seq);
                let listed = t.list(now, c, None, MAX_PAGE_LEN).unwrap();
                prop_assert_eq!(listed.len(), expected.len());
                for (e, k) in listed.iter().zip(expected) {
                    prop_assert_eq!(e.seq, k.seq);
                    prop_assert_eq!(e.id, k.id);
                    prop_assert_eq!(e.body.as_bytes(), k.body.as_slice());
                    prop_assert_eq!(e.expires_at, k.expires_at);
                }
            }
        }
    }
}
