//! Records in memory.

use std::collections::BTreeMap;
use std::convert::Infallible;

use confide::ChangeSet;

use crate::{Record, Store};

/// A [`Store`] in memory: for tests, benchmarks and throwaway sessions. Its commits are
/// atomic (a change set applies whole) and it never fails.
///
/// `Debug` prints counts only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    slot: Vec<u8>,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes_written: u64,
    commits: u64,
}

impl MemoryStore {
    /// An empty store for the account named `slot`.
    #[must_use]
    pub fn new(slot: &[u8]) -> Self {
        Self {
            slot: slot.to_vec(),
            ..Self::default()
        }
    }

    /// How many records it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of keys and values written by all commits so far (the write volume a file store
    /// would see, before its own overhead).
    #[must_use]
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Commits so far.
    #[must_use]
    pub fn commits(&self) -> u64 {
        self.commits
    }

    fn apply(&mut self, changes: &ChangeSet) {
        for key in changes.deletes() {
            self.records.remove(key);
        }
        for (key, value) in changes.puts() {
            self.records.insert(key.to_vec(), value.to_vec());
        }
        let written = u64::try_from(changes.written_bytes()).unwrap_or(u64::MAX);
        self.bytes_written = self.bytes_written.saturating_add(written);
        self.commits = self.commits.saturating_add(1);
    }
}

impl core::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            slot: _,
            records,
            bytes_written,
            commits,
        } = self;
        f.debug_struct("MemoryStore")
            .field("records", &records.len())
            .field("bytes_written", bytes_written)
            .field("commits", commits)
            .finish_non_exhaustive()
    }
}

impl Store for MemoryStore {
    type Error = Infallible;

    fn slot(&self) -> &[u8] {
        &self.slot
    }

    fn commit(&mut self, changes: &ChangeSet) -> Result<(), Infallible> {
        self.apply(changes);
        Ok(())
    }

    fn replace_all(&mut self, changes: &ChangeSet) -> Result<(), Infallible> {
        self.records.clear();
        self.apply(changes);
        Ok(())
    }

    fn records(&self) -> Result<Vec<Record>, Infallible> {
        Ok(self
            .records
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
