//! The encrypted message store: the transcript an app shows, in the same SQLite file as the
//! records, each message under its own key (`docs/store.md`).

use std::path::Path;

use confide::{MessageId, Party, StorageKey};
use confide_crypto::{CryptoRng, Timestamp};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;

use crate::row::{
    ROW_TAG_LEN, RowError, RowHeader, RowTag, TranscriptEntry, TranscriptKeys, open_row, seal_row,
};
use crate::schema::{SQLITE_SCHEMA_VERSION, SchemaError, prepare};

/// Most entries one [`Transcript::list`] call returns.
///
/// Reason: a page is decrypted into memory at once; 128 bodies of at most
/// [`MAX_BODY_LEN`](crate::row::MAX_BODY_LEN) bound it to 16 MiB, and a screen shows far fewer.
pub const MAX_PAGE_LEN: usize = 128;

/// The latest time the store can keep: `2^63 - 1` ms (SQLite integers are signed 64-bit; that
/// is 292 million years after 1970). A later `sent_at` or `expires_at` is refused; pass no
/// expiry (`None`) for a message that does not expire.
pub const MAX_STORED_TIME: Timestamp = Timestamp::from_millis(i64::MAX.unsigned_abs());

/// Why the message store failed. Carries SQLite's error, lengths and versions: never a body,
/// a key, a message id or a conversation.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TranscriptError {
    /// SQLite failed (cannot open, disk full, busy beyond the timeout, corrupt file).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer version of this crate.
    #[error("database schema version {found} is newer than this crate's {supported}")]
    UnknownSchema {
        /// The database's version.
        found: i64,
        /// The newest this crate reads.
        supported: i64,
    },
    /// The storage key is not the one the account's message store was created with.
    #[error("the storage key does not open this account's message store")]
    WrongKey,
    /// A row could not be sealed or did not open (moved, modified, or too long).
    #[error("message row refused: {0}")]
    Row(#[from] RowError),
    /// The conversation already holds a message with this id; nothing was stored.
    #[error("the conversation already holds a message with this id")]
    Duplicate,
    /// The message's expiry is not after `now`; nothing was stored.
    #[error("the message has already expired")]
    AlreadyExpired,
    /// A time after [`MAX_STORED_TIME`].
    #[error("a time beyond the storable range")]
    TimeOutOfRange,
    /// A page longer than [`MAX_PAGE_LEN`] was asked for.
    #[error("page of {requested} entries exceeds the maximum {max}")]
    PageTooLong {
        /// The page length asked for.
        requested: usize,
        /// The maximum.
        max: usize,
    },
    /// A stored value is out of its domain (a negative number, a tag of the wrong length, an
    /// account without its key check): the file was modified outside this crate.
    #[error("the message store is inconsistent ({0})")]
    Inconsistent(&'static str),
}

impl From<SchemaError> for TranscriptError {
    fn from(e: SchemaError) -> Self {
        match e {
            SchemaError::Sqlite(e) => Self::Sqlite(e),
            SchemaError::Newer(found) => Self::UnknownSchema {
                found,
                supported: SQLITE_SCHEMA_VERSION,
            },
        }
    }
}

/// A message to store. `Debug` shows the body's length only.
#[derive(Clone, Copy)]
pub struct NewMessage<'a> {
    /// The conversation: [`ConversationId::as_u64`](confide::ConversationId::as_u64), or any
    /// number the app groups messages by.
    pub conversation: u64,
    /// The message id ([`Event::Message`](confide::Event::Message)'s, or the one
    /// [`Endpoint::send`](confide::Endpoint::send) returned); unique within the conversation.
    pub id: MessageId,
    /// Who wrote it.
    pub from: Party,
    /// When the sender says it sent it.
    pub sent_at: Timestamp,
    /// When it expires, if it does ([`Transcript::erase_expired`] erases it from then on, and
    /// reads stop returning it).
    pub expires_at: Option<Timestamp>,
    /// The text.
    pub body: &'a [u8],
}

