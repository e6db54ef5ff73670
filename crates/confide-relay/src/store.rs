//! The relay's storage: one trait the server calls, and its SQLite implementation.
//!
//! The server never names a database: it calls [`RelayStore`], whose every method is one
//! atomic transaction. A backend commits durably before it returns (the server sends a relay
//! receipt only after [`RelayStore::store_frame`] or [`RelayStore::put_blob`] returned), hands
//! out each one-time bundle exactly once even under concurrent callers, and never interprets
//! frames, bundles or blobs.
//!
//! Blobs are kept as a row per blob (owner, lengths, delete-token hash, creation time) and a
//! row per put (`blob_chunks`: the blob id, the position, the bytes). A put inserts its chunk
//! and advances the stored length in one transaction, so a crash never leaves bytes counted
//! that are not stored, nor stored bytes that are not counted.

use core::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use confide_wire::{Duration, Timestamp};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::protocol::{BundleKind, OWNER_KEY_LEN, VERIFIER_LEN};

/// Why a storage operation failed. Carries the kind only: never an address or content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error (I/O, corruption, full disk...).
    #[error("database error")]
    Database,
    /// The database was written by a newer schema.
    #[error("database schema version {found} is not supported (expected {expected})")]
    Schema {
        /// The version found.
        found: i64,
        /// The version this build writes.
        expected: i64,
    },
    /// A stored value has an impossible shape (wrong key length...).
    #[error("stored value is corrupt")]
    Corrupt,
    /// The database location or options are not acceptable (an unparsable URL, a schema name
    /// outside `[a-z0-9_]{1,63}`).
    #[error("invalid database configuration")]
    InvalidConfiguration,
}

impl From<rusqlite::Error> for StoreError {
    fn from(_: rusqlite::Error) -> Self {
        Self::Database
    }
}

/// A mailbox as stored: who owns it and which token it requires.
#[derive(Clone, PartialEq, Eq)]
pub struct MailboxRecord {
    /// The owner's Ed25519 public key.
    pub owner_key: [u8; OWNER_KEY_LEN],
    /// The delivery-token verifier; `None`: an open mailbox.
    pub verifier: Option<[u8; VERIFIER_LEN]>,
    /// The owner's push registration (`RegisterPush`); `None`: never pushed.
    pub push_url: Option<Vec<u8>>,
}

impl fmt::Debug for MailboxRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            owner_key: _,
            verifier,
            push_url,
        } = self;
        f.debug_struct("MailboxRecord")
            .field("has_verifier", &verifier.is_some())
            .field("has_push_url", &push_url.is_some())
            .finish_non_exhaustive()
    }
}

/// What [`RelayStore::create_mailbox`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateOutcome {
    /// A new mailbox.
    Created,
    /// The mailbox existed with this owner key (nothing changed).
    AlreadyYours,
    /// The mailbox exists with another owner key (nothing changed).
    Taken,
}

/// The per-mailbox limits [`RelayStore::store_frame`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Most undelivered frames.
    pub max_frames: u64,
    /// Most undelivered bytes.
    pub max_bytes: u64,
    /// How long a confirmed frame's digest is remembered.
    pub delivered_memory: Duration,
}

/// What [`RelayStore::store_frame`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOutcome {
    /// Committed as a new copy (or replacing an undelivered copy with another payload).
    Stored,
    /// An identical copy was already waiting: nothing changed.
    AlreadyStored,
    /// The owner confirmed an identical frame within the delivered memory: nothing stored.
    AlreadyDelivered,
    /// No mailbox at this address.
    NoSuchMailbox,
    /// The mailbox holds its maximum number of frames.
    MailboxFull,
    /// The mailbox holds its maximum number of bytes.
    MailboxBytesFull,
}

impl StoreOutcome {
    /// Whether the sender gets a relay receipt.
    #[must_use]
    pub const fn is_receipt(self) -> bool {
        matches!(
            self,
            Self::Stored | Self::AlreadyStored | Self::AlreadyDelivered
        )
    }
}

/// One stored frame, as handed to its owner.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredFrame {
    /// Position in the mailbox (increases with every stored copy).
    pub seq: i64,
    /// The encoded transport frame, as sent.
    pub frame: Vec<u8>,
}

impl fmt::Debug for StoredFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { seq, frame } = self;
        f.debug_struct("StoredFrame")
            .field("seq", seq)
            .field("len", &frame.len())
            .finish()
    }
}

