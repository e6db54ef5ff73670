//! A map that remembers which of its keys changed, so the endpoint can persist only the
//! records that did (see `state.rs`).
//!
//! Every way to change an entry goes through a method here that notes its key; there is no
//! `DerefMut`. Reading goes through `Deref` to the inner `BTreeMap`.

use std::collections::{BTreeMap, BTreeSet};

use confide_transport::FrameId;

use crate::consts::{LOG_ENTRIES_PER_CHUNK, MAX_CONTROL_FRAMES_REMEMBERED};

/// A `BTreeMap` that notes the key of every entry inserted, removed or borrowed mutably.
pub(crate) struct Tracked<K: Ord + Copy, V> {
    map: BTreeMap<K, V>,
    changed: BTreeSet<K>,
}

impl<K: Ord + Copy, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy, V> core::ops::Deref for Tracked<K, V> {
    type Target = BTreeMap<K, V>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<K: Ord + Copy, V> Tracked<K, V> {
    /// A map read from storage: nothing in it counts as changed.
    pub(crate) fn loaded(map: BTreeMap<K, V>) -> Self {
        Self {
            map,
            changed: BTreeSet::new(),
        }
    }

    /// The entry at `key`, noted as changed (whether or not the caller changes it).
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let entry = self.map.get_mut(key)?;
        self.changed.insert(*key);
        Some(entry)
    }

    /// The entry at `key` **without** noting it as changed: only for draining bookkeeping
    /// that is not state (a conversation policy's own log of changed entries, which is
    /// drained when the conversation was noted as changed anyway).
    pub(crate) fn get_mut_unnoted(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.changed.insert(key);
        self.map.insert(key, value)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.map.remove(key)?;
        self.changed.insert(*key);
        Some(removed)
    }

    pub(crate) fn pop_first(&mut self) -> Option<(K, V)> {
        let (key, value) = self.map.pop_first()?;
        self.changed.insert(key);
        Some((key, value))
    }

    /// The keys changed since the last call, and forgets them.
    pub(crate) fn take_changed(&mut self) -> BTreeSet<K> {
        core::mem::take(&mut self.changed)
    }
}

/// The arrival orders chunk `chunk` of an ordered log holds ([`LOG_ENTRIES_PER_CHUNK`] of
/// them, `docs/endpoint.md`), or `None` for a chunk number past every order.
pub(crate) fn chunk_orders(chunk: u64) -> Option<core::ops::Range<u64>> {
    let first = chunk.checked_mul(LOG_ENTRIES_PER_CHUNK)?;
    Some(first..first.saturating_add(LOG_ENTRIES_PER_CHUNK))
}

/// Frame ids of received acknowledgements and resume frames, each with its arrival order;
/// the oldest are forgotten beyond [`MAX_CONTROL_FRAMES_REMEMBERED`]. Stored in chunks of
/// [`LOG_ENTRIES_PER_CHUNK`] by order (`docs/endpoint.md`), so the change log notes chunks.
#[derive(Default)]
pub(crate) struct ControlSeen {
    by_id: BTreeMap<FrameId, u64>,
    by_order: BTreeMap<u64, FrameId>,
    next_order: u64,
    /// Chunks with an entry added or forgotten since [`ControlSeen::take_changed`]
    /// (bookkeeping for incremental persistence, not state).
    changed: BTreeSet<u64>,
}

impl ControlSeen {
    /// From stored `(id, order)` pairs; `None` if ids or orders repeat, an order was never
    /// issued, or there are too many.
    pub(crate) fn loaded(entries: Vec<(FrameId, u64)>, next_order: u64) -> Option<Self> {
        if entries.len() > MAX_CONTROL_FRAMES_REMEMBERED {
            return None;
        }
        let mut by_id = BTreeMap::new();
        let mut by_order = BTreeMap::new();
        for (id, order) in entries {
            if order >= next_order
                || by_id.insert(id, order).is_some()
                || by_order.insert(order, id).is_some()
            {
                return None;
            }
        }
        Some(Self {
            by_id,
            by_order,
            next_order,
            changed: BTreeSet::new(),
        })
    }