impl core::fmt::Debug for NewMessage<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            conversation,
            id,
            from,
            sent_at,
            expires_at,
            body,
        } = self;
        f.debug_struct("NewMessage")
            .field("conversation", conversation)
            .field("id", id)
            .field("from", from)
            .field("sent_at", sent_at)
            .field("expires_at", expires_at)
            .field("body_len", &body.len())
            .finish()
    }
}

/// When the message store clears the write-ahead log after an erasure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WalClearing {
    /// After every erasing call (the default): when it returns, no copy of an erased row is
    /// left in the log.
    #[default]
    AfterEachErasure,
    /// Only when the app calls [`Transcript::clear_wal`] (to erase many messages with one
    /// checkpoint). Until then the log may still hold the erased rows' old pages.
    Manual,
}

/// What an erasing call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Erasure {
    /// How many messages were erased.
    pub erased: usize,
    /// Whether the write-ahead log was checkpointed and truncated afterwards (so no old page
    /// of an erased row survives in it). `false` under [`WalClearing::Manual`], when another
    /// connection kept reading past the busy timeout, or when the checkpoint failed: call
    /// [`Transcript::clear_wal`] again later (it returns the error, if any).
    pub wal_cleared: bool,
}

/// The encrypted message store of one account: the transcript an app shows, kept in the same
/// SQLite file as the [`SqliteStore`](crate::SqliteStore) records (its own connection and
/// tables). Optional: an app that shows no history does not open it.
///
/// Each message is sealed under its own random key; that key is wrapped under a key derived
/// from the app's storage key and kept in a separate table. Erasing a message deletes both
/// rows (`secure_delete` zeroes them in the file), then checkpoints and truncates the
/// write-ahead log, so the erased message cannot be recovered from the database file, its
/// free pages or its log, even with the storage key. What this does not cover (file-system
/// and flash remanence, backups, copies the app made) is in `docs/store.md`.
///
/// Nothing here reads the clock or the operating system's random source: `now` and the RNG
/// are passed in.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use confide::{MessageId, Party, StorageKey};
/// use confide_crypto::{Duration, Timestamp};
/// use confide_store::{NewMessage, Transcript};
/// use rand_core::SeedableRng;
///
/// let mut rng = chacha20::ChaCha20Rng::from_seed([1; 32]);
/// let key = StorageKey::new([7; 32]);
/// // An app opens it on its database file: `Transcript::open("confide.db", b"account", &key)`.
/// let mut transcript = Transcript::open_in_memory(b"account", &key)?;
/// let now = Timestamp::from_millis(1_767_000_000_000);
/// let id = MessageId::from_bytes([9; 16]);
/// transcript.put(&mut rng, now, &NewMessage {
///     conversation: 1,
///     id,
///     from: Party::Peer,
///     sent_at: now,
///     expires_at: Some(now.saturating_add(Duration::from_mins(10))),
///     body: b"see you tomorrow",
/// })?;
/// assert_eq!(transcript.list(now, 1, None, 20)?[0].body.as_bytes(), b"see you tomorrow");
/// // Ten minutes later (or on `Event::Expired`): erased, key and all.
/// let later = now.saturating_add(Duration::from_mins(10));
/// assert_eq!(transcript.erase_expired(later)?.erased, 1);
/// assert!(transcript.get(now, 1, &id)?.is_none());
/// # Ok(())
/// # }
/// ```
///
/// `Debug` prints nothing about the account.
pub struct Transcript {
    conn: Connection,
    keys: TranscriptKeys,
    clearing: WalClearing,
}

impl core::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            conn: _,
            keys: _,
            clearing,
        } = self;
        f.debug_struct("Transcript")
            .field("clearing", clearing)
            .finish_non_exhaustive()
    }
}

/// SQLite's signed integer for a conversation number (the same 64 bits).
fn conversation_column(conversation: u64) -> i64 {
    i64::from_be_bytes(conversation.to_be_bytes())
}

fn time_column(t: Timestamp) -> Result<i64, TranscriptError> {
    i64::try_from(t.as_millis()).map_err(|_| TranscriptError::TimeOutOfRange)
}