/// What [`RelayStore::upload_bundles`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadOutcome {
    /// Stored; the number of one-time bundles now held.
    Stored {
        /// One-time bundles held after the upload.
        one_time: u32,
    },
    /// The upload would exceed the limit: nothing stored.
    TooMany,
}

/// What [`RelayStore::sweep`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepCounts {
    /// Undelivered frames past their retention.
    pub expired_frames: u64,
    /// Delivery records past the delivered memory.
    pub forgotten_deliveries: u64,
}

/// The blob store's limits that [`RelayStore::put_blob`] and the reads enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLimits {
    /// Most bytes (by declared total length) of one owner's blobs.
    pub max_bytes_per_owner: u64,
    /// Most bytes (by declared total length) of one owner's incomplete blobs.
    pub max_bytes_in_flight_per_owner: u64,
    /// Most blobs of one owner.
    pub max_blobs_per_owner: u64,
    /// How long a blob lives after its creation.
    pub retention: Duration,
    /// How long an incomplete blob lives after its creation.
    pub incomplete_retention: Duration,
}

impl BlobLimits {
    /// Whether a blob created at `created_at` (ms) with these lengths is still alive at `now`:
    /// younger than the retention, and complete or younger than the incomplete retention.
    pub(crate) fn alive(
        &self,
        created_at: i64,
        stored_len: u64,
        total_len: u64,
        now: Timestamp,
    ) -> bool {
        created_at >= ms(now.saturating_sub(self.retention))
            && (stored_len == total_len
                || created_at >= ms(now.saturating_sub(self.incomplete_retention)))
    }

    /// The two cut-offs (ms) for SQL: created before the first, or incomplete and created
    /// before the second, is expired.
    pub(crate) fn cutoffs(&self, now: Timestamp) -> (i64, i64) {
        (
            ms(now.saturating_sub(self.retention)),
            ms(now.saturating_sub(self.incomplete_retention)),
        )
    }
}

/// One `PutBlob`, as the store takes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlobPut<'a> {
    /// The blob's id.
    pub blob_id: &'a [u8; 16],
    /// The uploading owner's mailbox address.
    pub owner: &'a [u8],
    /// Where the bytes go (must be the stored length).
    pub offset: u64,
    /// The blob's declared whole length.
    pub total_len: u64,
    /// SHA-256 of the delete token.
    pub delete_token_hash: &'a [u8; 32],
    /// The bytes.
    pub bytes: &'a [u8],
}

impl fmt::Debug for BlobPut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            blob_id: _,
            owner: _,
            offset,
            total_len,
            delete_token_hash: _,
            bytes,
        } = self;
        f.debug_struct("BlobPut")
            .field("offset", offset)
            .field("total_len", total_len)
            .field("len", &bytes.len())
            .finish_non_exhaustive()
    }
}

/// What [`RelayStore::put_blob`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutBlobOutcome {
    /// Committed durably; the blob's stored length now.
    Stored {
        /// Bytes stored.
        stored_len: u64,
    },
    /// The offset is not the stored length (0 for a blob that does not exist): nothing
    /// stored.
    OffsetMismatch {
        /// Bytes stored.
        stored_len: u64,
    },
    /// The bytes would go past the blob's total length: nothing stored.
    TooLarge,
    /// The blob exists with another total length, delete-token hash or owner.
    Exists,
    /// Creating the blob would exceed one of the owner's quotas.
    QuotaExceeded,
}

/// How much of a live blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobState {
    /// Bytes stored.
    pub stored_len: u64,
    /// The declared whole length.
    pub total_len: u64,
}

/// What [`RelayStore::read_blob`] found.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobRead {
    /// No live blob with this id.
    NotFound,
    /// The blob's upload has not completed.
    Incomplete,
    /// The offset is past the blob's end.
    PastEnd {
        /// The blob's length.
        total_len: u64,
    },
    /// Bytes from the offset (as many as asked, or up to the blob's end).
    Data {
        /// The blob's length.
        total_len: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

impl fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("NotFound"),
            Self::Incomplete => f.write_str("Incomplete"),
            Self::PastEnd { total_len } => f
                .debug_struct("PastEnd")
                .field("total_len", total_len)
                .finish(),
            Self::Data { total_len, bytes } => f
                .debug_struct("Data")
                .field("total_len", total_len)
                .field("len", &bytes.len())
                .finish(),
        }
    }
}

/// What [`RelayStore::delete_blob`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteBlobOutcome {
    /// The blob and every stored byte of it are deleted.
    Deleted,
    /// No live blob with this id.
    NotFound,
    /// The token's hash is not the blob's: nothing deleted.
    TokenRefused,
}

