//! The embedded SQLite store.

use std::path::Path;

use confide::ChangeSet;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;

use crate::schema::{SQLITE_SCHEMA_VERSION, SchemaError, prepare};
use crate::{Record, Store};

/// Why the SQLite store failed. Carries SQLite's error (never a stored value or key).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SqliteStoreError {
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
}

/// A [`Store`] in an embedded SQLite database file: the default an app gets in one line.
///
/// Settings, each for a reason:
/// * `journal_mode = WAL`: a commit appends to the write-ahead log instead of rewriting
///   pages twice, and readers in other processes do not block it;
/// * `synchronous = FULL`: a commit is on disk when it returns, as the endpoint's rule
///   "nothing leaves before the state that produced it is stored" requires (with `NORMAL`, a
///   power cut could lose a commit whose frames already left: a reused key after restart);
/// * `secure_delete = ON`: SQLite overwrites deleted records in the database file;
/// * `journal_size_limit = 0`: a write-ahead log that restarts is truncated, not left with
///   stale page images past its end;
/// * one table, `confide_records (account, key, value)`, without row ids; several accounts
///   can share one file. The optional message store ([`crate::Transcript`]) keeps its own
///   tables in the same file (schema version 2, `docs/store.md`).
///
/// `Debug` prints nothing about the account.
pub struct SqliteStore {
    conn: Connection,
    slot: Vec<u8>,
}

impl core::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self { conn: _, slot: _ } = self;
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` for the account named `slot`.
    pub fn open(path: impl AsRef<Path>, slot: &[u8]) -> Result<Self, SqliteStoreError> {
        Self::with_connection(Connection::open(path)?, slot)
    }

    /// A database in memory (tests and benchmarks; it vanishes when dropped).
    pub fn open_in_memory(slot: &[u8]) -> Result<Self, SqliteStoreError> {
        Self::with_connection(Connection::open_in_memory()?, slot)
    }

    fn with_connection(mut conn: Connection, slot: &[u8]) -> Result<Self, SqliteStoreError> {
        prepare(&mut conn).map_err(|e| match e {
            SchemaError::Sqlite(e) => SqliteStoreError::Sqlite(e),
            SchemaError::Newer(found) => SqliteStoreError::UnknownSchema {
                found,
                supported: SQLITE_SCHEMA_VERSION,
            },
        })?;
        Ok(Self {
            conn,
            slot: slot.to_vec(),
        })
    }

    /// How many records the account holds.
    pub fn len(&self) -> Result<usize, SqliteStoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM confide_records WHERE account = ?1",
            params![self.slot],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Whether the account holds no record.
    pub fn is_empty(&self) -> Result<bool, SqliteStoreError> {
        let any: Option<i64> = self
            .conn
            .query_row(
                "SELECT 1 FROM confide_records WHERE account = ?1 LIMIT 1",
                params![self.slot],
                |r| r.get(0),
            )
            .optional()?;
        Ok(any.is_none())
    }

    fn write(&mut self, changes: &ChangeSet, clear: bool) -> Result<(), SqliteStoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if clear {
            tx.execute(
                "DELETE FROM confide_records WHERE account = ?1",
                params![self.slot],
            )?;
        }
        {
            let mut delete =
                tx.prepare("DELETE FROM confide_records WHERE account = ?1 AND key = ?2")?;
            for key in changes.deletes() {
                delete.execute(params![self.slot, key])?;
            }
            let mut put = tx.prepare(
                "INSERT OR REPLACE INTO confide_records (account, key, value) VALUES (?1, ?2, ?3)",
            )?;
            for (key, value) in changes.puts() {
                put.execute(params![self.slot, key, value])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Store for SqliteStore {
    type Error = SqliteStoreError;

    fn slot(&self) -> &[u8] {
        &self.slot
    }

    fn commit(&mut self, changes: &ChangeSet) -> Result<(), SqliteStoreError> {
        self.write(changes, false)
    }

    fn replace_all(&mut self, changes: &ChangeSet) -> Result<(), SqliteStoreError> {
        self.write(changes, true)
    }

    fn records(&self) -> Result<Vec<Record>, SqliteStoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM confide_records WHERE account = ?1")?;
        let rows = stmt.query_map(params![self.slot], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let mut records = Vec::new();
        for row in rows {
            records.push(row?);
        }
        Ok(records)
    }
}