fn time_from_column(v: i64) -> Result<Timestamp, TranscriptError> {
    u64::try_from(v)
        .map(Timestamp::from_millis)
        .map_err(|_| TranscriptError::Inconsistent("negative time"))
}

fn seq_column(seq: u64) -> Result<i64, TranscriptError> {
    i64::try_from(seq).map_err(|_| TranscriptError::Inconsistent("sequence exhausted"))
}

/// `now` as a column value: a time beyond the range compares after every stored one.
fn now_column(now: Timestamp) -> i64 {
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// One row as read from SQLite, before it is opened.
struct StoredRow {
    seq: i64,
    conversation: i64,
    tag: Vec<u8>,
    sent_at: i64,
    expires_at: Option<i64>,
    body: Vec<u8>,
    wrapped: Vec<u8>,
}

const SELECT_ROW: &str = "SELECT m.seq, m.conversation, m.tag, m.sent_at, m.expires_at, m.body, \
     k.wrapped FROM confide_messages m JOIN confide_message_keys k \
     ON k.account = m.account AND k.seq = m.seq";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        seq: r.get(0)?,
        conversation: r.get(1)?,
        tag: r.get(2)?,
        sent_at: r.get(3)?,
        expires_at: r.get(4)?,
        body: r.get(5)?,
        wrapped: r.get(6)?,
    })
}

impl StoredRow {
    fn open(&self, keys: &TranscriptKeys) -> Result<TranscriptEntry, TranscriptError> {
        let tag: [u8; ROW_TAG_LEN] = self
            .tag
            .as_slice()
            .try_into()
            .map_err(|_| TranscriptError::Inconsistent("tag length"))?;
        let header = RowHeader {
            conversation: u64::from_be_bytes(self.conversation.to_be_bytes()),
            tag: RowTag::from_bytes(tag),
            seq: u64::try_from(self.seq)
                .map_err(|_| TranscriptError::Inconsistent("negative sequence"))?,
            sent_at: time_from_column(self.sent_at)?,
            expires_at: self.expires_at.map(time_from_column).transpose()?,
        };
        Ok(open_row(keys, &header, &self.wrapped, &self.body)?)
    }
}

impl Transcript {
    /// Opens (creating if needed) the message store of the account named `slot` in the
    /// database at `path` (the file of the app's [`SqliteStore`](crate::SqliteStore)),
    /// migrating the file to schema version [`SQLITE_SCHEMA_VERSION`].
    ///
    /// The first open for an account stores a key-check value derived from `key`; a later
    /// open with another key fails with [`TranscriptError::WrongKey`]. Every open also
    /// clears the write-ahead log, so the erasures of a run that crashed before its
    /// checkpoint are completed.
    pub fn open(
        path: impl AsRef<Path>,
        slot: &[u8],
        key: &StorageKey,
    ) -> Result<Self, TranscriptError> {
        Self::with_connection(Connection::open(path)?, slot, key)
    }

    /// A message store in memory (tests; it vanishes when dropped).
    pub fn open_in_memory(slot: &[u8], key: &StorageKey) -> Result<Self, TranscriptError> {
        Self::with_connection(Connection::open_in_memory()?, slot, key)
    }

    fn with_connection(
        mut conn: Connection,
        slot: &[u8],
        key: &StorageKey,
    ) -> Result<Self, TranscriptError> {
        let keys = TranscriptKeys::derive(key, slot)?;
        prepare(&mut conn)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Option<Vec<u8>> = tx
            .query_row(
                "SELECT key_check FROM confide_transcript_accounts WHERE account = ?1",
                params![slot],
                |r| r.get(0),
            )
            .optional()?;
        match stored {
            Some(check) if keys.key_check_matches(&check) => {}
            Some(_) => return Err(TranscriptError::WrongKey),
            None => {
                tx.execute(
                    "INSERT INTO confide_transcript_accounts (account, key_check, next_seq) \
                     VALUES (?1, ?2, 1)",
                    params![slot, keys.key_check().as_slice()],
                )?;
            }
        }
        tx.commit()?;
        let mut transcript = Self {
            conn,
            keys,
            clearing: WalClearing::default(),
        };
        let _ = transcript.clear_wal()?;
        Ok(transcript)
    }

