//! The SQLite file's settings and schema, shared by [`crate::SqliteStore`] and
//! [`crate::Transcript`] (two connections to one file): whichever opens it first migrates it.

use rusqlite::{Connection, TransactionBehavior};

/// The schema version this crate writes (SQLite's `user_version`). A database of a newer
/// version is refused rather than misread.
///
/// * 1: the records table (`confide_records`);
/// * 2: adds the message store's three tables (`docs/store.md`); a version-1 file is migrated
///   in place, its records untouched.
pub const SQLITE_SCHEMA_VERSION: i64 = 2;

/// How long a writer waits for another connection's transaction before failing with
/// `SQLITE_BUSY`. Reason: an app may open the database from a second process (a share
/// extension, a notification service), and the records and the message store use two
/// connections; their transactions are a few milliseconds, so a wait of seconds only expires
/// when something is stuck.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Version 1: the endpoint's records.
const SCHEMA_V1: &str = "CREATE TABLE confide_records (
    account BLOB NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (account, key)
) WITHOUT ROWID";

/// Version 2 adds the message store (`docs/store.md`, "Schema").
const SCHEMA_V2: &str = "
CREATE TABLE confide_transcript_accounts (
    account BLOB NOT NULL PRIMARY KEY,
    key_check BLOB NOT NULL,
    next_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE confide_messages (
    account BLOB NOT NULL,
    seq INTEGER NOT NULL,
    conversation INTEGER NOT NULL,
    tag BLOB NOT NULL,
    sent_at INTEGER NOT NULL,
    expires_at INTEGER,
    body BLOB NOT NULL,
    UNIQUE (account, seq),
    UNIQUE (account, tag)
);
CREATE INDEX confide_messages_by_conversation ON confide_messages (account, conversation, seq);
CREATE INDEX confide_messages_by_expiry ON confide_messages (account, expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE confide_message_keys (
    account BLOB NOT NULL,
    seq INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    PRIMARY KEY (account, seq)
) WITHOUT ROWID;
";

/// Why the file could not be set up.
#[derive(Debug)]
pub(crate) enum SchemaError {
    Sqlite(rusqlite::Error),
    Newer(i64),
}

impl From<rusqlite::Error> for SchemaError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

/// Applies the settings (`docs/store.md`, "Settings") and migrates the schema to
/// [`SQLITE_SCHEMA_VERSION`] in one transaction.
pub(crate) fn prepare(conn: &mut Connection) -> Result<(), SchemaError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Returns the mode in effect ("memory" for an in-memory database).
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    // journal_size_limit = 0: whenever the write-ahead log restarts after a checkpoint, it is
    // truncated instead of keeping stale frames (old page images) past its new end.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA journal_size_limit = 0;",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA_V1)?;
            tx.execute_batch(SCHEMA_V2)?;
        }
        1 => tx.execute_batch(SCHEMA_V2)?,
        SQLITE_SCHEMA_VERSION => {}
        found => return Err(SchemaError::Newer(found)),
    }
    if version != SQLITE_SCHEMA_VERSION {
        tx.execute_batch(&format!("PRAGMA user_version = {SQLITE_SCHEMA_VERSION}"))?;
    }
    tx.commit()?;
    Ok(())
}
