//! One conversation's state, what we keep of our own frames until they are acknowledged, and
//! the tombstone a closed conversation shrinks to.

use std::collections::{BTreeSet, VecDeque};

use confide_crypto::{
    Timestamp,
    identity::IdentityPublicKey,
    secret::{EnvelopeSecret, ct_eq},
};
use confide_policy::{ConversationPolicy, MessageId};
use confide_sealed::{DeliveryToken, Role, SymmetricSealer};
use confide_session::SessionRecord;
use confide_transport::{Address, FrameId};
use zeroize::Zeroizing;

use crate::consts::{
    LOG_ENTRIES_PER_CHUNK, MAX_HONOURED_RESETS, MAX_RECENT_RECEIVED, MAX_RECENTLY_DELIVERED,
};
use crate::event::{ConversationId, Party};

/// What kind of frame an outbox entry carries, so its acknowledgement is reported right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SentKind {
    Text,
    Control,
    /// A resume frame: its acknowledgement confirms the peer compared what we hold.
    Resume,
}

impl SentKind {
    pub(crate) const fn to_byte(self) -> u8 {
        match self {
            Self::Text => 1,
            Self::Control => 2,
            Self::Resume => 3,
        }
    }

    pub(crate) const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Text),
            2 => Some(Self::Control),
            3 => Some(Self::Resume),
            _ => None,
        }
    }
}

/// An outgoing reliable frame waiting for its end-to-end acknowledgement. It keeps the
/// content frame, erased when it leaves the outbox, to encrypt it again in the current
/// session when the frame must change: in a new session after a reset, under a renewed
/// certificate, or when a symmetric frame goes again with public keys. (The frame as sent
/// is kept by the delivery machine's outbox entry; the session message inside it is not
/// kept a second time.)
#[derive(Clone)]
pub(crate) struct SentRecord {
    pub(crate) conversation: ConversationId,
    pub(crate) message: MessageId,
    pub(crate) kind: SentKind,
    /// The encoded content frame (plaintext).
    pub(crate) content: Zeroizing<Vec<u8>>,
    /// The frame as sent carried our delivery token (the peer had not confirmed it yet): its
    /// acknowledgement confirms the token.
    pub(crate) carries_token: bool,
}

/// A text whose delivery was given up, remembered so that a late acknowledgement still
/// reports it delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GivenUp {
    pub(crate) conversation: ConversationId,
    pub(crate) message: MessageId,
}

/// One conversation: the peer, its session record and its retention policy.
#[derive(Clone)]
pub(crate) struct Conversation {
    pub(crate) peer_address: Address,
    pub(crate) peer_identity: IdentityPublicKey,
    pub(crate) peer_role: Option<Role>,
    pub(crate) record: SessionRecord,
    pub(crate) policy: ConversationPolicy,
    /// When our current session was started by us (for the unanswered-session age); `None`
    /// if the peer started it.
    pub(crate) initiated_at: Option<Timestamp>,
    /// Sequence number the next incoming message gets.
    pub(crate) next_seq: u64,
    /// When we last asked the peer to reset the session.
    pub(crate) reset_requested_at: Option<Timestamp>,
    /// Our texts the peer acknowledged recently, in the order the acknowledgements arrived
    /// (what a peer that restored an older backup may have lost).
    pub(crate) recently_delivered: DeliveredLog,
    /// Frame ids of the peer's latest texts we received, oldest first (sent in a resume frame
    /// after an import, so the peer can tell what a restored backup lost).
    pub(crate) recent_received: VecDeque<FrameId>,
    /// We imported a state (or the session was reset) and the peer has not yet acknowledged
    /// a resume frame telling it what we hold: one goes out again with our next activity.
    pub(crate) resume_unconfirmed: bool,
    /// Sessions (by base key; all zero: "no session") whose reset we honoured, with when: a
    /// replayed request for one of them only gets a fresh hello, not another reset.
    pub(crate) reset_honoured: VecDeque<([u8; 32], Timestamp)>,
    /// Our close frame's transport id and when it was sent (retransmitted for
    /// [`CLOSE_RETRANSMIT_PERIOD`](crate::consts::CLOSE_RETRANSMIT_PERIOD)).
    pub(crate) close_sent: Option<(FrameId, Timestamp)>,
    /// A frame from the peer's address under a new identity, held for the app's decision.
    /// (the frame, the new identity its certificate names).
    pub(crate) held_identity_change: Option<(Vec<u8>, IdentityPublicKey)>,
    /// Frame ids of the peer's frames received and not yet acknowledged (at most
    /// `MAX_IDS_PER_FRAME`), in arrival order.
    pub(crate) pending_acks: Vec<FrameId>,
    /// When the batch of `pending_acks` leaves ([`AckPolicy::Batched`](crate::AckPolicy)).
    pub(crate) ack_due: Option<Timestamp>,
    /// The peer's delivery token (for the relay), from its certified bundle or its frames.
    pub(crate) peer_token: Option<DeliveryToken>,
    /// The peer acknowledged a frame carrying our delivery token (in this session): our
    /// frames stop carrying it.
    pub(crate) token_confirmed: bool,
    /// How the peer was verified beyond its certificate (by code, or by the referral the
    /// conversation started from).
    pub(crate) verified: Option<crate::Verification>,
    /// Failed verification-by-code attempts (at most `MAX_CODE_FAILURES`).
    pub(crate) code_failures: u8,
}