    /// Chooses when the write-ahead log is cleared after erasures.
    pub fn set_wal_clearing(&mut self, clearing: WalClearing) {
        self.clearing = clearing;
    }

    /// Stores `message` at the end of the account's transcript and returns its position
    /// (`seq`). One transaction: on any error nothing was stored.
    ///
    /// Draws 32 bytes (the message key), then 32 (the wrapping salt). Refuses a message that
    /// has already expired at `now`, a second message with the same id in the conversation,
    /// a body over [`MAX_BODY_LEN`](crate::row::MAX_BODY_LEN) and a time over
    /// [`MAX_STORED_TIME`].
    pub fn put<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        message: &NewMessage<'_>,
    ) -> Result<u64, TranscriptError> {
        if message.expires_at.is_some_and(|t| t <= now) {
            return Err(TranscriptError::AlreadyExpired);
        }
        let sent_at = time_column(message.sent_at)?;
        let expires_at = message.expires_at.map(time_column).transpose()?;
        let tag = self.keys.tag(message.conversation, &message.id);
        let slot = self.keys.slot();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let next: i64 = tx
            .query_row(
                "SELECT next_seq FROM confide_transcript_accounts WHERE account = ?1",
                params![slot],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(TranscriptError::Inconsistent("account missing"))?;
        let seq =
            u64::try_from(next).map_err(|_| TranscriptError::Inconsistent("negative sequence"))?;
        let after = seq_column(seq.saturating_add(1))?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM confide_messages WHERE account = ?1 AND tag = ?2",
                params![slot, tag.to_bytes().as_slice()],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Err(TranscriptError::Duplicate);
        }
        let header = RowHeader {
            conversation: message.conversation,
            tag,
            seq,
            sent_at: message.sent_at,
            expires_at: message.expires_at,
        };
        let sealed = seal_row(
            rng,
            &self.keys,
            &header,
            &message.id,
            message.from,
            message.body,
        )?;
        tx.execute(
            "INSERT INTO confide_message_keys (account, seq, wrapped) VALUES (?1, ?2, ?3)",
            params![slot, next, sealed.wrapped_key],
        )?;
        tx.execute(
            "INSERT INTO confide_messages \
             (account, seq, conversation, tag, sent_at, expires_at, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                slot,
                next,
                conversation_column(message.conversation),
                tag.to_bytes().as_slice(),
                sent_at,
                expires_at,
                sealed.sealed_body
            ],
        )?;
        tx.execute(
            "UPDATE confide_transcript_accounts SET next_seq = ?2 WHERE account = ?1",
            params![slot, after],
        )?;
        tx.commit()?;
        Ok(seq)
    }

    /// Message `id` of `conversation`, unless it is absent, erased or expired at `now`.
    pub fn get(
        &self,
        now: Timestamp,
        conversation: u64,
        id: &MessageId,
    ) -> Result<Option<TranscriptEntry>, TranscriptError> {
        let tag = self.keys.tag(conversation, id);
        let row = self
            .conn
            .query_row(
                &format!(
                    "{SELECT_ROW} WHERE m.account = ?1 AND m.tag = ?2 \
                     AND (m.expires_at IS NULL OR m.expires_at > ?3)"
                ),
                params![self.keys.slot(), tag.to_bytes().as_slice(), now_column(now)],
                read_row,
            )
            .optional()?;
        row.map(|r| r.open(&self.keys)).transpose()
    }

    /// Up to `limit` messages of `conversation` in the order they were stored, starting after
    /// position `after` (`None`: from the first), skipping those expired at `now`. For the
    /// next page, pass the last entry's `seq`. A row that does not open fails the whole call
    /// with [`TranscriptError::Row`].
    pub fn list(
        &self,
        now: Timestamp,
        conversation: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TranscriptEntry>, TranscriptError> {
        if limit > MAX_PAGE_LEN {
            return Err(TranscriptError::PageTooLong {
                requested: limit,
                max: MAX_PAGE_LEN,
            });
        }
        let after = i64::try_from(after.unwrap_or(0)).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare(&format!(
            "{SELECT_ROW} WHERE m.account = ?1 AND m.conversation = ?2 AND m.seq > ?3 \
             AND (m.expires_at IS NULL OR m.expires_at > ?4) ORDER BY m.seq LIMIT ?5"
        ))?;
        let rows = stmt.query_map(
            params![
                self.keys.slot(),
                conversation_column(conversation),
                after,
                now_column(now),
                i64::try_from(limit).unwrap_or(0)
            ],
            read_row,
        )?;
        let mut entries = Vec::new();
        for row in rows {
            entries.push(row?.open(&self.keys)?);
        }
        Ok(entries)
    }

    /// How many messages the account's store holds (expired ones not yet erased included).
    pub fn len(&self) -> Result<usize, TranscriptError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM confide_messages WHERE account = ?1",
            params![self.keys.slot()],
            |r| r.get(0),
        )?;
        usize::try_from(n).map_err(|_| TranscriptError::Inconsistent("negative count"))
    }

    /// Whether the account's store holds no message.
    pub fn is_empty(&self) -> Result<bool, TranscriptError> {
        Ok(self.len()? == 0)
    }

    /// Erases message `id` of `conversation` (unsent, deleted or expired): its key row and
    /// its body row, in one transaction, then clears the write-ahead log. Erasing an absent
    /// message erases nothing (`erased == 0`).
    pub fn erase(&mut self, conversation: u64, id: &MessageId) -> Result<Erasure, TranscriptError> {
        let tag = self.keys.tag(conversation, id);
        self.erase_where("tag = ?2", &tag.to_bytes().as_slice())
    }

    /// Erases every message of `conversation`, in one transaction, then clears the
    /// write-ahead log once.
    pub fn erase_conversation(&mut self, conversation: u64) -> Result<Erasure, TranscriptError> {
        self.erase_where("conversation = ?2", &conversation_column(conversation))
    }

    /// Erases every message whose expiry is at or before `now`, in one transaction, then
    /// clears the write-ahead log once.
    pub fn erase_expired(&mut self, now: Timestamp) -> Result<Erasure, TranscriptError> {
        self.erase_where(
            "expires_at IS NOT NULL AND expires_at <= ?2",
            &now_column(now),
        )
    }

    /// Deletes the key rows, then the body rows, of the account's messages matching
    /// `condition` (on `confide_messages`, with `?2` bound to `value`).
    fn erase_where(
        &mut self,
        condition: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Erasure, TranscriptError> {
        let slot = self.keys.slot();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            &format!(
                "DELETE FROM confide_message_keys WHERE account = ?1 AND seq IN \
                 (SELECT seq FROM confide_messages WHERE account = ?1 AND {condition})"
            ),
            params![slot, value],
        )?;
        let erased = tx.execute(
            &format!("DELETE FROM confide_messages WHERE account = ?1 AND {condition}"),
            params![slot, value],
        )?;
        tx.commit()?;
        // The erasure is committed: a failed checkpoint is reported as `wal_cleared: false`
        // (an `Err` means that nothing changed); `clear_wal` retries it and names the error.
        let wal_cleared = match self.clearing {
            WalClearing::AfterEachErasure => self.clear_wal().unwrap_or(false),
            WalClearing::Manual => false,
        };
        Ok(Erasure {
            erased,
            wal_cleared,
        })
    }

    /// Copies the write-ahead log into the database file and truncates it to zero bytes
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`): afterwards no old page of an erased row is left
    /// in the log. Returns `false` if another connection kept a read transaction open past
    /// the busy timeout (the log was not truncated: call it again later).
    pub fn clear_wal(&mut self) -> Result<bool, TranscriptError> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }
}
