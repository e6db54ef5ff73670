//! The persistence gate: nothing leaves the endpoint before the state that produced it is
//! stored. One small type with its own rules and tests.

use std::collections::VecDeque;

use confide_transport::Transmit;

/// What the gate lets out next.
#[derive(Debug)]
pub(crate) enum GateOutput {
    /// The state changed since the last export: the app must export and store it.
    PersistRequired,
    /// A frame whose producing state is confirmed persisted.
    Transmit(Transmit),
}

/// Counts state changes, remembers which of them the app stored, and holds outgoing frames
/// until a state at least as new as the one that produced them is confirmed persisted.
///
/// `changes` grows at every change that must be persisted; an export captures it as
/// `exported`; [`PersistGate::confirm`] moves `confirmed` up to `exported`. A frame produced
/// while `changes == n` leaves only once `confirmed >= n`.
#[derive(Debug, Default)]
pub(crate) struct PersistGate {
    held: VecDeque<(u64, Transmit)>,
    changes: u64,
    exported: u64,
    confirmed: u64,
    /// `PersistRequired` was returned and no export happened since.
    announced: bool,
}

impl PersistGate {
    pub(crate) fn mark_changed(&mut self) {
        self.changes = self.changes.saturating_add(1);
    }

    /// Holds `tx` until the current state is confirmed persisted.
    pub(crate) fn hold(&mut self, tx: Transmit) {
        self.held.push_back((self.changes, tx));
    }

    pub(crate) fn held_len(&self) -> usize {
        self.held.len()
    }

    /// An export captured the current state.
    pub(crate) fn on_export(&mut self) {
        self.exported = self.changes;
        self.announced = false;
    }

    /// The app stored the last export.
    pub(crate) fn confirm(&mut self) {
        self.confirmed = self.confirmed.max(self.exported);
    }

    pub(crate) fn needs_persist(&self) -> bool {
        self.changes > self.confirmed
    }

    pub(crate) fn unconfirmed(&self) -> u64 {
        self.changes.saturating_sub(self.confirmed)
    }

    /// The next output, or `None`. With `ephemeral`, nothing waits for persistence.
    pub(crate) fn poll(&mut self, ephemeral: bool) -> Option<GateOutput> {
        if !ephemeral && self.changes > self.exported && !self.announced {
            self.announced = true;
            return Some(GateOutput::PersistRequired);
        }
        if self
            .held
            .front()
            .is_some_and(|(tag, _)| ephemeral || *tag <= self.confirmed)
        {
            return self
                .held
                .pop_front()
                .map(|(_, tx)| GateOutput::Transmit(tx));
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use confide_transport::Address;

    fn tx(n: u8) -> Transmit {
        Transmit {
            to: Address::new(b"peer").unwrap(),
            frame: vec![n],
            token: None,
        }
    }

    fn next_frame(g: &mut PersistGate) -> Option<u8> {
        match g.poll(false) {
            Some(GateOutput::Transmit(t)) => t.frame.first().copied(),
            Some(GateOutput::PersistRequired) => panic!("unexpected PersistRequired"),
            None => None,
        }
    }

    #[test]
    fn a_frame_waits_for_the_state_that_produced_it() {
        let mut g = PersistGate::default();
        g.mark_changed();
        g.hold(tx(1));
        assert!(matches!(g.poll(false), Some(GateOutput::PersistRequired)));
        // Announced once per export, and the frame still waits.
        assert!(g.poll(false).is_none());
        g.on_export();
        assert!(g.poll(false).is_none(), "exported but not confirmed");
        g.confirm();
        assert_eq!(next_frame(&mut g), Some(1));
        assert!(!g.needs_persist());
    }

    #[test]
    fn a_later_change_does_not_release_a_frame_of_an_unstored_state() {
        let mut g = PersistGate::default();
        g.mark_changed();
        g.hold(tx(1));
        let _ = g.poll(false);
        g.on_export();
        g.confirm();
        g.mark_changed();
        g.hold(tx(2));
        // The new change is announced first; frame 1 (of the stored state) may then leave,
        // frame 2 may not.
        assert!(matches!(g.poll(false), Some(GateOutput::PersistRequired)));
        assert_eq!(next_frame(&mut g), Some(1));
        assert!(g.poll(false).is_none());
        g.on_export();
        g.confirm();
        assert_eq!(next_frame(&mut g), Some(2));
    }

    #[test]
    fn ephemeral_never_waits() {
        let mut e = PersistGate::default();
        e.mark_changed();
        e.hold(tx(3));
        assert!(matches!(e.poll(true), Some(GateOutput::Transmit(_))));
    }
}
