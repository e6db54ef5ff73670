//! A deadline queue with cancellation in O(log n).

use confide_crypto::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// Keys ordered by deadline. Each key is scheduled at most once.
///
/// Two ordered indexes (by deadline, by key) make insert, cancel and pop all O(log n); a
/// cancelled key leaves nothing behind (no lazy deletion, so no stale work later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryQueue<K: Ord + Copy> {
    by_deadline: BTreeSet<(Timestamp, K)>,
    by_key: BTreeMap<K, Timestamp>,
}

impl<K: Ord + Copy> Default for ExpiryQueue<K> {
    fn default() -> Self {
        Self {
            by_deadline: BTreeSet::new(),
            by_key: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy> ExpiryQueue<K> {
    /// An empty queue.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `key` at `deadline`, replacing any earlier schedule of the same key.
    /// Returns the replaced deadline.
    pub fn insert(&mut self, key: K, deadline: Timestamp) -> Option<Timestamp> {
        let previous = self.cancel(&key);
        self.by_deadline.insert((deadline, key));
        self.by_key.insert(key, deadline);
        previous
    }

    /// Removes `key`; returns its deadline if it was scheduled.
    pub fn cancel(&mut self, key: &K) -> Option<Timestamp> {
        let deadline = self.by_key.remove(key)?;
        self.by_deadline.remove(&(deadline, *key));
        Some(deadline)
    }

    /// The deadline of `key`, if scheduled.
    #[must_use]
    pub fn deadline_of(&self, key: &K) -> Option<Timestamp> {
        self.by_key.get(key).copied()
    }

    /// The earliest deadline.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns the earliest key whose deadline is at or before `now`.
    #[must_use]
    pub fn pop_due(&mut self, now: Timestamp) -> Option<(K, Timestamp)> {
        let (deadline, key) = *self.by_deadline.first()?;
        if deadline > now {
            return None;
        }
        self.by_deadline.pop_first();
        self.by_key.remove(&key);
        Some((key, deadline))
    }

    /// Removes and returns the earliest key whatever its deadline.
    #[must_use]
    pub fn pop_first(&mut self) -> Option<(K, Timestamp)> {
        let (deadline, key) = self.by_deadline.pop_first()?;
        self.by_key.remove(&key);
        Some((key, deadline))
    }

    /// Number of scheduled keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether nothing is scheduled.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pops_in_deadline_order_and_cancel_leaves_nothing() {
        let mut q = ExpiryQueue::new();
        q.insert(1u32, Timestamp::from_millis(30));
        q.insert(2, Timestamp::from_millis(10));
        q.insert(3, Timestamp::from_millis(20));
        assert_eq!(q.cancel(&3), Some(Timestamp::from_millis(20)));
        assert_eq!(q.next_deadline(), Some(Timestamp::from_millis(10)));
        assert_eq!(q.pop_due(Timestamp::from_millis(9)), None);
        assert_eq!(
            q.pop_due(Timestamp::from_millis(100)),
            Some((2, Timestamp::from_millis(10)))
        );
        assert_eq!(
            q.pop_due(Timestamp::from_millis(100)),
            Some((1, Timestamp::from_millis(30)))
        );
        assert!(q.is_empty());
    }

    proptest! {
        #[test]
        fn matches_a_naive_model(ops in proptest::collection::vec((0u8..3, 0u8..16, 0u64..100), 0..200)) {
            let mut q = ExpiryQueue::new();
            let mut model: BTreeMap<u8, u64> = BTreeMap::new();
            for (op, key, t) in ops {
                match op {
                    0 => {
                        let prev = q.insert(key, Timestamp::from_millis(t));
                        prop_assert_eq!(prev.map(Timestamp::as_millis), model.insert(key, t));
                    }
                    1 => {
                        prop_assert_eq!(q.cancel(&key).map(Timestamp::as_millis), model.remove(&key));
                    }
                    _ => {
                        let expected = model
                            .iter()
                            .filter(|(_, d)| **d <= t)
                            .min_by_key(|(k, d)| (**d, **k))
                            .map(|(k, d)| (*k, *d));
                        let got = q.pop_due(Timestamp::from_millis(t)).map(|(k, d)| (k, d.as_millis()));
                        prop_assert_eq!(got, expected);
                        if let Some((k, _)) = expected {
                            model.remove(&k);
                        }
                    }
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.next_deadline().map(Timestamp::as_millis), model.values().min().copied());
            }
        }
    }
}
