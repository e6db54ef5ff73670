//! The per-conversation policy state machine.

use crate::content::{self, Body, ContentFrame, MessageId};
use crate::error::{
    CloseError, IncomingError, ReceiptError, SendError, StateEncodeError, TimerChangeError,
    UnsendError,
};
use crate::limits::{
    MAX_CLOCK_SKEW, MAX_IDS_PER_FRAME, MAX_PENDING_DELETES, MAX_TEXT_LEN, MAX_TOMBSTONES,
    MAX_TRACKED_MESSAGES, PENDING_DELETE_LIFETIME, STATE_VERSION, UNSEND_RECEIVE_GRACE,
    UNSEND_WINDOW,
};
use crate::queue::ExpiryQueue;
use crate::retention::{OrgBounds, RetentionPolicy, Side, StartRule, TimerSetting};
use crate::typed::{CodeStep, ReferralAnswer, UserContent};
use confide_crypto::codec::{DecodeError, Reader, Writer};
use confide_crypto::{Duration, FrameId, Timestamp};
use core::cmp::Ordering;
use core::fmt;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use zeroize::Zeroizing;

/// Something the facade must act on. Poll with [`ConversationPolicy::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyEvent {
    /// The conversation timer changed (by either side). Show it to the user.
    TimerChanged {
        /// The new setting as agreed.
        setting: TimerSetting,
        /// The policy this side now applies to new messages (the setting clamped by the
        /// organisation bounds).
        effective: RetentionPolicy,
    },
    /// A message's timer ran out. Erase its stored plaintext (and anything derived) now.
    Expired {
        /// The message.
        id: MessageId,
    },
    /// A message was deleted by its author. Erase its stored plaintext now.
    Deleted {
        /// The message.
        id: MessageId,
        /// Who deleted (always its author).
        author: Side,
    },
    /// The conversation was closed. The session keys must be erased (see [`EraseSessionKeys`]).
    Closed {
        /// Who closed it.
        by: Side,
    },
}

/// Instruction: erase this conversation's session keys (after sending the close frame, if it
/// is ours). Nothing can be sent or received in the conversation afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the session keys must be erased"]
pub struct EraseSessionKeys;

/// A frame to hand to the session for encryption. Its bytes are zeroized on drop.
#[must_use = "the frame must be sent"]
pub struct OutgoingFrame {
    id: MessageId,
    bytes: Zeroizing<Vec<u8>>,
}

impl OutgoingFrame {
    /// The frame's message id.
    #[must_use]
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The encoded frame.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded frame, still zeroized on drop.
    #[must_use]
    pub fn into_bytes(self) -> Zeroizing<Vec<u8>> {
        self.bytes
    }
}

impl fmt::Debug for OutgoingFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes carry the plaintext: only their length prints.
        let Self { id, bytes } = self;
        f.debug_struct("OutgoingFrame")
            .field("id", id)
            .field("len", &bytes.len())
            .finish_non_exhaustive()
    }
}

/// A message to show the user: a text, an attachment, a screenshot notice or a referral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The message id.
    pub id: MessageId,
    /// What it carries.
    pub content: UserContent,
    /// The sender's claimed send time (not trusted beyond [`MAX_CLOCK_SKEW`]).
    pub claimed_send_time: Timestamp,
    /// The policy enforced on it: the timer it was sent under, clamped by the org bounds.
    pub policy: RetentionPolicy,
    /// When it expires, if already known (after-read timers get one when read).
    pub deadline: Option<Timestamp>,
}

/// What an accepted incoming frame means for the facade.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Incoming {
    /// A new text: show it until an `Expired` or `Deleted` event names its id.
    Message(ReceivedMessage),
    /// A text already seen (live or gone): do nothing.
    Duplicate {
        /// The message id.
        id: MessageId,
    },
    /// A text whose timer had already run out when it arrived: never show it.
    ExpiredOnArrival {
        /// The message id.
        id: MessageId,
    },
    /// A text its author had deleted before it arrived: never show it.
    Suppressed {
        /// The message id.
        id: MessageId,
    },
    /// A timer change or delete was handled; its effects are in the events.
    Control,
    /// The peer acknowledges delivery of these frames (by transport id).
    DeliveryAcks {
        /// Acknowledged frame ids, ascending.
        ids: Vec<FrameId>,
    },
    /// The peer has read these messages (after-read timers of ours among them started).
    ReadReceipts {
        /// Read ids, ascending.
        ids: Vec<MessageId>,
    },
    /// The peer closed the conversation: erase the session keys.
    Closed(EraseSessionKeys),
    /// The peer imported a stored state and holds these frames of ours (see
    /// [`Body::Resume`]).
    Resume {
        /// Transport ids of our frames the peer holds, ascending.
        received: Vec<FrameId>,
    },
    /// The peer answered one of our referrals.
    ReferralAnswer(ReferralAnswer),
    /// A step of a verification by short code from the peer (the endpoint runs the exchange).
    Code(CodeStep),
}

/// What is remembered about one message until it expires, is deleted or is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TrackedMessage {
    author: Side,
    /// Local send time (ours) or local receive time (theirs).
    local_time: Timestamp,
    /// The author's claimed send time (equal to `local_time` for ours).
    claimed_send_time: Timestamp,
    /// The enforced policy (the stamped timer clamped by the org bounds).
    policy: RetentionPolicy,
    /// Start of an after-read timer: local read time (theirs) or receipt arrival (ours).
    read_at: Option<Timestamp>,
}

/// A delete whose target has not arrived yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingDelete {
    delete_claimed_send_time: Timestamp,
    received_at: Timestamp,
}

/// Start of an after-send timer for a received message (the skew rule):
/// the claimed send time if it is earlier than the local receive time, but never earlier than
/// `receive - MAX_CLOCK_SKEW`; otherwise the local receive time.
#[must_use]
pub fn after_send_start(local_receive_time: Timestamp, claimed_send_time: Timestamp) -> Timestamp {
    if claimed_send_time >= local_receive_time {
        local_receive_time
    } else {
        claimed_send_time.max(local_receive_time.saturating_sub(MAX_CLOCK_SKEW))
    }
}

/// How long after its local time an untimed message stops being tracked.
const RETIRE_AFTER: Duration = UNSEND_WINDOW.saturating_add(UNSEND_RECEIVE_GRACE);

