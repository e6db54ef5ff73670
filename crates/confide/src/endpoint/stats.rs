//! Why frames are dropped, and the persisted counters that say how often.

/// Why the endpoint refused or dropped an incoming frame (or could not answer it). Every
/// refusal has exactly one reason; each reason has a counter in [`EndpointStats`] that is
/// stored with the state. Reasons that concern a conversation also reach the app as
/// [`Event::FrameDropped`](crate::Event::FrameDropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// Not a valid transport frame. Nothing to do (relay or network garbage).
    MalformedFrame,
    /// The sealed envelope did not open: not for us, forged, or an unknown or revoked
    /// certificate chain. Nothing to do.
    EnvelopeRefused,
    /// The sender's certificate expired longer ago than
    /// [`SENDER_CERTIFICATE_GRACE`](crate::consts::SENDER_CERTIFICATE_GRACE). The sender must
    /// renew its certificate; its retransmissions are re-sealed once it has.
    CertificateExpired,
    /// The payload inside an authenticated envelope is not a session message we understand.
    MalformedPayload,
    /// A prekey message from another identity than its certificate names.
    IdentityMismatch,
    /// A session message from a sender we have no open conversation with (for example a
    /// late frame of a conversation closed since).
    NoConversation,
    /// A session message for a conversation that is closed.
    ClosedConversation,
    /// A new peer while [`MAX_CONVERSATIONS`](crate::consts::MAX_CONVERSATIONS) conversations
    /// are open: close some.
    TooManyConversations,
    /// A session message that did not authenticate and was not a sign of a peer out of sync.
    SessionAuthentication,
    /// A session message decrypted before (a replay the dedup window missed).
    SessionDuplicate,
    /// Another session refusal (unknown prekey, too far ahead, replayed initial message).
    SessionRefused,
    /// The peer's session state is not one ours can follow (it restored an older backup):
    /// a reset request was sent so that the peer starts a new session; an
    /// [`Event::SessionReset`](crate::Event::SessionReset) follows when it has.
    PeerOutOfSync,
    /// The conversation policy refused the decrypted content (forged timer, id conflict...).
    ContentRefused,
    /// A reset request that does not name our current session (a replay or a late copy).
    StaleResetRequest,
    /// An acknowledgement could not be queued because too many frames wait for persistence;
    /// the peer retransmits and it is acknowledged then.
    AcknowledgementDeferred,
    /// A frame under an id received before, with a different payload, that did not
    /// authenticate as the sender recorded for that id (a relay injecting or altering
    /// frames). Never acknowledged. Nothing to do.
    AlteredDuplicate,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 16] = [
        Self::MalformedFrame,
        Self::EnvelopeRefused,
        Self::CertificateExpired,
        Self::MalformedPayload,
        Self::IdentityMismatch,
        Self::NoConversation,
        Self::ClosedConversation,
        Self::TooManyConversations,
        Self::SessionAuthentication,
        Self::SessionDuplicate,
        Self::SessionRefused,
        Self::PeerOutOfSync,
        Self::ContentRefused,
        Self::StaleResetRequest,
        Self::AcknowledgementDeferred,
        Self::AlteredDuplicate,
    ];

    /// A stable snake-case name (for logs and metrics; it carries no data).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MalformedFrame => "malformed_frame",
            Self::EnvelopeRefused => "envelope_refused",
            Self::CertificateExpired => "certificate_expired",
            Self::MalformedPayload => "malformed_payload",
            Self::IdentityMismatch => "identity_mismatch",
            Self::NoConversation => "no_conversation",
            Self::ClosedConversation => "closed_conversation",
            Self::TooManyConversations => "too_many_conversations",
            Self::SessionAuthentication => "session_authentication",
            Self::SessionDuplicate => "session_duplicate",
            Self::SessionRefused => "session_refused",
            Self::PeerOutOfSync => "peer_out_of_sync",
            Self::ContentRefused => "content_refused",
            Self::StaleResetRequest => "stale_reset_request",
            Self::AcknowledgementDeferred => "acknowledgement_deferred",
            Self::AlteredDuplicate => "altered_duplicate",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::MalformedFrame => 0,
            Self::EnvelopeRefused => 1,
            Self::CertificateExpired => 2,
            Self::MalformedPayload => 3,
            Self::IdentityMismatch => 4,
            Self::NoConversation => 5,
            Self::ClosedConversation => 6,
            Self::TooManyConversations => 7,
            Self::SessionAuthentication => 8,
            Self::SessionDuplicate => 9,
            Self::SessionRefused => 10,
            Self::PeerOutOfSync => 11,
            Self::ContentRefused => 12,
            Self::StaleResetRequest => 13,
            Self::AcknowledgementDeferred => 14,
            Self::AlteredDuplicate => 15,
        }
    }
}