impl Conversation {
    pub(crate) fn new(
        peer_address: Address,
        peer_identity: IdentityPublicKey,
        peer_role: Option<Role>,
        record: SessionRecord,
        policy: ConversationPolicy,
        initiated_at: Option<Timestamp>,
    ) -> Self {
        Self {
            peer_address,
            peer_identity,
            peer_role,
            record,
            policy,
            initiated_at,
            next_seq: 0,
            reset_requested_at: None,
            recently_delivered: DeliveredLog::default(),
            recent_received: VecDeque::new(),
            resume_unconfirmed: false,
            reset_honoured: VecDeque::new(),
            close_sent: None,
            held_identity_change: None,
            pending_acks: Vec::new(),
            ack_due: None,
            peer_token: None,
            token_confirmed: false,
            verified: None,
            code_failures: 0,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.policy.closed_by().is_none()
    }

    /// Remembers a delivered text, forgetting the oldest beyond [`MAX_RECENTLY_DELIVERED`].
    pub(crate) fn note_delivered(&mut self, id: MessageId, frame: FrameId, now: Timestamp) {
        self.recently_delivered.push(id, frame, now);
    }

    /// Remembers a text received from the peer (its frame id).
    pub(crate) fn note_received(&mut self, frame: FrameId) {
        self.recent_received.push_back(frame);
        while self.recent_received.len() > MAX_RECENT_RECEIVED {
            self.recent_received.pop_front();
        }
    }

    /// Remembers that we honoured a reset of the session named `base_key`.
    pub(crate) fn note_honoured(&mut self, base_key: [u8; 32], now: Timestamp) {
        self.reset_honoured.push_back((base_key, now));
        while self.reset_honoured.len() > MAX_HONOURED_RESETS {
            self.reset_honoured.pop_front();
        }
    }

    /// The texts a peer that imported a state may no longer have, given the ids of our
    /// frames it holds ([`DeliveredLog::lost_after_resume`]).
    pub(crate) fn lost_after_resume(&mut self, received: &[FrameId]) -> Vec<MessageId> {
        self.recently_delivered.lost_after_resume(received)
    }

    /// Whether a closed conversation has nothing left to do and may shrink to a tombstone.
    pub(crate) fn is_drained(&self) -> bool {
        !self.is_open() && self.close_sent.is_none() && self.policy.poll_timeout().is_none()
    }
}

/// One symmetric epoch we send in: its sealer, and the envelope secret of the session it
/// belongs to (the epoch ends when the conversation's session changes).
pub(crate) struct OutgoingEpoch {
    pub(crate) sealer: SymmetricSealer,
    pub(crate) secret: EnvelopeSecret,
    /// Names the epoch within this endpoint's run (never stored).
    pub(crate) serial: u64,
    /// The peer acknowledged a symmetric envelope of this epoch: it surely holds the
    /// epoch's window, so relay receipts may hold back retransmissions of its frames.
    pub(crate) proven: bool,
}

impl OutgoingEpoch {
    /// Whether this epoch may seal the next envelope at `now` in the session whose envelope
    /// secret is `secret`.
    pub(crate) fn usable(&self, now: Timestamp, secret: &EnvelopeSecret) -> bool {
        !self.sealer.is_due_for_renewal(now) && ct_eq(self.secret.expose(), secret.expose())
    }
}

/// Our symmetric sealed-sender epochs to one conversation's peer (`docs/sealed-sender.md`
/// §9.5). **In memory only, on purpose**: after any restart, load or import the first
/// envelope is a public-key one again and starts a new epoch, so no envelope key, nonce or
/// tag is ever used twice whatever state the app restores (§9.8).
///
/// The peer installs an epoch's window when it first handles the frame that started it and
/// acknowledges that frame right after, keeping windows for the
/// [`MAX_EPOCHS_PER_CONVERSATION`] epochs it installed or used last. On a lossy link it
/// handles our public-key frames in another order than we sent them: a burst of older
/// frames arriving after the one whose epoch became current installs windows that push the
/// current one out, and every symmetric envelope of it would be refused. So the first
/// acknowledgement of each public-key frame that does not make its epoch current counts as a
/// window installed after the current one's was last used (installed, or an envelope opened
/// in it: an acknowledged symmetric envelope of it starts the count again), and once
/// [`MAX_EPOCHS_PER_CONVERSATION`] of them came the current epoch ends: the next envelope
/// starts a new one.
///
/// [`MAX_EPOCHS_PER_CONVERSATION`]: confide_sealed::MAX_EPOCHS_PER_CONVERSATION
#[derive(Default)]
pub(crate) struct SenderEpochs {
    /// The epoch the peer confirmed (it acknowledged the frame that started it): used for
    /// every envelope while it is usable.
    pub(crate) current: Option<OutgoingEpoch>,
    /// Windows the peer installed since it last used the current epoch's, as far as its
    /// acknowledgements tell: public-key frames acknowledged since, whose epochs did not
    /// become current.
    pub(crate) installed_since_current: usize,
    /// Epochs started by public-key envelopes in reliable frames not yet acknowledged, with
    /// those frames' ids, oldest first (at most [`MAX_PENDING_SENDER_EPOCHS`]). An
    /// acknowledged one becomes current and the pending ones older than it are dropped: a
    /// late acknowledgement never takes us back to an older epoch.
    ///
    /// [`MAX_PENDING_SENDER_EPOCHS`]: crate::consts::MAX_PENDING_SENDER_EPOCHS
    pub(crate) pending: VecDeque<(FrameId, OutgoingEpoch)>,
}

impl SenderEpochs {
    /// `payload` sealed as the next envelope of the current epoch, with the epoch's serial, if
    /// there is a current epoch and it is usable at `now` with the session's envelope secret
    /// `secret` (the one check every symmetric envelope goes through); its last `clear_len`
    /// bytes (a fresh session message's ciphertext, or none) travel without a second
    /// encryption. `None` changes nothing.
    pub(crate) fn seal_current(
        &mut self,
        now: Timestamp,
        secret: &EnvelopeSecret,
        payload: &[u8],
        clear_len: usize,
    ) -> Option<(Vec<u8>, u64)> {
        let current = self.current.as_mut()?;
        if !current.usable(now, secret) {
            return None;
        }
        let envelope = current
            .sealer
            .seal_with_clear_suffix(now, payload, clear_len)
            .ok()?;
        Some((envelope, current.serial))
    }
}

impl core::fmt::Debug for SenderEpochs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            current,
            installed_since_current,
            pending,
        } = self;
        f.debug_struct("SenderEpochs")
            .field("current", &current.as_ref().map(|e| e.sealer.next_index()))
            .field("installed_since_current", installed_since_current)
            .field("pending", &pending.len())
            .finish()
    }
}