/// Retention state of one conversation: the agreed timer, every message's deadline, pending
/// deletes, tombstones and the close flag. Sans-IO: every input carries `now`.
///
/// Run loop: after every `handle_*` call or command, drain [`poll_event`](Self::poll_event),
/// then arm a wake-up at [`poll_timeout`](Self::poll_timeout) and call
/// [`handle_timeout`](Self::handle_timeout) when it fires (a spurious call is a no-op).
#[derive(Clone, PartialEq, Eq)]
pub struct ConversationPolicy {
    local: Side,
    org: OrgBounds,
    current: TimerSetting,
    closed_by: Option<Side>,
    messages: BTreeMap<MessageId, TrackedMessage>,
    message_queue: ExpiryQueue<MessageId>,
    pending_deletes: BTreeMap<MessageId, PendingDelete>,
    pending_queue: ExpiryQueue<MessageId>,
    tombstones: VecDeque<MessageId>,
    tombstone_set: BTreeSet<MessageId>,
    /// The position of the oldest tombstone (bookkeeping for stores, not state).
    tombstone_first: TombstonePosition,
    events: VecDeque<PolicyEvent>,
    /// Bookkeeping for incremental persistence, not state.
    changes: EntryChanges,
}

/// The position of the oldest tombstone in the order tombstones were made: the newest is at
/// `first + len - 1` (tombstones are added at the back and forgotten at the front, so their
/// positions are contiguous). Stores that keep tombstones in chunks of
/// [`TOMBSTONES_PER_CHUNK`] positions ([`ConversationPolicy::tombstone_chunk_to_bytes`])
/// name a chunk by `position / TOMBSTONES_PER_CHUNK`. Bookkeeping: two states with the same
/// tombstones in the same order are equal whatever their positions.
#[derive(Clone, Copy, Default)]
struct TombstonePosition(u64);

impl PartialEq for TombstonePosition {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for TombstonePosition {}

/// Tombstones per stored chunk.
///
/// Reason: a stored record costs a key and about 60 bytes of sealing, and opening one costs
/// about a microsecond; 64 ids (1 KiB) per chunk keep a full conversation's 4,096 tombstones to
/// 64 records, while a new tombstone rewrites at most 1 KiB.
pub const TOMBSTONES_PER_CHUNK: u64 = 64;

/// What changed since [`ConversationPolicy::take_changed_entries`]: the ids whose tracked
/// message or pending delete was added, changed or removed, and the tombstone chunks that
/// gained or lost an id. Not state: two policies that differ only in it are equal.
#[derive(Clone, Default)]
struct EntryChanges {
    ids: BTreeSet<MessageId>,
    chunks: BTreeSet<u64>,
}

impl PartialEq for EntryChanges {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for EntryChanges {}

/// Kinds of a per-message entry ([`ConversationPolicy::entry_to_bytes`]).
const ENTRY_TRACKED: u8 = 1;
const ENTRY_PENDING_DELETE: u8 = 2;

impl fmt::Debug for ConversationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            local,
            org,
            current,
            closed_by,
            messages,
            message_queue: _,
            pending_deletes,
            pending_queue: _,
            tombstones,
            tombstone_set: _,
            tombstone_first: _,
            events,
            changes: _,
        } = self;
        f.debug_struct("ConversationPolicy")
            .field("local", local)
            .field("org", org)
            .field("current", current)
            .field("closed_by", closed_by)
            .field("tracked_messages", &messages.len())
            .field("pending_deletes", &pending_deletes.len())
            .field("tombstones", &tombstones.len())
            .field("pending_events", &events.len())
            .finish_non_exhaustive()
    }
}

impl ConversationPolicy {
    /// A new conversation seen from `local`, under `org` bounds, starting with `initial`
    /// (clamped) as version 0. Both sides should start with the same initial policy; if they
    /// do not, the first stamped frames resolve it (stricter wins).
    #[must_use]
    pub fn new(local: Side, org: OrgBounds, initial: RetentionPolicy) -> Self {
        Self {
            local,
            org,
            current: TimerSetting::initial(org.clamp(initial)),
            closed_by: None,
            messages: BTreeMap::new(),
            message_queue: ExpiryQueue::new(),
            pending_deletes: BTreeMap::new(),
            pending_queue: ExpiryQueue::new(),
            tombstones: VecDeque::new(),
            tombstone_set: BTreeSet::new(),
            tombstone_first: TombstonePosition::default(),
            events: VecDeque::new(),
            changes: EntryChanges::default(),
        }
    }

    // ---- getters -------------------------------------------------------------------------

    /// This side.
    #[must_use]
    pub fn local_side(&self) -> Side {
        self.local
    }

    /// The organisation bounds.
    #[must_use]
    pub fn org_bounds(&self) -> OrgBounds {
        self.org
    }

    /// The agreed timer setting.
    #[must_use]
    pub fn current_timer(&self) -> TimerSetting {
        self.current
    }

    /// The policy new messages get here: the agreed setting clamped by the org bounds.
    #[must_use]
    pub fn effective_policy(&self) -> RetentionPolicy {
        self.org.clamp(self.current.policy)
    }

    /// Who closed the conversation, if it is closed.
    #[must_use]
    pub fn closed_by(&self) -> Option<Side> {
        self.closed_by
    }

    /// The expiry deadline of a tracked message, if it has one yet.
    #[must_use]
    pub fn deadline_of(&self, id: &MessageId) -> Option<Timestamp> {
        self.messages.get(id).and_then(|m| self.deadline(m))
    }

    /// The author of a tracked message.
    #[must_use]
    pub fn author_of(&self, id: &MessageId) -> Option<Side> {
        self.messages.get(id).map(|m| m.author)
    }

    /// Number of tracked messages.
    #[must_use]
    pub fn tracked_messages(&self) -> usize {
        self.messages.len()
    }

    /// Number of deletes waiting for their target.
    #[must_use]
    pub fn pending_deletes(&self) -> usize {
        self.pending_deletes.len()
    }

    /// Whether `id` is remembered only to refuse replays.
    #[must_use]
    pub fn is_tombstoned(&self, id: &MessageId) -> bool {
        self.tombstone_set.contains(id)
    }