    pub(crate) fn contains(&self, id: &FrameId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Remembers `id` (once), forgetting the oldest beyond the bound.
    pub(crate) fn insert(&mut self, id: FrameId) {
        if self.contains(&id) {
            return;
        }
        let order = self.next_order;
        self.next_order = order.saturating_add(1);
        self.by_id.insert(id, order);
        self.by_order.insert(order, id);
        self.changed.insert(order / LOG_ENTRIES_PER_CHUNK);
        while self.by_order.len() > MAX_CONTROL_FRAMES_REMEMBERED {
            if let Some((old, oldest)) = self.by_order.pop_first() {
                self.by_id.remove(&oldest);
                self.changed.insert(old / LOG_ENTRIES_PER_CHUNK);
            }
        }
    }

    /// The chunks that hold entries, ascending.
    pub(crate) fn chunks(&self) -> BTreeSet<u64> {
        self.by_order
            .keys()
            .map(|order| order / LOG_ENTRIES_PER_CHUNK)
            .collect()
    }

    /// The entries of chunk `chunk` as `(order, id)`, ascending; empty if it holds none.
    pub(crate) fn chunk(&self, chunk: u64) -> Vec<(u64, FrameId)> {
        let Some(orders) = chunk_orders(chunk) else {
            return Vec::new();
        };
        self.by_order
            .range(orders)
            .map(|(order, id)| (*order, *id))
            .collect()
    }

    pub(crate) fn next_order(&self) -> u64 {
        self.next_order
    }

    /// The chunks changed since the last call, and forgets them.
    pub(crate) fn take_changed(&mut self) -> BTreeSet<u64> {
        core::mem::take(&mut self.changed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frame(i: u64) -> FrameId {
        let mut b = [0u8; 16];
        b[8..].copy_from_slice(&i.to_be_bytes());
        FrameId::from_bytes(b)
    }

    #[test]
    fn control_frames_forget_the_oldest_beyond_the_bound_and_note_their_chunks() {
        let max = MAX_CONTROL_FRAMES_REMEMBERED as u64;
        let mut c = ControlSeen::default();
        for i in 0..max {
            c.insert(frame(i));
        }
        // Exactly the bound is kept: nothing forgotten yet.
        assert!(c.contains(&frame(0)) && c.contains(&frame(max - 1)));
        assert_eq!(c.chunks().len(), 64);
        assert_eq!(c.take_changed().len(), 64, "every chunk written");
        // Sixteen more: orders 0 to 15 (chunk 0) forgotten, chunk 64 written.
        for i in max..max + 16 {
            c.insert(frame(i));
        }
        assert!(!c.contains(&frame(15)) && c.contains(&frame(16)));
        assert!(c.chunk(0).is_empty());
        assert_eq!(c.take_changed(), [0, 64].into());
        // One more forgets order 16, the first of chunk 1.
        c.insert(frame(max + 16));
        assert!(!c.contains(&frame(16)) && c.contains(&frame(17)));
        assert_eq!(c.take_changed(), [1, 65].into());
        assert_eq!(c.chunk(1).first(), Some(&(17, frame(17))));
        assert_eq!(c.chunk(65), [(max + 16, frame(max + 16))]);
        // Inserting a remembered id changes nothing.
        c.insert(frame(max + 16));
        assert!(c.take_changed().is_empty());
        assert_eq!(c.next_order(), max + 17);
    }

    #[test]
    fn every_change_is_noted_and_reading_is_not() {
        let mut m: Tracked<u8, u8> = Tracked::loaded([(1, 1), (2, 2), (3, 3)].into());
        assert!(m.take_changed().is_empty());
        assert_eq!(m.get(&1), Some(&1));
        assert_eq!(m.len(), 3);
        assert!(m.take_changed().is_empty(), "reads change nothing");
        *m.get_mut(&1).unwrap() = 10;
        m.insert(4, 4);
        m.remove(&2);
        assert!(m.remove(&9).is_none());
        assert!(m.get_mut(&9).is_none());
        assert_eq!(m.take_changed(), [1, 2, 4].into());
        assert!(m.take_changed().is_empty());
        assert_eq!(m.pop_first(), Some((1, 10)));
        assert_eq!(m.take_changed(), [1].into());
    }
}
