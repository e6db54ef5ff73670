//! Shared by the message store's tests: a random source that remembers what it drew (so a
//! test knows a message's raw key), scratch database files, and searches of their raw bytes.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use chacha20::ChaCha20Rng;
use confide::{MessageId, Party, StorageKey};
use confide_crypto::Timestamp;
use confide_store::{NewMessage, Transcript};
use rand_core::{SeedableRng, TryCryptoRng, TryRng};

/// The time the tests start at.
pub const T0: Timestamp = Timestamp::from_millis(1_767_000_000_000);

/// `ChaCha20Rng::from_seed([seed; 32])` that keeps every byte it hands out.
pub struct CapturingRng {
    rng: ChaCha20Rng,
    pub drawn: Vec<u8>,
}

impl CapturingRng {
    pub fn new(seed: u8) -> Self {
        Self {
            rng: ChaCha20Rng::from_seed([seed; 32]),
            drawn: Vec::new(),
        }
    }

    /// The bytes drawn since `mark` (a previous `drawn.len()`).
    pub fn since(&self, mark: usize) -> &[u8] {
        &self.drawn[mark..]
    }
}

impl TryRng for CapturingRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        panic!("the store draws bytes only")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        panic!("the store draws bytes only")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.rng.try_fill_bytes(dst)?;
        self.drawn.extend_from_slice(dst);
        Ok(())
    }
}

impl TryCryptoRng for CapturingRng {}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("confide-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The database file and its companions (`-wal`, `-shm`), those that exist, with their bytes.
pub fn files(db: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let path = format!("{}{suffix}", db.display());
            std::fs::read(&path).ok().map(|bytes| (path, bytes))
        })
        .collect()
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(hay, needle).is_some()
}

/// Every `chunk`-byte piece of `secret` (at offsets 0, chunk, 2 chunk, ...) found in any of
/// the files, with the file's name. A large value is split over several pages (overflow
/// pages), so pieces, not the whole, are what a leftover copy would show.
pub fn pieces_found(db: &Path, secret: &[u8], chunk: usize) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (name, bytes) in files(db) {
        for (i, piece) in secret.chunks_exact(chunk).enumerate() {
            if contains(&bytes, piece) {
                found.push((name.clone(), i * chunk));
            }
        }
    }
    found
}

pub fn assert_gone(db: &Path, secret: &[u8], chunk: usize, what: &str) {
    let found = pieces_found(db, secret, chunk);
    assert!(found.is_empty(), "{what} still in the files: {found:?}");
}

pub fn key() -> StorageKey {
    StorageKey::new([0x42; 32])
}

pub fn id(n: u64) -> MessageId {
    let mut b = [0xA0; 16];
    b[8..].copy_from_slice(&n.to_be_bytes());
    MessageId::from_bytes(b)
}

/// A message of conversation `conversation` with id `id(n)`, sent at `T0 + n` seconds.
pub fn message<'a>(
    conversation: u64,
    n: u64,
    body: &'a [u8],
    expires_at: Option<Timestamp>,
) -> NewMessage<'a> {
    NewMessage {
        conversation,
        id: id(n),
        from: if n.is_multiple_of(2) {
            Party::Us
        } else {
            Party::Peer
        },
        sent_at: Timestamp::from_millis(T0.as_millis() + n * 1000),
        expires_at,
        body,
    }
}

/// The two stored blobs of the row at `seq`, read through a second connection.
pub fn stored_blobs(db: &Path, slot: &[u8], seq: u64) -> (Vec<u8>, Vec<u8>) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let seq = i64::try_from(seq).unwrap();
    let wrapped: Vec<u8> = conn
        .query_row(
            "SELECT wrapped FROM confide_message_keys WHERE account = ?1 AND seq = ?2",
            rusqlite::params![slot, seq],
            |r| r.get(0),
        )
        .unwrap();
    let body: Vec<u8> = conn
        .query_row(
            "SELECT body FROM confide_messages WHERE account = ?1 AND seq = ?2",
            rusqlite::params![slot, seq],
            |r| r.get(0),
        )
        .unwrap();
    (wrapped, body)
}

/// Rows in the key table and in the message table (they must always match).
pub fn row_counts(db: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let keys = conn
        .query_row("SELECT count(*) FROM confide_message_keys", [], |r| {
            r.get(0)
        })
        .unwrap();
    let messages = conn
        .query_row("SELECT count(*) FROM confide_messages", [], |r| r.get(0))
        .unwrap();
    (keys, messages)
}

pub fn open(db: &Path, slot: &[u8]) -> Transcript {
    Transcript::open(db, slot, &key()).unwrap()
}