/// Counters of what the endpoint dropped and why, plus frames seen again. Stored with the
/// state, so they survive restarts; they never affect behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    dropped: [u64; DropReason::ALL.len()],
    duplicate_frames: u64,
    unanswered_duplicates: u64,
}

impl EndpointStats {
    /// How many frames were dropped for `reason`.
    #[must_use]
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.index()).copied().unwrap_or(0)
    }

    /// Frames dropped for any reason.
    #[must_use]
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Frames seen again within the dedup window (re-acknowledged, not shown again). Not a
    /// loss: the sender had not yet received our acknowledgement.
    #[must_use]
    pub fn duplicate_frames(&self) -> u64 {
        self.duplicate_frames
    }

    /// Duplicates not acknowledged again because they came sooner than their sender
    /// retransmits, or beyond the re-acknowledgement budget (`docs/transport.md` §3.4): replays,
    /// or a restarted sender resending at once. A genuine sender retransmits later and is
    /// acknowledged then, so this is not a loss.
    #[must_use]
    pub fn unanswered_duplicates(&self) -> u64 {
        self.unanswered_duplicates
    }

    /// Session messages that failed to authenticate (shorthand for
    /// `dropped(DropReason::SessionAuthentication)`).
    #[must_use]
    pub fn authentication_failures(&self) -> u64 {
        self.dropped(DropReason::SessionAuthentication)
    }

    pub(crate) fn record(&mut self, reason: DropReason) {
        if let Some(c) = self.dropped.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }

    pub(crate) fn record_duplicate(&mut self) {
        self.duplicate_frames = self.duplicate_frames.saturating_add(1);
    }

    pub(crate) fn record_unanswered_duplicate(&mut self) {
        self.unanswered_duplicates = self.unanswered_duplicates.saturating_add(1);
    }

    pub(crate) fn counters(&self) -> impl Iterator<Item = u64> + '_ {
        self.dropped
            .iter()
            .copied()
            .chain([self.duplicate_frames, self.unanswered_duplicates])
    }

    /// Rebuilds from [`EndpointStats::counters`] order; `None` if the count is wrong.
    pub(crate) fn from_counters(values: &[u64]) -> Option<Self> {
        let (unanswered, rest) = values.split_last()?;
        let (dup, dropped) = rest.split_last()?;
        Some(Self {
            dropped: dropped.try_into().ok()?,
            duplicate_frames: *dup,
            unanswered_duplicates: *unanswered,
        })
    }

    /// Number of counters in the stored form.
    pub(crate) const COUNTERS: usize = DropReason::ALL.len() + 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter_and_name() {
        let mut s = EndpointStats::default();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            for _ in 0..=i {
                s.record(*r);
            }
        }
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(s.dropped(*r), i as u64 + 1);
        }
        let names: std::collections::BTreeSet<_> =
            DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        let values: Vec<u64> = s.counters().collect();
        assert_eq!(EndpointStats::from_counters(&values), Some(s));
    }
}