    /// The oldest a skipped message key in the session may be: keys stored before the returned
    /// time must be pruned (`session.prune_skipped_keys(cutoff)`). It is `now` minus the
    /// enforced timer length minus [`MAX_CLOCK_SKEW`]; `None` when the enforced policy is off.
    /// A message that has not arrived within its retention is treated as lost.
    #[must_use]
    pub fn skipped_key_cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        self.effective_policy()
            .duration()
            .map(|d| now.saturating_sub(d.saturating_add(MAX_CLOCK_SKEW)))
    }

    // ---- sans-IO outputs -----------------------------------------------------------------

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PolicyEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (
            self.message_queue.next_deadline(),
            self.pending_queue.next_deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs everything due at or before `now`: expires messages (an `Expired` event each),
    /// stops tracking untimed messages past their unsend window, and drops stale pending
    /// deletes. After a long sleep one call handles everything that fell due. A clock that
    /// went back finds nothing due; no deadline moves.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some((id, _)) = self.message_queue.pop_due(now) {
            if let Some(message) = self.messages.remove(&id) {
                self.changes.ids.insert(id);
                self.tombstone(id);
                if self.deadline(&message).is_some_and(|d| d <= now) {
                    self.events.push_back(PolicyEvent::Expired { id });
                }
            }
        }
        while let Some((target, _)) = self.pending_queue.pop_due(now) {
            self.pending_deletes.remove(&target);
            self.changes.ids.insert(target);
            self.tombstone(target);
        }
    }

    // ---- commands ------------------------------------------------------------------------

    /// Wraps a user text into a frame stamped with the current timer, and starts tracking it
    /// (authored by this side; after-send timers start at `now`).
    pub fn send_text(
        &mut self,
        id: MessageId,
        text: &[u8],
        now: Timestamp,
    ) -> Result<OutgoingFrame, SendError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(SendError::TextTooLong {
                len: text.len(),
                max: MAX_TEXT_LEN,
            });
        }
        self.check_new_message(&id)?;
        let bytes = content::encode_text_frame(id, now, &self.current, text).map_err(|_| {
            SendError::TextTooLong {
                len: text.len(),
                max: MAX_TEXT_LEN,
            }
        })?;
        self.track_own(id, now);
        Ok(OutgoingFrame { id, bytes })
    }

    /// Wraps any user-visible content (a text, an attachment, a screenshot notice, a referral)
    /// into a frame stamped with the current timer, and starts tracking it like a text: it
    /// expires with the timer and its author may take it back.
    pub fn send_content(
        &mut self,
        id: MessageId,
        content: &UserContent,
        now: Timestamp,
    ) -> Result<OutgoingFrame, SendError> {
        let body = match content {
            UserContent::Text(text) => return self.send_text(id, text.as_bytes(), now),
            UserContent::Attachment(pointer) => Body::Attachment(pointer.clone()),
            UserContent::ScreenshotNotice => Body::ScreenshotNotice,
            UserContent::Referral(referral) => Body::Referral(referral.clone()),
        };
        self.check_new_message(&id)?;
        let frame = ContentFrame {
            id,
            claimed_send_time: now,
            timer: self.current,
            body,
        };
        let bytes = frame.encode().map_err(|_| SendError::ContentOutOfLimits {
            kind: content.kind(),
        })?;
        self.track_own(id, now);
        Ok(OutgoingFrame {
            id,
            bytes: Zeroizing::new(bytes),
        })
    }

    /// The answer to one of the peer's referrals (a control frame: not tracked, not shown).
    pub fn answer_referral(
        &mut self,
        answer: ReferralAnswer,
        id: MessageId,
        now: Timestamp,
    ) -> Result<OutgoingFrame, ReceiptError> {
        self.control(id, now, Body::ReferralAnswer(answer))
    }

    /// A step of a verification by short code (a control frame: not tracked, not shown).
    pub fn code_step(
        &mut self,
        step: CodeStep,
        id: MessageId,
        now: Timestamp,
    ) -> Result<OutgoingFrame, ReceiptError> {
        self.control(id, now, Body::Code(step))
    }

    /// A control frame carrying `body`, unless the conversation is closed.
    fn control(
        &self,
        id: MessageId,
        now: Timestamp,
        body: Body,
    ) -> Result<OutgoingFrame, ReceiptError> {
        if let Some(by) = self.closed_by {
            return Err(ReceiptError::Closed { by });
        }
        Ok(self.frame(id, now, body))
    }

    /// Whether a new message of ours with `id` may be sent (open, unused id, room to track).
    fn check_new_message(&self, id: &MessageId) -> Result<(), SendError> {
        if let Some(by) = self.closed_by {
            return Err(SendError::Closed { by });
        }
        if self.id_in_use(id) {
            return Err(SendError::IdInUse);
        }
        if self.messages.len() >= MAX_TRACKED_MESSAGES {
            return Err(SendError::TooManyTrackedMessages {
                limit: MAX_TRACKED_MESSAGES,
            });
        }
        Ok(())
    }

    /// Tracks a message of ours sent at `now` under the effective policy.
    fn track_own(&mut self, id: MessageId, now: Timestamp) {
        self.track(
            id,
            TrackedMessage {
                author: self.local,
                local_time: now,
                claimed_send_time: now,
                policy: self.effective_policy(),
                read_at: None,
            },
        );
    }

    /// Proposes a new timer (clamped by the org bounds) as the next version. The frame is
    /// stamped with the old setting; the new one applies here at once (`TimerChanged` event).
    pub fn set_timer(
        &mut self,
        policy: RetentionPolicy,
        id: MessageId,
        now: Timestamp,
    ) -> Result<OutgoingFrame, TimerChangeError> {
        if let Some(by) = self.closed_by {
            return Err(TimerChangeError::Closed { by });
        }
        let version = self
            .current
            .version
            .checked_add(1)
            .ok_or(TimerChangeError::VersionExhausted)?;
        let setting = TimerSetting {
            version,
            proposer: self.local,
            policy: self.org.clamp(policy),
        };
        let frame = self.frame(id, now, Body::TimerChange(setting));
        self.adopt(setting);
        Ok(frame)
    }

    /// Takes back one of this side's messages within [`UNSEND_WINDOW`] of sending it. It is
    /// forgotten here at once (`Deleted` event) and the frame asks the peer to do the same.
    pub fn unsend(
        &mut self,
        target: MessageId,
        id: MessageId,
        now: Timestamp,
    ) -> Result<OutgoingFrame, UnsendError> {
        if let Some(by) = self.closed_by {
            return Err(UnsendError::Closed { by });
        }
        let message = self
            .messages
            .get(&target)
            .ok_or(UnsendError::UnknownMessage)?;
        if message.author != self.local {
            return Err(UnsendError::NotAuthor);
        }
        if now.saturating_duration_since(message.local_time) > UNSEND_WINDOW {
            return Err(UnsendError::WindowClosed);
        }
        let frame = self.frame(id, now, Body::Delete { target });
        self.erase(target);
        self.events.push_back(PolicyEvent::Deleted {
            id: target,
            author: self.local,
        });
        Ok(frame)
    }

    /// The user has read these messages: starts the after-read timers of the peer's messages
    /// among them and returns a read-receipt frame for the ids not written by this side
    /// (`None` if there are none, or if the conversation is closed: timers still start).
    pub fn mark_read(
        &mut self,
        ids: &[MessageId],
        id: MessageId,
        now: Timestamp,
    ) -> Result<Option<OutgoingFrame>, ReceiptError> {
        let peer_ids: Vec<MessageId> = canonical_ids(
            ids.iter()
                .filter(|i| self.messages.get(i).is_none_or(|m| m.author != self.local)),
        );
        if peer_ids.len() > MAX_IDS_PER_FRAME {
            return Err(ReceiptError::TooManyIds {
                count: peer_ids.len(),
                max: MAX_IDS_PER_FRAME,
            });
        }
        for read in &peer_ids {
            self.start_read_timer(*read, now);
        }
        if peer_ids.is_empty() || self.closed_by.is_some() {
            return Ok(None);
        }
        Ok(Some(self.frame(id, now, Body::Read { ids: peer_ids })))
    }

    /// A delivery acknowledgement frame for the transport frames `ids` (sorted and
    /// deduplicated here).
    pub fn acknowledge(
        &mut self,
        ids: &[FrameId],
        id: MessageId,
        now: Timestamp,
    ) -> Result<OutgoingFrame, ReceiptError> {
        if let Some(by) = self.closed_by {
            return Err(ReceiptError::Closed { by });
        }
        let ids = canonical_ids(ids.iter());
        if ids.is_empty() {
            return Err(ReceiptError::NoIds);
        }
        if ids.len() > MAX_IDS_PER_FRAME {
            return Err(ReceiptError::TooManyIds {
                count: ids.len(),
                max: MAX_IDS_PER_FRAME,
            });
        }
        Ok(self.frame(id, now, Body::Ack { ids }))
    }

    /// A resume frame naming the peer's frames this side holds (sorted and deduplicated
    /// here; may be empty), sent once after importing a stored state.
    pub fn resume(
        &mut self,
        received: &[FrameId],
        id: MessageId,
        now: Timestamp,
    ) -> Result<OutgoingFrame, ReceiptError> {
        if let Some(by) = self.closed_by {
            return Err(ReceiptError::Closed { by });
        }
        let received = canonical_ids(received.iter());
        if received.len() > MAX_IDS_PER_FRAME {
            return Err(ReceiptError::TooManyIds {
                count: received.len(),
                max: MAX_IDS_PER_FRAME,
            });
        }
        Ok(self.frame(id, now, Body::Resume { received }))
    }

    /// Ends the conversation from this side. Send the frame, then erase the session keys.
    /// Message timers keep running; nothing else can be sent or received.
    pub fn close(
        &mut self,
        id: MessageId,
        now: Timestamp,
    ) -> Result<(OutgoingFrame, EraseSessionKeys), CloseError> {
        if let Some(by) = self.closed_by {
            return Err(CloseError::AlreadyClosed { by });
        }
        let frame = self.frame(id, now, Body::Close);
        self.closed_by = Some(self.local);
        self.events
            .push_back(PolicyEvent::Closed { by: self.local });
        Ok((frame, EraseSessionKeys))
    }

    // ---- input ---------------------------------------------------------------------------

    /// Handles one decrypted content frame from the peer, received at local time `now`.
    /// On error nothing changes.
    pub fn handle_incoming(
        &mut self,
        frame: &[u8],
        now: Timestamp,
    ) -> Result<Incoming, IncomingError> {
        let frame = ContentFrame::decode(frame)?;
        if let Some(by) = self.closed_by {
            return Err(IncomingError::Closed { by });
        }
        let peer = self.local.peer();
        // Versions only grow: a peer may not jump further than the named step (one frame at
        // u64::MAX would otherwise lock the timer for good).
        let bound = self
            .current
            .version
            .saturating_add(crate::limits::MAX_TIMER_VERSION_STEP);
        let proposed = match &frame.body {
            Body::TimerChange(setting) => setting.version,
            _ => frame.timer.version,
        };
        if frame.timer.version.max(proposed) > bound {
            return Err(IncomingError::TimerVersionJump {
                version: frame.timer.version.max(proposed),
                current: self.current.version,
            });
        }
        // Any setting this side proposed was its current one, and the current one only grows,
        // so a stamp attributed to us that outranks the current one was never ours.
        // Version 0 is each side's configured initial setting, not a proposal: exempt.
        if frame.timer.proposer == self.local
            && frame.timer.version > 0
            && frame.timer.precedence_cmp(&self.current) == Ordering::Greater
        {
            return Err(IncomingError::ForgedTimer {
                version: frame.timer.version,
            });
        }
        match frame.body {
            Body::Text(text) => self.incoming_message(
                frame.id,
                frame.claimed_send_time,
                frame.timer,
                UserContent::Text(text),
                now,
            ),
            Body::Attachment(pointer) => self.incoming_message(
                frame.id,
                frame.claimed_send_time,
                frame.timer,
                UserContent::Attachment(pointer),
                now,
            ),
            Body::ScreenshotNotice => self.incoming_message(
                frame.id,
                frame.claimed_send_time,
                frame.timer,
                UserContent::ScreenshotNotice,
                now,
            ),
            Body::Referral(referral) => self.incoming_message(
                frame.id,
                frame.claimed_send_time,
                frame.timer,
                UserContent::Referral(referral),
                now,
            ),
            Body::ReferralAnswer(answer) => {
                self.adopt(frame.timer);
                Ok(Incoming::ReferralAnswer(answer))
            }
            Body::Code(step) => {
                self.adopt(frame.timer);
                Ok(Incoming::Code(step))
            }
            Body::TimerChange(setting) => {
                if setting.proposer != peer {
                    return Err(IncomingError::ForgedProposer {
                        version: setting.version,
                    });
                }
                self.adopt(frame.timer);
                self.adopt(setting);
                Ok(Incoming::Control)
            }
            Body::Delete { target } => {
                self.incoming_delete(target, frame.claimed_send_time, frame.timer, now)
            }
            Body::Close => {
                self.adopt(frame.timer);
                self.closed_by = Some(peer);
                self.events.push_back(PolicyEvent::Closed { by: peer });
                Ok(Incoming::Closed(EraseSessionKeys))
            }
            Body::Ack { ids } => {
                self.adopt(frame.timer);
                Ok(Incoming::DeliveryAcks { ids })
            }
            Body::Resume { received } => {
                self.adopt(frame.timer);
                Ok(Incoming::Resume { received })
            }
            Body::Read { ids } => {
                self.adopt(frame.timer);
                for read in &ids {
                    if self
                        .messages
                        .get(read)
                        .is_some_and(|m| m.author == self.local)
                    {
                        self.start_read_timer(*read, now);
                    }
                }
                Ok(Incoming::ReadReceipts { ids })
            }
        }
    }

    fn incoming_message(
        &mut self,
        id: MessageId,
        claimed_send_time: Timestamp,
        timer: TimerSetting,
        content: UserContent,
        now: Timestamp,
    ) -> Result<Incoming, IncomingError> {
        let peer = self.local.peer();
        if let Some(existing) = self.messages.get(&id) {
            if existing.author == self.local {
                return Err(IncomingError::IdConflict);
            }
            return Ok(Incoming::Duplicate { id });
        }
        if self.tombstone_set.contains(&id) {
            return Ok(Incoming::Duplicate { id });
        }
        // A delete that arrived first suppresses the text, if the author sent it in the window
        // (both times are the author's claims, from the same clock).
        let pending = self.pending_deletes.get(&id).copied();
        let suppressed = pending.is_some_and(|p| {
            p.delete_claimed_send_time
                .saturating_duration_since(claimed_send_time)
                <= UNSEND_WINDOW
        });
        if suppressed {
            self.drop_pending_delete(&id);
            self.adopt(timer);
            self.tombstone(id);
            self.events
                .push_back(PolicyEvent::Deleted { id, author: peer });
            return Ok(Incoming::Suppressed { id });
        }
        let message = TrackedMessage {
            author: peer,
            local_time: now,
            claimed_send_time,
            policy: self.org.clamp(timer.policy),
            read_at: None,
        };
        let deadline = self.deadline(&message);
        if deadline.is_some_and(|d| d <= now) {
            self.drop_pending_delete(&id);
            self.adopt(timer);
            self.tombstone(id);
            return Ok(Incoming::ExpiredOnArrival { id });
        }
        if self.messages.len() >= MAX_TRACKED_MESSAGES {
            return Err(IncomingError::TooManyTrackedMessages {
                limit: MAX_TRACKED_MESSAGES,
            });
        }
        // A delete sent too late to count is dropped and the text shown.
        self.drop_pending_delete(&id);
        self.adopt(timer);
        self.track(id, message);
        Ok(Incoming::Message(ReceivedMessage {
            id,
            content,
            claimed_send_time,
            policy: message.policy,
            deadline,
        }))
    }

    fn incoming_delete(
        &mut self,
        target: MessageId,
        claimed_send_time: Timestamp,
        timer: TimerSetting,
        now: Timestamp,
    ) -> Result<Incoming, IncomingError> {
        let peer = self.local.peer();
        if let Some(message) = self.messages.get(&target) {
            if message.author != peer {
                return Err(IncomingError::NotAuthor);
            }
            let sender_clock_ok = claimed_send_time
                .saturating_duration_since(message.claimed_send_time)
                <= UNSEND_WINDOW;
            let local_clock_ok = now.saturating_duration_since(message.local_time) <= RETIRE_AFTER;
            if !(sender_clock_ok && local_clock_ok) {
                return Err(IncomingError::UnsendWindowClosed);
            }
            self.adopt(timer);
            self.erase(target);
            self.events.push_back(PolicyEvent::Deleted {
                id: target,
                author: peer,
            });
            return Ok(Incoming::Control);
        }
        self.adopt(timer);
        if self.tombstone_set.contains(&target) || self.pending_deletes.contains_key(&target) {
            return Ok(Incoming::Control);
        }
        if self.pending_deletes.len() >= MAX_PENDING_DELETES
            && let Some((oldest, _)) = self.pending_queue.pop_first()
        {
            self.pending_deletes.remove(&oldest);
            self.changes.ids.insert(oldest);
            self.tombstone(oldest);
        }
        self.changes.ids.insert(target);
        self.pending_deletes.insert(
            target,
            PendingDelete {
                delete_claimed_send_time: claimed_send_time,
                received_at: now,
            },
        );
        self.pending_queue
            .insert(target, now.saturating_add(PENDING_DELETE_LIFETIME));
        Ok(Incoming::Control)
    }

    // ---- internals -----------------------------------------------------------------------

    fn frame(&self, id: MessageId, now: Timestamp, body: Body) -> OutgoingFrame {
        let frame = ContentFrame {
            id,
            claimed_send_time: now,
            timer: self.current,
            body,
        };
        // Control bodies built here are canonical by construction (sorted bounded ids, a
        // version above the stamp), so encoding cannot fail; an empty frame would be refused
        // by the peer's decoder rather than misread.
        OutgoingFrame {
            id,
            bytes: Zeroizing::new(frame.encode().unwrap_or_default()),
        }
    }

    /// Accepts `setting` if it outranks the current one.
    fn adopt(&mut self, setting: TimerSetting) {
        if setting.precedence_cmp(&self.current) == Ordering::Greater {
            self.current = setting;
            self.events.push_back(PolicyEvent::TimerChanged {
                setting,
                effective: self.org.clamp(setting.policy),
            });
        }
    }

    fn drop_pending_delete(&mut self, target: &MessageId) {
        self.pending_queue.cancel(target);
        if self.pending_deletes.remove(target).is_some() {
            self.changes.ids.insert(*target);
        }
    }

    fn id_in_use(&self, id: &MessageId) -> bool {
        self.messages.contains_key(id)
            || self.tombstone_set.contains(id)
            || self.pending_deletes.contains_key(id)
    }

    /// The absolute expiry of a message: its start rule's deadline, capped by the org max
    /// counted from its local time.
    fn deadline(&self, m: &TrackedMessage) -> Option<Timestamp> {
        let by_rule = match m.policy {
            RetentionPolicy::Off => None,
            RetentionPolicy::Expire {
                after,
                start: StartRule::AfterSend,
            } => Some(
                after_send_start(m.local_time, m.claimed_send_time).saturating_add(after.get()),
            ),
            RetentionPolicy::Expire {
                after,
                start: StartRule::AfterRead,
            } => m.read_at.map(|r| r.saturating_add(after.get())),
        };
        let cap = self
            .org
            .max()
            .map(|max| m.local_time.saturating_add(max.get()));
        match (by_rule, cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the scheduler must look at a message again: its deadline, or for an untimed
    /// message the end of its unsend window; `None` for an unread after-read message.
    fn scheduled_time(&self, m: &TrackedMessage) -> Option<Timestamp> {
        self.deadline(m).or(match m.policy {
            RetentionPolicy::Off => Some(m.local_time.saturating_add(RETIRE_AFTER)),
            RetentionPolicy::Expire { .. } => None,
        })
    }

    fn track(&mut self, id: MessageId, message: TrackedMessage) {
        if let Some(at) = self.scheduled_time(&message) {
            self.message_queue.insert(id, at);
        }
        self.messages.insert(id, message);
        self.changes.ids.insert(id);
    }

    /// Forgets a message except its id (tombstone).
    fn erase(&mut self, id: MessageId) {
        self.message_queue.cancel(&id);
        self.messages.remove(&id);
        self.changes.ids.insert(id);
        self.tombstone(id);
    }

    fn tombstone(&mut self, id: MessageId) {
        if self.tombstone_set.insert(id) {
            self.tombstones.push_back(id);
            let position = self
                .tombstone_first
                .0
                .saturating_add(u64::try_from(self.tombstones.len()).unwrap_or(u64::MAX))
                .saturating_sub(1);
            self.changes.chunks.insert(position / TOMBSTONES_PER_CHUNK);
        }
        while self.tombstones.len() > MAX_TOMBSTONES {
            if let Some(oldest) = self.tombstones.pop_front() {
                self.tombstone_set.remove(&oldest);
                self.changes
                    .chunks
                    .insert(self.tombstone_first.0 / TOMBSTONES_PER_CHUNK);
                self.tombstone_first.0 = self.tombstone_first.0.saturating_add(1);
            }
        }
    }

    fn start_read_timer(&mut self, id: MessageId, now: Timestamp) {
        let Some(message) = self.messages.get_mut(&id) else {
            return;
        };
        if message.read_at.is_some()
            || !matches!(
                message.policy,
                RetentionPolicy::Expire {
                    start: StartRule::AfterRead,
                    ..
                }
            )
        {
            return;
        }
        message.read_at = Some(now);
        let updated = *message;
        self.changes.ids.insert(id);
        if let Some(at) = self.scheduled_time(&updated) {
            self.message_queue.insert(id, at);
        }
    }

    // ---- persistence ---------------------------------------------------------------------

    /// The whole state as versioned canonical bytes (layout in `docs/policy.md`). Pending
    /// expiries are kept (they are recomputed from the stored absolute times on restore).
    /// Refused while events wait to be polled.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, StateEncodeError> {
        if !self.events.is_empty() {
            return Err(StateEncodeError::EventsNotDrained {
                count: self.events.len(),
            });
        }
        let mut w = Writer::with_capacity(
            64 + self.messages.len() * 60
                + self.pending_deletes.len() * 32
                + self.tombstones.len() * 16,
        );
        w.u8(STATE_VERSION).u8(self.local.to_byte());
        self.org.write(&mut w);
        self.current.write(&mut w);
        w.u8(self.closed_by.map_or(0, Side::to_byte));
        w.u32(u32::try_from(self.messages.len()).unwrap_or(u32::MAX));
        for (id, m) in &self.messages {
            w.bytes(&id.to_bytes())
                .u8(m.author.to_byte())
                .u64(m.local_time.as_millis())
                .u64(m.claimed_send_time.as_millis());
            m.policy.write(&mut w);
            match m.read_at {
                None => w.u8(0),
                Some(t) => w.u8(1).u64(t.as_millis()),
            };
        }
        w.u32(u32::try_from(self.pending_deletes.len()).unwrap_or(u32::MAX));
        for (target, p) in &self.pending_deletes {
            w.bytes(&target.to_bytes())
                .u64(p.delete_claimed_send_time.as_millis())
                .u64(p.received_at.as_millis());
        }
        w.u32(u32::try_from(self.tombstones.len()).unwrap_or(u32::MAX));
        for id in &self.tombstones {
            w.bytes(&id.to_bytes());
        }
        Ok(w.into_zeroizing())
    }

    /// Restores a state written by [`to_bytes`](Self::to_bytes). Strict: unknown versions,
    /// unsorted or duplicate entries, values outside their domain and trailing bytes are
    /// refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != STATE_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "conversation policy state",
                found: version,
            });
        }
        let local = crate::retention::read_side(&mut r, "local side")?;
        let org = OrgBounds::read(&mut r)?;
        let current = TimerSetting::read(&mut r)?;
        let closed_by = match r.u8()? {
            0 => None,
            0x01 => Some(Side::Initiator),
            0x02 => Some(Side::Responder),
            _ => return Err(DecodeError::InvalidValue { field: "closed by" }),
        };
        let mut state = Self::new(local, org, RetentionPolicy::Off);
        state.current = current;
        state.closed_by = closed_by;

        let count = r.count32("tracked messages", MAX_TRACKED_MESSAGES)?;
        let mut previous: Option<MessageId> = None;
        for _ in 0..count {
            let id = MessageId::from_bytes(r.array()?);
            if previous.is_some_and(|p| p >= id) {
                return Err(DecodeError::InvalidValue {
                    field: "tracked message order",
                });
            }
            previous = Some(id);
            let message = read_tracked(&mut r, local, org)?;
            state.track(id, message);
        }

        let count = r.count32("pending deletes", MAX_PENDING_DELETES)?;
        let mut previous: Option<MessageId> = None;
        for _ in 0..count {
            let target = MessageId::from_bytes(r.array()?);
            if previous.is_some_and(|p| p >= target) || state.messages.contains_key(&target) {
                return Err(DecodeError::InvalidValue {
                    field: "pending delete order",
                });
            }
            previous = Some(target);
            let delete_claimed_send_time = Timestamp::from_millis(r.u64()?);
            let received_at = Timestamp::from_millis(r.u64()?);
            state.pending_deletes.insert(
                target,
                PendingDelete {
                    delete_claimed_send_time,
                    received_at,
                },
            );
            state
                .pending_queue
                .insert(target, received_at.saturating_add(PENDING_DELETE_LIFETIME));
        }

        let count = r.count32("tombstones", MAX_TOMBSTONES)?;
        for _ in 0..count {
            state.restore_tombstone(MessageId::from_bytes(r.array()?))?;
        }
        r.finish()?;
        // Restored from storage: nothing is waiting to be written.
        state.changes = EntryChanges::default();
        Ok(state)
    }

    // ---- persistence entry by entry ------------------------------------------------------

    /// The state without its per-message entries: [`to_bytes`](Self::to_bytes)'s layout with
    /// no tracked messages, pending deletes or tombstones (three zero counts). A store that
    /// keeps each tracked message and pending delete as a record of its own
    /// ([`entry_to_bytes`](Self::entry_to_bytes)) and the tombstones in chunks
    /// ([`tombstone_chunk_to_bytes`](Self::tombstone_chunk_to_bytes)) writes this beside them,
    /// so a change to one message does not rewrite the others. Refused while events wait to be
    /// polled.
    pub fn to_bytes_without_entries(&self) -> Result<Zeroizing<Vec<u8>>, StateEncodeError> {
        if !self.events.is_empty() {
            return Err(StateEncodeError::EventsNotDrained {
                count: self.events.len(),
            });
        }
        let mut w = Writer::with_capacity(64);
        w.u8(STATE_VERSION).u8(self.local.to_byte());
        self.org.write(&mut w);
        self.current.write(&mut w);
        w.u8(self.closed_by.map_or(0, Side::to_byte));
        w.u32(0).u32(0).u32(0);
        Ok(w.into_zeroizing())
    }

    /// Whether the state holds any tracked message, pending delete or tombstone.
    #[must_use]
    pub fn has_entries(&self) -> bool {
        !(self.messages.is_empty() && self.pending_deletes.is_empty() && self.tombstones.is_empty())
    }

    /// The ids of every tracked message and pending delete (an id is in at most one of them),
    /// ascending.
    #[must_use]
    pub fn entry_ids(&self) -> Vec<MessageId> {
        let mut ids: Vec<MessageId> = self
            .messages
            .keys()
            .chain(self.pending_deletes.keys())
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The ids whose tracked message or pending delete was added, changed or removed since the
    /// previous call (or since the state was created or restored), ascending; forgets them.
    /// Write [`entry_to_bytes`](Self::entry_to_bytes) of each, or delete the entry where that
    /// is `None`.
    pub fn take_changed_entries(&mut self) -> BTreeSet<MessageId> {
        core::mem::take(&mut self.changes.ids)
    }

    /// The tombstone chunks that gained or lost an id since the previous call (or since the
    /// state was created or restored), ascending; forgets them. Write
    /// [`tombstone_chunk_to_bytes`](Self::tombstone_chunk_to_bytes) of each, or delete the
    /// chunk where that is `None`.
    pub fn take_changed_tombstone_chunks(&mut self) -> BTreeSet<u64> {
        core::mem::take(&mut self.changes.chunks)
    }

    /// The tracked message or pending delete of `id` as canonical bytes (layout in
    /// `docs/policy.md` §10.1), or `None` if the state has neither for `id`.
    #[must_use]
    pub fn entry_to_bytes(&self, id: &MessageId) -> Option<Zeroizing<Vec<u8>>> {
        let mut w = Writer::with_capacity(40);
        if let Some(m) = self.messages.get(id) {
            w.u8(ENTRY_TRACKED)
                .u8(m.author.to_byte())
                .u64(m.local_time.as_millis())
                .u64(m.claimed_send_time.as_millis());
            m.policy.write(&mut w);
            match m.read_at {
                None => w.u8(0),
                Some(t) => w.u8(1).u64(t.as_millis()),
            };
        } else if let Some(p) = self.pending_deletes.get(id) {
            w.u8(ENTRY_PENDING_DELETE)
                .u64(p.delete_claimed_send_time.as_millis())
                .u64(p.received_at.as_millis());
        } else {
            return None;
        }
        Some(w.into_zeroizing())
    }

    /// The positions of the oldest tombstone and one past the newest.
    fn tombstone_positions(&self) -> (u64, u64) {
        let first = self.tombstone_first.0;
        let len = u64::try_from(self.tombstones.len()).unwrap_or(u64::MAX);
        (first, first.saturating_add(len))
    }

    /// The chunks that hold tombstones (chunk `c` holds the positions `c *`
    /// [`TOMBSTONES_PER_CHUNK`] up to the next chunk's), ascending.
    #[must_use]
    pub fn tombstone_chunks(&self) -> Vec<u64> {
        let (first, end) = self.tombstone_positions();
        if first == end {
            return Vec::new();
        }
        let last = end.saturating_sub(1) / TOMBSTONES_PER_CHUNK;
        (first / TOMBSTONES_PER_CHUNK..=last).collect()
    }

    /// The tombstones of chunk `chunk` as canonical bytes (layout in `docs/policy.md` §10.1),
    /// or `None` if it holds none.
    #[must_use]
    pub fn tombstone_chunk_to_bytes(&self, chunk: u64) -> Option<Zeroizing<Vec<u8>>> {
        let (first, end) = self.tombstone_positions();
        let chunk_start = chunk.checked_mul(TOMBSTONES_PER_CHUNK)?;
        let from = chunk_start.max(first);
        let to = chunk_start.saturating_add(TOMBSTONES_PER_CHUNK).min(end);
        if from >= to {
            return None;
        }
        let skip = usize::try_from(from.saturating_sub(first)).ok()?;
        let count = usize::try_from(to.saturating_sub(from)).ok()?;
        let mut w = Writer::with_capacity(2 + count * MessageId::LEN);
        w.u8(u8::try_from(from.saturating_sub(chunk_start)).ok()?)
            .u8(u8::try_from(count).ok()?);
        for id in self.tombstones.iter().skip(skip).take(count) {
            w.bytes(&id.to_bytes());
        }
        Some(w.into_zeroizing())
    }

    /// Appends a tombstone read from storage (the newest so far): refused if the id is
    /// tracked, pending or a tombstone already. Both stored forms restore through it.
    fn restore_tombstone(&mut self, id: MessageId) -> Result<(), DecodeError> {
        if self.messages.contains_key(&id)
            || self.pending_deletes.contains_key(&id)
            || !self.tombstone_set.insert(id)
        {
            return Err(DecodeError::InvalidValue {
                field: "tombstones",
            });
        }
        self.tombstones.push_back(id);
        Ok(())
    }

    /// Restores the entries of a state read with [`from_bytes`](Self::from_bytes) from a
    /// [`to_bytes_without_entries`](Self::to_bytes_without_entries) form: each tracked message
    /// and pending delete as [`entry_to_bytes`](Self::entry_to_bytes) wrote it under its id,
    /// and each tombstone chunk as [`tombstone_chunk_to_bytes`](Self::tombstone_chunk_to_bytes)
    /// wrote it under its number. All or nothing, and strict: ids and chunk numbers must be
    /// strictly ascending, the state must hold no entry yet, each entry is checked like its
    /// part of [`from_bytes`](Self::from_bytes), the limits hold, the chunks' positions are
    /// contiguous (every chunk but the last ends at its end, every chunk but the first starts
    /// at its start), and no id is in two places. The restored state has no changes.
    pub fn with_entries<'a>(
        self,
        entries: impl IntoIterator<Item = (MessageId, &'a [u8])>,
        tombstone_chunks: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<Self, DecodeError> {
        if self.has_entries() {
            return Err(DecodeError::InvalidValue {
                field: "policy entries restored twice",
            });
        }
        let mut state = self;
        let mut previous: Option<MessageId> = None;
        for (id, bytes) in entries {
            if previous.is_some_and(|p| p >= id) {
                return Err(DecodeError::InvalidValue {
                    field: "policy entry order",
                });
            }
            previous = Some(id);
            let mut r = Reader::new(bytes);
            match r.u8()? {
                ENTRY_TRACKED => {
                    if state.messages.len() >= MAX_TRACKED_MESSAGES {
                        return Err(DecodeError::TooLong {
                            field: "tracked messages",
                            len: state.messages.len().saturating_add(1),
                            max: MAX_TRACKED_MESSAGES,
                        });
                    }
                    let message = read_tracked(&mut r, state.local, state.org)?;
                    state.track(id, message);
                }
                ENTRY_PENDING_DELETE => {
                    if state.pending_deletes.len() >= MAX_PENDING_DELETES {
                        return Err(DecodeError::TooLong {
                            field: "pending deletes",
                            len: state.pending_deletes.len().saturating_add(1),
                            max: MAX_PENDING_DELETES,
                        });
                    }
                    let delete_claimed_send_time = Timestamp::from_millis(r.u64()?);
                    let received_at = Timestamp::from_millis(r.u64()?);
                    state.pending_deletes.insert(
                        id,
                        PendingDelete {
                            delete_claimed_send_time,
                            received_at,
                        },
                    );
                    state
                        .pending_queue
                        .insert(id, received_at.saturating_add(PENDING_DELETE_LIFETIME));
                }
                _ => {
                    return Err(DecodeError::InvalidValue {
                        field: "policy entry kind",
                    });
                }
            }
            r.finish()?;
        }
        // The position one past the last tombstone read so far.
        let mut end: Option<u64> = None;
        for (chunk, bytes) in tombstone_chunks {
            let bad = DecodeError::InvalidValue {
                field: "tombstone chunk",
            };
            let chunk_start = chunk.checked_mul(TOMBSTONES_PER_CHUNK).ok_or(bad)?;
            let mut r = Reader::new(bytes);
            let offset = u64::from(r.u8()?);
            let count = r.u8()?;
            let from = chunk_start.saturating_add(offset);
            let to = from.saturating_add(u64::from(count));
            let contiguous = match end {
                None => true,
                // After a chunk that ended at its end, the next one starts at its start.
                Some(e) => e == chunk_start && offset == 0,
            };
            if count == 0 || to > chunk_start.saturating_add(TOMBSTONES_PER_CHUNK) || !contiguous {
                return Err(bad);
            }
            if end.is_none() {
                state.tombstone_first = TombstonePosition(from);
            }
            for _ in 0..count {
                let id = MessageId::from_bytes(r.array()?);
                if state.tombstones.len() >= MAX_TOMBSTONES {
                    return Err(DecodeError::TooLong {
                        field: "tombstones",
                        len: state.tombstones.len().saturating_add(1),
                        max: MAX_TOMBSTONES,
                    });
                }
                state.restore_tombstone(id)?;
            }
            r.finish()?;
            end = Some(to);
        }
        state.changes = EntryChanges::default();
        Ok(state)
    }
}

/// Reads a tracked message's fields (after its id), checking them against the conversation's
/// side and organisation bounds.
fn read_tracked(
    r: &mut Reader<'_>,
    local: Side,
    org: OrgBounds,
) -> Result<TrackedMessage, DecodeError> {
    let author = crate::retention::read_side(r, "author")?;
    let local_time = Timestamp::from_millis(r.u64()?);
    let claimed_send_time = Timestamp::from_millis(r.u64()?);
    let policy = RetentionPolicy::read(r)?;
    if org.clamp(policy) != policy {
        return Err(DecodeError::InvalidValue {
            field: "message policy outside org bounds",
        });
    }
    if author == local && claimed_send_time != local_time {
        return Err(DecodeError::InvalidValue {
            field: "own message times",
        });
    }
    let read_at = if r.bool("read flag")? {
        if !matches!(
            policy,
            RetentionPolicy::Expire {
                start: StartRule::AfterRead,
                ..
            }
        ) {
            return Err(DecodeError::InvalidValue {
                field: "read time without after-read timer",
            });
        }
        Some(Timestamp::from_millis(r.u64()?))
    } else {
        None
    };
    Ok(TrackedMessage {
        author,
        local_time,
        claimed_send_time,
        policy,
        read_at,
    })
}

/// Sorted, deduplicated ids.
fn canonical_ids<'a, T: Ord + Copy + 'a>(ids: impl Iterator<Item = &'a T>) -> Vec<T> {
    let set: BTreeSet<T> = ids.copied().collect();
    set.into_iter().collect()
}
