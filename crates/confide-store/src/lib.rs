//! Storage for Confide endpoints: where the records of
//! [`Endpoint::take_changes`] go, and where [`Endpoint::load_records`] reads them from.
//!
//! An endpoint persists record by record: a state change (a message sent or received, an
//! acknowledgement, a timer) touches a handful of encrypted records, whatever the number of
//! conversations. A [`Store`] keeps the records of one account and commits each change set in
//! one transaction. Two stores come with the crate:
//!
//! * [`SqliteStore`]: an embedded SQLite database file (SQLite is compiled in), the default
//!   an app gets in one line: `SqliteStore::open("confide.db", b"account")`;
//! * [`MemoryStore`]: records in memory (tests, benchmarks, throwaway sessions).
//!
//! Optional for apps, in the same SQLite file: the encrypted **message store**
//! ([`Transcript`]), the transcript an app shows, each message under its own key so that an
//! erased message (unsent, deleted, expired) is unrecoverable from the database file, its free
//! pages and its write-ahead log once its key row is gone. Format and guarantees:
//! `docs/store.md`.
//!
//! The run loop with a store: whenever the endpoint emits
//! [`Event::PersistRequired`](confide::Event::PersistRequired), call [`persist`]; frames
//! produced by the change wait in the endpoint until it returns. At start, [`load`] the
//! endpoint (or create one and [`persist`] it).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use confide_store::{MemoryStore, Store};
//! let store = MemoryStore::new(b"account");
//! let key = confide::StorageKey::new([7; 32]);
//! // Nothing stored yet: create a new endpoint (see `confide::Endpoint::new`) and persist it.
//! assert!(confide_store::load(&store, &key)?.is_none());
//! # Ok(())
//! # }
//! ```
//!
//! Every value a store holds is sealed by the endpoint under the app's storage key and bound
//! to its record key and the account's slot; a store sees record keys (a tag and a random or
//! sequential id), value sizes and the timing of writes, never content. Layout:
//! `docs/endpoint.md` ("Stored state").

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod memory;
pub mod row;
mod schema;
mod sqlite;
mod transcript;

use confide::{ChangeSet, Endpoint, ExportError, ImportError, StorageKey};
use rand_core::CryptoRng;
use thiserror::Error;

pub use memory::MemoryStore;
pub use row::{RowError, TranscriptEntry};
pub use schema::SQLITE_SCHEMA_VERSION;
pub use sqlite::{SqliteStore, SqliteStoreError};
pub use transcript::{
    Erasure, MAX_PAGE_LEN, MAX_STORED_TIME, NewMessage, Transcript, TranscriptError, WalClearing,
};

/// One stored record: its key and its sealed value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Where one account's records live.
///
/// A store commits each change set atomically: after a crash either every put and delete of a
/// change set is stored, or none is. It must not reorder commits.
pub trait Store {
    /// Why an operation failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The account's slot: bytes naming the account, bound into every record's encryption
    /// (a record written for one account does not open for another).
    fn slot(&self) -> &[u8];

    /// Writes every put and every delete of `changes`, in one transaction.
    fn commit(&mut self, changes: &ChangeSet) -> Result<(), Self::Error>;

    /// Replaces every record of the account by the puts of `changes` (a complete set, from
    /// [`Endpoint::take_all_records`]), in one transaction.
    fn replace_all(&mut self, changes: &ChangeSet) -> Result<(), Self::Error>;

    /// Every record of the account: `(key, sealed value)`, in any order.
    fn records(&self) -> Result<Vec<Record>, Self::Error>;
}

/// Why [`persist`] or [`persist_all`] failed. The endpoint's frames keep waiting and the
/// change set is carried again by the next call: retry (after freeing space, say).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PersistError<E: std::error::Error + 'static> {
    /// The endpoint could not encode its state.
    #[error("state could not be encoded: {0}")]
    Export(#[from] ExportError),
    /// The store refused or failed the transaction; nothing of it was stored.
    #[error("the store failed: {0}")]
    Store(#[source] E),
}

/// Why [`load`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError<E: std::error::Error + 'static> {
    /// The records could not be read.
    #[error("the store failed: {0}")]
    Store(#[source] E),
    /// The records did not open (wrong storage key, tampered, swapped) or do not form a valid
    /// endpoint state.
    #[error("stored state refused: {0}")]
    Import(#[from] ImportError),
}

/// Stores what changed in `endpoint` since its last confirmed persist, in one transaction,
/// and confirms it: the endpoint's waiting frames may then leave. Call it for every
/// [`Event::PersistRequired`](confide::Event::PersistRequired).
pub fn persist<S: Store + ?Sized, R: CryptoRng + ?Sized>(
    endpoint: &mut Endpoint,
    store: &mut S,
    rng: &mut R,
    key: &StorageKey,
) -> Result<(), PersistError<S::Error>> {
    let changes = endpoint.take_changes(rng, key, store.slot())?;
    store.commit(&changes).map_err(PersistError::Store)?;
    endpoint.confirm_persisted();
    Ok(())
}

/// Stores every record of `endpoint`, replacing whatever the store held for the account (for
/// an endpoint restored from a backup blob, or moved into a new store), and confirms it.
pub fn persist_all<S: Store + ?Sized, R: CryptoRng + ?Sized>(
    endpoint: &mut Endpoint,
    store: &mut S,
    rng: &mut R,
    key: &StorageKey,
) -> Result<(), PersistError<S::Error>> {
    let changes = endpoint.take_all_records(rng, key, store.slot())?;
    store.replace_all(&changes).map_err(PersistError::Store)?;
    endpoint.confirm_persisted();
    Ok(())
}

/// Loads the account's endpoint, or `None` if the store holds no record for it (a new
/// install: create an endpoint and [`persist`] it).
pub fn load<S: Store + ?Sized>(
    store: &S,
    key: &StorageKey,
) -> Result<Option<Endpoint>, LoadError<S::Error>> {
    let records = store.records().map_err(LoadError::Store)?;
    if records.is_empty() {
        return Ok(None);
    }
    Ok(Some(Endpoint::load_records(key, store.slot(), records)?))
}