/// What remains of a closed conversation once its timers ran out: who closed it and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub(crate) closed_by: Party,
    pub(crate) shrunk_at: Timestamp,
}

/// One of our texts the peer acknowledged: content id, frame id, when, and its place in the
/// order acknowledgements arrived (its record's key, `docs/endpoint.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) order: u64,
    pub(crate) message: MessageId,
    pub(crate) frame: FrameId,
    pub(crate) at: Timestamp,
}

/// The texts the peer acknowledged recently, oldest first, at most
/// [`MAX_RECENTLY_DELIVERED`]; each is a record of its own, so a text acknowledged writes one
/// small record and does not rewrite the others.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeliveredLog {
    /// Ascending `order`.
    pub(crate) entries: VecDeque<Delivered>,
    /// The order the next entry gets (above every entry's).
    pub(crate) next_order: u64,
    /// Orders of entries added or dropped since [`DeliveredLog::take_changed`] (bookkeeping
    /// for incremental persistence, not state).
    changed: BTreeSet<u64>,
}

impl DeliveredLog {
    /// From stored entries (ascending order, each below `next_order`); `None` if they are
    /// not, or too many.
    pub(crate) fn loaded(entries: Vec<Delivered>, next_order: u64) -> Option<Self> {
        if entries.len() > MAX_RECENTLY_DELIVERED
            || entries.iter().any(|d| d.order >= next_order)
            || entries.windows(2).any(|pair| match pair {
                [a, b] => a.order >= b.order,
                _ => false,
            })
        {
            return None;
        }
        Some(Self {
            entries: entries.into(),
            next_order,
            changed: BTreeSet::new(),
        })
    }