/// Whether a presented delete-token hash is the stored one, in constant time.
pub(crate) fn token_hash_matches(stored: &[u8], presented: &[u8; 32]) -> bool {
    stored.len() == presented.len() && bool::from(stored.ct_eq(presented.as_slice()))
}

/// Where the relay keeps mailboxes, frames, bundles and blobs. Every method is one
/// transaction.
pub trait RelayStore: Send + Sync + 'static {
    /// Creates a mailbox unless it exists.
    fn create_mailbox(
        &self,
        address: &[u8],
        owner_key: &[u8; OWNER_KEY_LEN],
        verifier: Option<&[u8; VERIFIER_LEN]>,
        now: Timestamp,
    ) -> Result<CreateOutcome, StoreError>;

    /// The mailbox at `address`, if any.
    fn mailbox(&self, address: &[u8]) -> Result<Option<MailboxRecord>, StoreError>;

    /// Replaces the mailbox's verifier. Returns false if there is no such mailbox.
    fn set_verifier(
        &self,
        address: &[u8],
        verifier: Option<&[u8; VERIFIER_LEN]>,
    ) -> Result<bool, StoreError>;

    /// Replaces the mailbox's push registration (`None` removes it). Returns false if there
    /// is no such mailbox.
    fn set_push_url(&self, address: &[u8], push_url: Option<&[u8]>) -> Result<bool, StoreError>;

    /// Stores `frame` (whose id and payload digest the caller read) for `address`, keeping at
    /// most one copy per (mailbox, frame id), and commits durably before returning.
    #[allow(clippy::too_many_arguments)]
    fn store_frame(
        &self,
        address: &[u8],
        frame_id: &[u8; 16],
        digest: &[u8; 32],
        frame: &[u8],
        now: Timestamp,
        limits: &MailboxLimits,
    ) -> Result<StoreOutcome, StoreError>;

    /// Up to `max` frames of `address` with `seq > after`, in order.
    fn pending_frames(
        &self,
        address: &[u8],
        after: i64,
        max: usize,
    ) -> Result<Vec<StoredFrame>, StoreError>;

    /// Deletes the owner's confirmed frames and remembers their digests; returns how many
    /// were deleted (unknown ids are ignored).
    fn confirm(&self, address: &[u8], ids: &[[u8; 16]], now: Timestamp) -> Result<u64, StoreError>;

    /// Adds one-time bundles (all or none, at most `max_one_time` held) and optionally
    /// replaces the last-resort bundle.
    fn upload_bundles(
        &self,
        address: &[u8],
        one_time: &[Vec<u8>],
        last_resort: Option<&[u8]>,
        max_one_time: usize,
    ) -> Result<UploadOutcome, StoreError>;

    /// Takes a bundle of `address`: the oldest one-time bundle, deleted in the same
    /// statement (so no two callers get it), else the last-resort bundle.
    fn take_bundle(&self, address: &[u8]) -> Result<Option<(BundleKind, Vec<u8>)>, StoreError>;

    /// One-time bundles held, and whether a last-resort bundle is held.
    fn bundle_count(&self, address: &[u8]) -> Result<(u32, bool), StoreError>;

    /// Deletes frames stored before `now - undelivered_retention` and forgets delivery
    /// records older than `now - delivered_memory`.
    fn sweep(
        &self,
        now: Timestamp,
        undelivered_retention: Duration,
        delivered_memory: Duration,
    ) -> Result<SweepCounts, StoreError>;

    /// Appends `put.bytes` to the blob at exactly its stored length (creating it, within the
    /// owner's quotas, at offset 0), and commits durably before returning. An expired blob is
    /// deleted first and counts as absent.
    fn put_blob(
        &self,
        put: &BlobPut<'_>,
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<PutBlobOutcome, StoreError>;

    /// The stored and total length of a live blob.
    fn blob_status(
        &self,
        blob_id: &[u8; 16],
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<Option<BlobState>, StoreError>;

    /// Up to `max_len` bytes of a live, complete blob from `offset` (reading no more than
    /// that from the database).
    fn read_blob(
        &self,
        blob_id: &[u8; 16],
        offset: u64,
        max_len: usize,
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<BlobRead, StoreError>;

    /// Deletes a live blob and all its bytes if `SHA-256(token)` (`token_hash`) equals its
    /// delete-token hash (compared in constant time).
    fn delete_blob(
        &self,
        blob_id: &[u8; 16],
        token_hash: &[u8; 32],
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<DeleteBlobOutcome, StoreError>;

    /// Deletes every blob past its retention (or incomplete past the incomplete retention)
    /// with all its bytes; returns how many.
    fn sweep_blobs(&self, now: Timestamp, limits: &BlobLimits) -> Result<u64, StoreError>;
}

/// The schema version this build writes (`PRAGMA user_version`). Version 2 added
/// `mailboxes.push_url`, version 3 the blob store; older databases are migrated when opened.
pub const SQLITE_SCHEMA_VERSION: i64 = 3;

/// From version 1 to 2: the owner's push registration.
const MIGRATE_1_TO_2: &str = "ALTER TABLE mailboxes ADD COLUMN push_url BLOB;";

/// From version 2 to 3: the blob store (also part of [`SCHEMA`]).
const MIGRATE_2_TO_3: &str = "
CREATE TABLE blobs (
    blob_id           BLOB PRIMARY KEY,
    owner             BLOB NOT NULL,
    total_len         INTEGER NOT NULL,
    stored_len        INTEGER NOT NULL,
    delete_token_hash BLOB NOT NULL,
    created_at        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX blobs_by_owner ON blobs (owner);
CREATE INDEX blobs_by_age ON blobs (created_at);
CREATE TABLE blob_chunks (
    blob_id BLOB NOT NULL,
    pos     INTEGER NOT NULL,
    bytes   BLOB NOT NULL,
    PRIMARY KEY (blob_id, pos)
);
";

const SCHEMA: &str = "
CREATE TABLE mailboxes (
    address    BLOB PRIMARY KEY,
    owner_key  BLOB NOT NULL,
    verifier   BLOB,
    created_at INTEGER NOT NULL,
    push_url   BLOB
) WITHOUT ROWID;
CREATE TABLE frames (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    address   BLOB NOT NULL,
    frame_id  BLOB NOT NULL,
    digest    BLOB NOT NULL,
    frame     BLOB NOT NULL,
    stored_at INTEGER NOT NULL,
    UNIQUE (address, frame_id)
);
CREATE INDEX frames_by_age ON frames (stored_at);
CREATE TABLE delivered (
    address      BLOB NOT NULL,
    frame_id     BLOB NOT NULL,
    digest       BLOB NOT NULL,
    confirmed_at INTEGER NOT NULL,
    PRIMARY KEY (address, frame_id)
) WITHOUT ROWID;
CREATE INDEX delivered_by_age ON delivered (confirmed_at);
CREATE TABLE one_time_bundles (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    address BLOB NOT NULL,
    bundle  BLOB NOT NULL
);
CREATE INDEX one_time_by_address ON one_time_bundles (address, id);
CREATE TABLE last_resort_bundles (
    address BLOB PRIMARY KEY,
    bundle  BLOB NOT NULL
) WITHOUT ROWID;
";

/// The embedded SQLite store: one database file, WAL journal, `synchronous = FULL` (a commit
/// survives power loss before the receipt goes out), `secure_delete = ON` (deleted frames
/// are overwritten). One connection behind a mutex: SQLite has one writer anyway.
pub struct SqliteRelayStore {
    conn: Mutex<Connection>,
}

impl fmt::Debug for SqliteRelayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { conn: _ } = self;
        f.debug_struct("SqliteRelayStore").finish_non_exhaustive()
    }
}

fn ms(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

fn verifier_from(v: Option<Vec<u8>>) -> Result<Option<[u8; VERIFIER_LEN]>, StoreError> {
    v.map(|v| <[u8; VERIFIER_LEN]>::try_from(v.as_slice()).map_err(|_| StoreError::Corrupt))
        .transpose()
}

impl SqliteRelayStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::with_connection(Connection::open(path)?)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(mut conn: Connection) -> Result<Self, StoreError> {
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        match version {
            0 => {
                tx.execute_batch(SCHEMA)?;
                tx.execute_batch(MIGRATE_2_TO_3)?;
                tx.execute_batch(&format!("PRAGMA user_version = {SQLITE_SCHEMA_VERSION}"))?;
            }
            1 => {
                tx.execute_batch(MIGRATE_1_TO_2)?;
                tx.execute_batch(MIGRATE_2_TO_3)?;
                tx.execute_batch(&format!("PRAGMA user_version = {SQLITE_SCHEMA_VERSION}"))?;
            }
            2 => {
                tx.execute_batch(MIGRATE_2_TO_3)?;
                tx.execute_batch(&format!("PRAGMA user_version = {SQLITE_SCHEMA_VERSION}"))?;
            }
            SQLITE_SCHEMA_VERSION => {}
            found => {
                return Err(StoreError::Schema {
                    found,
                    expected: SQLITE_SCHEMA_VERSION,
                });
            }
        }
        tx.commit()?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied (rusqlite
        // rolls back on drop), so the connection stays usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RelayStore for SqliteRelayStore {
    fn create_mailbox(
        &self,
        address: &[u8],
        owner_key: &[u8; OWNER_KEY_LEN],
        verifier: Option<&[u8; VERIFIER_LEN]>,
        now: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<Vec<u8>> = tx
            .query_row(
                "SELECT owner_key FROM mailboxes WHERE address = ?1",
                [address],
                |r| r.get(0),
            )
            .optional()?;
        let outcome = match existing {
            Some(key) if key.as_slice() == owner_key.as_slice() => CreateOutcome::AlreadyYours,
            Some(_) => CreateOutcome::Taken,
            None => {
                tx.execute(
                    "INSERT INTO mailboxes (address, owner_key, verifier, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        address,
                        owner_key.as_slice(),
                        verifier.map(<[u8; 32]>::as_slice),
                        ms(now)
                    ],
                )?;
                CreateOutcome::Created
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    fn mailbox(&self, address: &[u8]) -> Result<Option<MailboxRecord>, StoreError> {
        let conn = self.conn();
        type Row = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);
        let row: Option<Row> = conn
            .query_row(
                "SELECT owner_key, verifier, push_url FROM mailboxes WHERE address = ?1",
                [address],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(key, verifier, push_url)| {
            Ok(MailboxRecord {
                owner_key: key.as_slice().try_into().map_err(|_| StoreError::Corrupt)?,
                verifier: verifier_from(verifier)?,
                push_url,
            })
        })
        .transpose()
    }

    fn set_verifier(
        &self,
        address: &[u8],
        verifier: Option<&[u8; VERIFIER_LEN]>,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE mailboxes SET verifier = ?2 WHERE address = ?1",
            params![address, verifier.map(<[u8; 32]>::as_slice)],
        )?;
        Ok(n == 1)
    }

    fn set_push_url(&self, address: &[u8], push_url: Option<&[u8]>) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE mailboxes SET push_url = ?2 WHERE address = ?1",
            params![address, push_url],
        )?;
        Ok(n == 1)
    }

    fn store_frame(
        &self,
        address: &[u8],
        frame_id: &[u8; 16],
        digest: &[u8; 32],
        frame: &[u8],
        now: Timestamp,
        limits: &MailboxLimits,
    ) -> Result<StoreOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM mailboxes WHERE address = ?1",
                [address],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            return Ok(StoreOutcome::NoSuchMailbox);
        }
        let since = ms(now.saturating_sub(limits.delivered_memory));
        let delivered: Option<Vec<u8>> = tx
            .query_row(
                "SELECT digest FROM delivered
                 WHERE address = ?1 AND frame_id = ?2 AND confirmed_at >= ?3",
                params![address, frame_id.as_slice(), since],
                |r| r.get(0),
            )
            .optional()?;
        if delivered.is_some_and(|d| d.as_slice() == digest.as_slice()) {
            return Ok(StoreOutcome::AlreadyDelivered);
        }
        let waiting: Option<(Vec<u8>, i64)> = tx
            .query_row(
                "SELECT digest, length(frame) FROM frames WHERE address = ?1 AND frame_id = ?2",
                params![address, frame_id.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let replaced_len = match &waiting {
            Some((d, _)) if d.as_slice() == digest.as_slice() => {
                return Ok(StoreOutcome::AlreadyStored);
            }
            Some((_, len)) => u64::try_from(*len).unwrap_or(0),
            None => 0,
        };
        let (count, bytes): (i64, i64) = tx.query_row(
            "SELECT count(*), coalesce(sum(length(frame)), 0) FROM frames WHERE address = ?1",
            [address],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let new_len = u64::try_from(frame.len()).unwrap_or(u64::MAX);
        if waiting.is_none() && count >= limits.max_frames {
            return Ok(StoreOutcome::MailboxFull);
        }
        if bytes.saturating_sub(replaced_len).saturating_add(new_len) > limits.max_bytes {
            return Ok(StoreOutcome::MailboxBytesFull);
        }
        // A re-encrypted copy replaces the waiting one and takes a new position, so an owner
        // connected now is sent the new copy too.
        tx.execute(
            "DELETE FROM frames WHERE address = ?1 AND frame_id = ?2",
            params![address, frame_id.as_slice()],
        )?;
        tx.execute(
            "INSERT INTO frames (address, frame_id, digest, frame, stored_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                address,
                frame_id.as_slice(),
                digest.as_slice(),
                frame,
                ms(now)
            ],
        )?;
        tx.commit()?;
        Ok(StoreOutcome::Stored)
    }

    fn pending_frames(
        &self,
        address: &[u8],
        after: i64,
        max: usize,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, frame FROM frames WHERE address = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![address, after, i64::try_from(max).unwrap_or(i64::MAX)],
            |r| {
                Ok(StoredFrame {
                    seq: r.get(0)?,
                    frame: r.get(1)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn confirm(&self, address: &[u8], ids: &[[u8; 16]], now: Timestamp) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut deleted = 0u64;
        for id in ids {
            let digest: Option<Vec<u8>> = tx
                .query_row(
                    "DELETE FROM frames WHERE address = ?1 AND frame_id = ?2 RETURNING digest",
                    params![address, id.as_slice()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(digest) = digest {
                tx.execute(
                    "INSERT INTO delivered (address, frame_id, digest, confirmed_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (address, frame_id)
                     DO UPDATE SET digest = excluded.digest, confirmed_at = excluded.confirmed_at",
                    params![address, id.as_slice(), digest, ms(now)],
                )?;
                deleted = deleted.saturating_add(1);
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    fn upload_bundles(
        &self,
        address: &[u8],
        one_time: &[Vec<u8>],
        last_resort: Option<&[u8]>,
        max_one_time: usize,
    ) -> Result<UploadOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: i64 = tx.query_row(
            "SELECT count(*) FROM one_time_bundles WHERE address = ?1",
            [address],
            |r| r.get(0),
        )?;
        let held = usize::try_from(held).unwrap_or(usize::MAX);
        let total = held.saturating_add(one_time.len());
        if total > max_one_time {
            return Ok(UploadOutcome::TooMany);
        }
        for bundle in one_time {
            tx.execute(
                "INSERT INTO one_time_bundles (address, bundle) VALUES (?1, ?2)",
                params![address, bundle],
            )?;
        }
        if let Some(bundle) = last_resort {
            tx.execute(
                "INSERT INTO last_resort_bundles (address, bundle) VALUES (?1, ?2)
                 ON CONFLICT (address) DO UPDATE SET bundle = excluded.bundle",
                params![address, bundle],
            )?;
        }
        tx.commit()?;
        Ok(UploadOutcome::Stored {
            one_time: u32::try_from(total).unwrap_or(u32::MAX),
        })
    }

    fn take_bundle(&self, address: &[u8]) -> Result<Option<(BundleKind, Vec<u8>)>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // One statement selects and deletes: no two callers can take the same bundle.
        let one_time: Option<Vec<u8>> = tx
            .query_row(
                "DELETE FROM one_time_bundles WHERE id = (
                     SELECT id FROM one_time_bundles WHERE address = ?1 ORDER BY id LIMIT 1)
                 RETURNING bundle",
                [address],
                |r| r.get(0),
            )
            .optional()?;
        let out = match one_time {
            Some(b) => Some((BundleKind::OneTime, b)),
            None => tx
                .query_row(
                    "SELECT bundle FROM last_resort_bundles WHERE address = ?1",
                    [address],
                    |r| r.get(0),
                )
                .optional()?
                .map(|b| (BundleKind::LastResort, b)),
        };
        tx.commit()?;
        Ok(out)
    }

    fn bundle_count(&self, address: &[u8]) -> Result<(u32, bool), StoreError> {
        let conn = self.conn();
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM one_time_bundles WHERE address = ?1",
            [address],
            |r| r.get(0),
        )?;
        let last: bool = conn
            .query_row(
                "SELECT 1 FROM last_resort_bundles WHERE address = ?1",
                [address],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        Ok((u32::try_from(n).unwrap_or(u32::MAX), last))
    }

    fn sweep(
        &self,
        now: Timestamp,
        undelivered_retention: Duration,
        delivered_memory: Duration,
    ) -> Result<SweepCounts, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let expired = tx.execute(
            "DELETE FROM frames WHERE stored_at < ?1",
            [ms(now.saturating_sub(undelivered_retention))],
        )?;
        let forgotten = tx.execute(
            "DELETE FROM delivered WHERE confirmed_at < ?1",
            [ms(now.saturating_sub(delivered_memory))],
        )?;
        tx.commit()?;
        Ok(SweepCounts {
            expired_frames: u64::try_from(expired).unwrap_or(u64::MAX),
            forgotten_deliveries: u64::try_from(forgotten).unwrap_or(u64::MAX),
        })
    }

    fn put_blob(
        &self,
        put: &BlobPut<'_>,
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<PutBlobOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = put.blob_id.as_slice();
        let existing = sqlite_blob_row(&tx, id)?;
        let existing = match existing {
            Some(row) if !limits.alive(row.created_at, row.stored_len, row.total_len, now) => {
                sqlite_delete_blob(&tx, id)?;
                None
            }
            other => other,
        };
        let stored_len = match existing {
            Some(row) => {
                let same = row.owner == put.owner
                    && row.total_len == put.total_len
                    && token_hash_matches(&row.delete_token_hash, put.delete_token_hash);
                if !same {
                    return Ok(PutBlobOutcome::Exists);
                }
                row.stored_len
            }
            None => {
                if put.offset != 0 {
                    return Ok(PutBlobOutcome::OffsetMismatch { stored_len: 0 });
                }
                let (retention, incomplete) = limits.cutoffs(now);
                let (count, bytes, in_flight): (i64, i64, i64) = tx.query_row(
                    "SELECT count(*), coalesce(sum(total_len), 0),
                            coalesce(sum(CASE WHEN stored_len < total_len THEN total_len END), 0)
                     FROM blobs WHERE owner = ?1 AND created_at >= ?2
                       AND (stored_len = total_len OR created_at >= ?3)",
                    params![put.owner, retention, incomplete],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                let completes = u64::try_from(put.bytes.len()).ok() == Some(put.total_len);
                if quota_exceeded(limits, count, bytes, in_flight, put.total_len, completes) {
                    return Ok(PutBlobOutcome::QuotaExceeded);
                }
                tx.execute(
                    "INSERT INTO blobs
                         (blob_id, owner, total_len, stored_len, delete_token_hash, created_at)
                     VALUES (?1, ?2, ?3, 0, ?4, ?5)",
                    params![
                        id,
                        put.owner,
                        sql_len(put.total_len),
                        put.delete_token_hash.as_slice(),
                        ms(now)
                    ],
                )?;
                0
            }
        };
        if put.offset != stored_len {
            // Only an existing blob gets here (a new one has offset 0 and stored length 0),
            // so returning without commit changes nothing.
            return Ok(PutBlobOutcome::OffsetMismatch { stored_len });
        }
        let len = u64::try_from(put.bytes.len()).unwrap_or(u64::MAX);
        let Some(new_len) = stored_len.checked_add(len).filter(|&n| n <= put.total_len) else {
            return Ok(PutBlobOutcome::TooLarge);
        };
        if len > 0 {
            tx.execute(
                "INSERT INTO blob_chunks (blob_id, pos, bytes) VALUES (?1, ?2, ?3)",
                params![id, sql_len(stored_len), put.bytes],
            )?;
            tx.execute(
                "UPDATE blobs SET stored_len = ?2 WHERE blob_id = ?1",
                params![id, sql_len(new_len)],
            )?;
        }
        tx.commit()?;
        Ok(PutBlobOutcome::Stored {
            stored_len: new_len,
        })
    }

    fn blob_status(
        &self,
        blob_id: &[u8; 16],
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<Option<BlobState>, StoreError> {
        let conn = self.conn();
        Ok(sqlite_blob_row(&conn, blob_id.as_slice())?
            .filter(|row| limits.alive(row.created_at, row.stored_len, row.total_len, now))
            .map(|row| BlobState {
                stored_len: row.stored_len,
                total_len: row.total_len,
            }))
    }

    fn read_blob(
        &self,
        blob_id: &[u8; 16],
        offset: u64,
        max_len: usize,
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<BlobRead, StoreError> {
        let mut conn = self.conn();
        // A read transaction: the blob row and its chunks are one snapshot.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let id = blob_id.as_slice();
        let Some(row) = sqlite_blob_row(&tx, id)?
            .filter(|row| limits.alive(row.created_at, row.stored_len, row.total_len, now))
        else {
            return Ok(BlobRead::NotFound);
        };
        if row.stored_len != row.total_len {
            return Ok(BlobRead::Incomplete);
        }
        if offset > row.total_len {
            return Ok(BlobRead::PastEnd {
                total_len: row.total_len,
            });
        }
        let end = offset
            .saturating_add(u64::try_from(max_len).unwrap_or(u64::MAX))
            .min(row.total_len);
        // Only the part of each overlapping row inside [offset, end) is read.
        let mut stmt = tx.prepare(
            "SELECT substr(bytes, max(?2 - pos, 0) + 1, min(pos + length(bytes), ?3) - max(pos, ?2))
             FROM blob_chunks
             WHERE blob_id = ?1 AND pos < ?3 AND pos + length(bytes) > ?2
             ORDER BY pos",
        )?;
        let pieces = stmt.query_map(params![id, sql_len(offset), sql_len(end)], |r| {
            r.get::<_, Vec<u8>>(0)
        })?;
        let capacity = usize::try_from(end.saturating_sub(offset)).unwrap_or(0);
        let mut bytes = Vec::with_capacity(capacity);
        for piece in pieces {
            bytes.extend_from_slice(&piece?);
        }
        if bytes.len() != capacity {
            return Err(StoreError::Corrupt);
        }
        Ok(BlobRead::Data {
            total_len: row.total_len,
            bytes,
        })
    }

    fn delete_blob(
        &self,
        blob_id: &[u8; 16],
        token_hash: &[u8; 32],
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<DeleteBlobOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = blob_id.as_slice();
        let outcome = match sqlite_blob_row(&tx, id)? {
            None => DeleteBlobOutcome::NotFound,
            Some(row) if !limits.alive(row.created_at, row.stored_len, row.total_len, now) => {
                sqlite_delete_blob(&tx, id)?;
                DeleteBlobOutcome::NotFound
            }
            Some(row) if !token_hash_matches(&row.delete_token_hash, token_hash) => {
                return Ok(DeleteBlobOutcome::TokenRefused);
            }
            Some(_) => {
                sqlite_delete_blob(&tx, id)?;
                DeleteBlobOutcome::Deleted
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    fn sweep_blobs(&self, now: Timestamp, limits: &BlobLimits) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (retention, incomplete) = limits.cutoffs(now);
        tx.execute(
            "DELETE FROM blob_chunks WHERE blob_id IN (
                 SELECT blob_id FROM blobs
                 WHERE created_at < ?1 OR (stored_len < total_len AND created_at < ?2))",
            params![retention, incomplete],
        )?;
        let n = tx.execute(
            "DELETE FROM blobs
             WHERE created_at < ?1 OR (stored_len < total_len AND created_at < ?2)",
            params![retention, incomplete],
        )?;
        tx.commit()?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

/// A blob's row.
pub(crate) struct BlobRow {
    pub(crate) owner: Vec<u8>,
    pub(crate) total_len: u64,
    pub(crate) stored_len: u64,
    pub(crate) delete_token_hash: Vec<u8>,
    pub(crate) created_at: i64,
}

/// A length as SQL stores it (every blob length is far below `i64::MAX`).
pub(crate) fn sql_len(len: u64) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// Whether creating a blob of `total_len` would break a quota, given the owner's live
/// blobs: `count`, `bytes` (their total lengths) and `in_flight` (those of the incomplete
/// ones). `completes`: the creating put stores the whole blob at once.
pub(crate) fn quota_exceeded(
    limits: &BlobLimits,
    count: i64,
    bytes: i64,
    in_flight: i64,
    total_len: u64,
    completes: bool,
) -> bool {
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
    let in_flight = u64::try_from(in_flight).unwrap_or(u64::MAX);
    count.saturating_add(1) > limits.max_blobs_per_owner
        || bytes.saturating_add(total_len) > limits.max_bytes_per_owner
        || (!completes
            && in_flight.saturating_add(total_len) > limits.max_bytes_in_flight_per_owner)
}

fn sqlite_blob_row(conn: &Connection, id: &[u8]) -> Result<Option<BlobRow>, StoreError> {
    let row = conn
        .query_row(
            "SELECT owner, total_len, stored_len, delete_token_hash, created_at
             FROM blobs WHERE blob_id = ?1",
            [id],
            |r| {
                let total: i64 = r.get(1)?;
                let stored: i64 = r.get(2)?;
                Ok((
                    BlobRow {
                        owner: r.get(0)?,
                        total_len: u64::try_from(total).unwrap_or(0),
                        stored_len: u64::try_from(stored).unwrap_or(0),
                        delete_token_hash: r.get(3)?,
                        created_at: r.get(4)?,
                    },
                    total >= 0 && stored >= 0,
                ))
            },
        )
        .optional()?;
    match row {
        Some((_, false)) => Err(StoreError::Corrupt),
        Some((row, true)) => Ok(Some(row)),
        None => Ok(None),
    }
}

fn sqlite_delete_blob(conn: &Connection, id: &[u8]) -> Result<(), StoreError> {
    conn.execute("DELETE FROM blob_chunks WHERE blob_id = ?1", [id])?;
    conn.execute("DELETE FROM blobs WHERE blob_id = ?1", [id])?;
    Ok(())
}