    /// Remembers a delivered text, forgetting the oldest beyond [`MAX_RECENTLY_DELIVERED`].
    fn push(&mut self, message: MessageId, frame: FrameId, at: Timestamp) {
        let order = self.next_order;
        self.next_order = self.next_order.saturating_add(1);
        self.entries.push_back(Delivered {
            order,
            message,
            frame,
            at,
        });
        self.changed.insert(order);
        while self.entries.len() > MAX_RECENTLY_DELIVERED {
            if let Some(old) = self.entries.pop_front() {
                self.changed.insert(old.order);
            }
        }
    }

    /// Given the ids of our frames a peer that imported a state holds (its last
    /// [`MAX_RECENT_RECEIVED`] texts from us, oldest first), the texts it acknowledged that it
    /// may no longer have. They are forgotten here, so each is reported once.
    ///
    /// Fewer ids than the list holds means the peer lists every text of ours it has: each
    /// acknowledged text not listed is lost. A full list names only the latest: the texts
    /// acknowledged from the first listed one on, and not listed, are reported; those
    /// acknowledged before it are taken as older than the list. Our log is in the order
    /// acknowledgements arrived, which is not always the order the peer received the texts
    /// in: anchoring on the last listed text (as before) missed a lost text whose
    /// acknowledgement overtook that of one the peer kept. A text reported here may have
    /// survived (hence "possibly lost"); one not reported is held, unless acknowledgements
    /// were reordered across a whole list.
    pub(crate) fn lost_after_resume(&mut self, received: &[FrameId]) -> Vec<MessageId> {
        let from = if received.len() < MAX_RECENT_RECEIVED {
            0
        } else {
            self.entries
                .iter()
                .position(|d| received.contains(&d.frame))
                .unwrap_or(0)
        };
        // Only the unlisted go: a listed text stays, so a later restore of the peer (to a state
        // older still) is measured against the whole log again.
        self.remove_from(from, |d| !received.contains(&d.frame))
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    /// Removes and returns the entries from position `from` on that `remove` selects, in
    /// order.
    fn remove_from(&mut self, from: usize, remove: impl Fn(&Delivered) -> bool) -> Vec<Delivered> {
        let mut removed = Vec::new();
        let mut position = 0usize;
        self.entries.retain(|d| {
            let keep = position < from || !remove(d);
            position = position.saturating_add(1);
            if !keep {
                removed.push(*d);
            }
            keep
        });
        self.changed.extend(removed.iter().map(|d| d.order));
        removed
    }

    /// The orders of entries added or dropped since the previous call; forgets them.
    pub(crate) fn take_changed(&mut self) -> BTreeSet<u64> {
        core::mem::take(&mut self.changed)
    }

    /// The chunks ([`LOG_ENTRIES_PER_CHUNK`] orders each) that hold entries, ascending.
    pub(crate) fn chunks(&self) -> BTreeSet<u64> {
        self.entries
            .iter()
            .map(|d| d.order / LOG_ENTRIES_PER_CHUNK)
            .collect()
    }

    /// The entries of chunk `chunk`, ascending; empty if it holds none.
    pub(crate) fn chunk(&self, chunk: u64) -> Vec<Delivered> {
        let Some(orders) = super::tracked::chunk_orders(chunk) else {
            return Vec::new();
        };
        let from = self.entries.partition_point(|d| d.order < orders.start);
        self.entries
            .iter()
            .skip(from)
            .take_while(|d| orders.contains(&d.order))
            .copied()
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn frame(i: u8) -> FrameId {
        FrameId::from_bytes([i; 16])
    }

    fn message(i: u8) -> MessageId {
        MessageId::from_bytes([i; 16])
    }

    /// A log of our texts `ids`, acknowledged in that order.
    fn log(ids: impl IntoIterator<Item = u8>) -> DeliveredLog {
        let mut log = DeliveredLog::default();
        for i in ids {
            log.push(message(i), frame(i), Timestamp::from_millis(u64::from(i)));
        }
        let _ = log.take_changed();
        log
    }

    fn kept(log: &DeliveredLog) -> Vec<MessageId> {
        log.entries.iter().map(|d| d.message).collect()
    }

    #[test]
    fn a_peer_listing_fewer_texts_than_its_list_holds_lost_every_other() {
        // The peer received 2 before 1, but the acknowledgement of 1 arrived first; the state
        // it restored kept 2 only. (Anchoring on the last listed text reported 3 alone.)
        let mut l = log([1, 2, 3]);
        assert_eq!(l.lost_after_resume(&[frame(2)]), [message(1), message(3)]);
        assert_eq!(kept(&l), [message(2)], "a listed text stays in the log");
        assert_eq!(
            l.take_changed(),
            [0, 2].into(),
            "the orders of the removed entries"
        );
        // Reported once: the same resume again reports nothing.
        assert!(l.lost_after_resume(&[frame(2)]).is_empty());
        // A later restore to an older state still: the text it kept is measured again.
        assert_eq!(l.lost_after_resume(&[]), [message(2)]);
        assert!(l.entries.is_empty());
    }

    #[test]
    fn a_full_list_names_only_the_latest_texts() {
        // Texts 0 ..= 19 acknowledged in order; the peer lists its latest 16 (3 ..= 18).
        let mut l = log(0..20);
        let held: Vec<FrameId> = (3..19).map(frame).collect();
        assert_eq!(held.len(), MAX_RECENT_RECEIVED);
        // 19 came after the first listed text and is not listed: lost. 0 ..= 2 were
        // acknowledged before it: older than the list, kept.
        assert_eq!(l.lost_after_resume(&held), [message(19)]);
        assert_eq!(kept(&l), (0..19).map(message).collect::<Vec<_>>());
        // The first listed text acknowledged after an unlisted one: the unlisted one before it
        // is taken as older; one between listed texts is lost.
        let mut l = log([
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 30, 18,
        ]);
        let held: Vec<FrameId> = (2..18).map(frame).collect();
        assert_eq!(held.len(), MAX_RECENT_RECEIVED);
        assert_eq!(l.lost_after_resume(&held), [message(30), message(18)]);
        // A full list with none of the logged texts: every logged text is lost.
        let mut l = log(0..4);
        let held: Vec<FrameId> = (100..116).map(frame).collect();
        assert_eq!(
            l.lost_after_resume(&held),
            (0..4).map(message).collect::<Vec<_>>()
        );
    }
}
