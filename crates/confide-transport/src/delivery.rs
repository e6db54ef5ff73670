//! The sans-IO reliable delivery machine: message ids, outbox, retransmission with backoff,
//! give-up, end-to-end acknowledgement bookkeeping and a dedup window.
//!
//! The machine never does I/O, never reads a clock and holds no keys. The facade drives it:
//!
//! * Outgoing: [`Delivery::send`] stores the (already sealed) payload in the outbox under a
//!   fresh random [`FrameId`] and queues a transmit. Until the facade reports an
//!   authenticated acknowledgement with [`Delivery::on_ack`], the message is retransmitted with
//!   exponential backoff and jitter; after [`GIVE_UP_AFTER`] it leaves the outbox with
//!   [`DeliveryEvent::DeliveryFailed`].
//! * Incoming: for a received frame the facade asks [`Delivery::check_incoming`] whether its id
//!   is new, passing a digest of the payload. For a byte-identical duplicate it may
//!   re-acknowledge to the peer recorded earlier, when [`Delivery::grant_reacknowledgement`]
//!   allows (rate-limited per id and overall). A duplicate id with a different payload is
//!   [`IncomingStatus::Altered`]: never acknowledged on the strength of its id. For a new id
//!   the facade opens and decrypts the payload and, only once that succeeded, records the id,
//!   the authenticated sender and the digest with [`Delivery::accept_incoming`]. Recording
//!   only after authentication means a relay that rewrites a frame's payload cannot poison
//!   the dedup window and make the genuine retransmission look like a duplicate.
//! * Acknowledgements are sealed session messages; the facade sends them with
//!   [`Delivery::send_unacknowledged`] (one transmission, no outbox entry, no events).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use confide_wire::codec::{DecodeError, Reader, Writer};
use confide_wire::{CryptoRng, Duration, Timestamp};
use thiserror::Error;

use crate::consts::{
    DEDUP_ENTRIES_PER_CHUNK, DEDUP_WINDOW_AGE, GIVE_UP_AFTER, INITIAL_RETRANSMIT_TIMEOUT,
    MAX_DEDUP_ENTRIES, MAX_HELD_PAYLOAD_BYTES, MAX_OUTBOX_MESSAGES, MAX_PAYLOAD_LEN,
    MAX_QUEUED_UNACKNOWLEDGED, MAX_RETRANSMIT_BACKOFF, MIN_REACKNOWLEDGE_INTERVAL,
    REACKNOWLEDGE_BUDGET, REACKNOWLEDGE_BUDGET_WINDOW, RELAY_RECEIPT_HOLD,
    RETRANSMIT_JITTER_PERCENT, STATE_VERSION,
};
use crate::frame::encode_data;
use crate::{Address, FrameId, Transmit};

/// Something the app should learn about an outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum DeliveryEvent {
    /// The recipient acknowledged the message (the facade authenticated the ack).
    Delivered(FrameId),
    /// No acknowledgement arrived within [`GIVE_UP_AFTER`]; the message left the outbox.
    /// (The recipient may still have received it if every acknowledgement was lost.)
    DeliveryFailed(FrameId),
}

/// The result of [`Delivery::on_ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum AckOutcome {
    /// The message left the outbox; a [`DeliveryEvent::Delivered`] was queued.
    Delivered,
    /// No message with this id is waiting (never sent, already acknowledged, or given up).
    /// Nothing changed.
    UnknownId,
    /// The id is waiting, but for a different peer than the one who acknowledged it.
    /// Nothing changed.
    PeerMismatch,
}

/// A digest of a received frame's payload, computed by the caller: equal digests mean "the
/// same copy" to the machine (the facade hashes the sealed envelope's length, first 32 and last
/// 16 bytes with SHA-256, which differ for any two seals: `docs/endpoint.md`, "No
/// acknowledgement oracle"). The machine only compares digests: it does no cryptography
/// itself.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PayloadDigest([u8; 32]);

impl PayloadDigest {
    /// From its 32 bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Its 32 bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for PayloadDigest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // A digest of an envelope could link log lines to relay records: not printed.
        f.write_str("PayloadDigest(..)")
    }
}

/// Whether a received message id was seen before.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum IncomingStatus {
    /// Not seen within the dedup window: open it, and if it authenticates, record it.
    New,
    /// Seen before from `from` (as the facade recorded after authenticating it), with a
    /// byte-identical payload: do not deliver it to the app again. Its previous
    /// acknowledgement may have been lost, so acknowledge it again to `from` if
    /// [`Delivery::grant_reacknowledgement`] allows.
    Duplicate {
        /// The authenticated sender recorded for this id.
        from: Address,
    },
    /// The id was seen before from `from`, but this payload differs from the one recorded.
    /// Never acknowledge it on the strength of its id: a relay can put anything under an id
    /// it delivered before. Only if it authenticates as `from` (a sender re-sealed or
    /// re-encrypted a waiting frame) is it acknowledged, and then
    /// [`Delivery::update_incoming_digest`] records the new payload.
    Altered {
        /// The authenticated sender recorded for this id.
        from: Address,
    },
}

/// Why [`Delivery::send`] or [`Delivery::send_unacknowledged`] refused a message. A refused
/// send changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The payload is longer than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the maximum {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The outbox (waiting messages plus unpolled events) is full.
    #[error("outbox full ({max} messages)")]
    OutboxFull {
        /// The maximum.
        max: usize,
    },
    /// Holding this payload would exceed [`MAX_HELD_PAYLOAD_BYTES`].
    #[error("holding {len} more bytes on top of {held} would exceed {max}")]
    TooManyBytesHeld {
        /// Bytes already held.
        held: usize,
        /// Length of the refused payload.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Too many unacknowledged frames wait to be polled.
    #[error("{max} unacknowledged frames already wait to be polled")]
    UnacknowledgedQueueFull {
        /// The maximum.
        max: usize,
    },
    /// The random source kept producing ids already in use (it is broken).
    #[error("random source produced colliding message ids")]
    IdCollision,
    /// The payload is empty. A sealed envelope never is; an empty payload in the outbox marks
    /// an entry whose owner keeps what to rebuild it from
    /// ([`Delivery::outbox_record_without_payload`]).
    #[error("empty payload")]
    EmptyPayload,
}

/// Counters kept with the state (for diagnostics; they never affect behaviour).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// Messages accepted by [`Delivery::send`].
    pub sent: u64,
    /// Retransmissions queued.
    pub retransmitted: u64,
    /// Messages acknowledged.
    pub delivered: u64,
    /// Messages given up.
    pub failed: u64,
    /// New incoming ids recorded by [`Delivery::accept_incoming`].
    pub received: u64,
}

#[derive(Clone, PartialEq, Eq)]
struct OutboxEntry {
    id: FrameId,
    seq: u64,
    to: Address,
    created_at: Timestamp,
    /// Transmissions queued so far (at least 1).
    attempts: u32,
    /// When the next retransmission is due; never after the give-up time.
    next_attempt_at: Timestamp,
    payload: Vec<u8>,
}

impl OutboxEntry {
    fn give_up_at(&self) -> Timestamp {
        self.created_at.saturating_add(GIVE_UP_AFTER)
    }
}

#[derive(Clone, PartialEq, Eq)]
enum QueuedTransmit {
    /// Transmit (or retransmit) the outbox entry with this id.
    Outbox(FrameId),
    /// Transmit once; nothing is kept after polling.
    Unacknowledged {
        id: FrameId,
        to: Address,
        payload: Vec<u8>,
    },
}

#[derive(Clone, PartialEq, Eq)]
struct SeenEntry {
    /// Position in arrival order (strictly increasing; stored so that a machine loaded from
    /// per-entry records forgets entries in the same order).
    order: u64,
    from: Address,
    seen_at: Timestamp,
    digest: PayloadDigest,
    /// When this id was last acknowledged (first at acceptance).
    acked_at: Timestamp,
}

const QUEUE_TAG_OUTBOX: u8 = 1;
const QUEUE_TAG_UNACKNOWLEDGED: u8 = 2;
const EVENT_TAG_DELIVERED: u8 = 1;
const EVENT_TAG_FAILED: u8 = 2;
/// How many fresh ids [`Delivery::send`] draws before declaring the random source broken.
const ID_ATTEMPTS: usize = 4;

/// The delivery state machine. See the [module documentation](self) for the flow and
/// `docs/transport.md` for timers, limits and the state encoding.
///
/// `Debug` prints counts only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    next_seq: u64,
    stats: DeliveryStats,
    /// Waiting messages, in send order (`seq` strictly increasing).
    outbox: Vec<OutboxEntry>,
    transmit_queue: VecDeque<QueuedTransmit>,
    events: VecDeque<DeliveryEvent>,
    seen: BTreeMap<FrameId, SeenEntry>,
    /// Ids of `seen`, oldest recorded first.
    seen_order: VecDeque<FrameId>,
    /// Start of the current re-acknowledgement budget window.
    reack_window_start: Timestamp,
    /// Re-acknowledgements granted in the current window.
    reack_count: u32,
    /// The `order` the next dedup entry gets.
    next_seen_order: u64,
    /// Outbox entries a relay confirmed it stored, each with the time until which its
    /// retransmissions are held back ([`Delivery::on_relay_receipt`]). Deliberately not part
    /// of the saved state: a restarted app has a new connection to its relay, and one
    /// retransmission per waiting frame after a restart costs less than a record write per
    /// receipt.
    relay_held: BTreeMap<FrameId, Timestamp>,
    /// Ids of outbox and dedup entries changed since [`Delivery::take_changes`] (bookkeeping
    /// for incremental persistence, not state).
    changes: ChangeLog,
}

/// Which entries changed since the last [`Delivery::take_changes`]. Not part of the state:
/// two machines that differ only in it are equal.
#[derive(Clone, Default)]
struct ChangeLog {
    outbox: BTreeSet<FrameId>,
    seen: BTreeSet<FrameId>,
    /// The chunks ([`DEDUP_ENTRIES_PER_CHUNK`] arrival orders each) of the entries in `seen`.
    seen_chunks: BTreeSet<u64>,
}

impl ChangeLog {
    /// Notes that the dedup entry `id`, of arrival order `order`, was added, changed or
    /// removed.
    fn note_seen(&mut self, id: FrameId, order: u64) {
        self.seen.insert(id);
        self.seen_chunks.insert(order / DEDUP_ENTRIES_PER_CHUNK);
    }
}

impl PartialEq for ChangeLog {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ChangeLog {}

/// The entries of a [`Delivery`] that changed (were added, modified or removed) since the
/// previous [`Delivery::take_changes`]: what an incremental store must rewrite or delete,
/// besides the [core record](Delivery::core_record), which changes with nearly every step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryChanges {
    /// Outbox entries: write [`Delivery::outbox_record`] of each, or delete it where that is
    /// `None`.
    pub outbox: Vec<FrameId>,
    /// Dedup-window entries: write [`Delivery::seen_record`] of each, or delete it where that
    /// is `None` (a store that keeps a record per entry).
    pub seen: Vec<FrameId>,
    /// The chunks of those entries: write [`Delivery::seen_chunk_record`] of each, or delete
    /// it where that is `None` (a store that keeps the dedup window in chunks).
    pub seen_chunks: Vec<u64>,
}

impl core::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Addresses and payloads stay out: counts and statistics only.
        let Self {
            next_seq: _,
            stats,
            outbox,
            transmit_queue,
            events,
            seen,
            seen_order: _,
            reack_window_start: _,
            reack_count: _,
            next_seen_order: _,
            relay_held,
            changes: _,
        } = self;
        f.debug_struct("Delivery")
            .field("outbox", &outbox.len())
            .field("relay_held", &relay_held.len())
            .field("queued_transmits", &transmit_queue.len())
            .field("events", &events.len())
            .field("dedup_entries", &seen.len())
            .field("stats", stats)
            .finish_non_exhaustive()
    }
}

/// The wait before retransmission number `attempts` (1 = the first retransmission):
/// `min(INITIAL * 2^(attempts-1), MAX)` plus 0..=25% jitter.
///
/// The jitter is derived from the random message id and the attempt number, so it is
/// unpredictable across messages, yet restoring a saved state replays it exactly.
#[must_use]
pub fn retransmit_wait(id: &FrameId, attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(40);
    let base = INITIAL_RETRANSMIT_TIMEOUT
        .as_millis()
        .saturating_mul(1u64 << shift)
        .min(MAX_RETRANSMIT_BACKOFF.as_millis());
    let spread = base.saturating_mul(RETRANSMIT_JITTER_PERCENT) / 100;
    let jitter = jitter_source(id, attempts)
        .checked_rem(spread.saturating_add(1))
        .unwrap_or(0);
    Duration::from_millis(base.saturating_add(jitter))
}

/// A well-mixed 64-bit value from an id and an attempt number (SplitMix64 finalizer).
fn jitter_source(id: &FrameId, attempts: u32) -> u64 {
    let bytes = id.as_bytes();
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(bytes.get(..8).unwrap_or(&[0; 8]));
    hi.copy_from_slice(bytes.get(8..).unwrap_or(&[0; 8]));
    let mut z =
        u64::from_be_bytes(lo) ^ u64::from_be_bytes(hi).rotate_left(29) ^ u64::from(attempts);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Delivery {
    /// An empty machine.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `payload` (an opaque sealed envelope) in the outbox for `to` under a fresh random
    /// id and queues its first transmission. Retransmits until [`Delivery::on_ack`] or
    /// [`GIVE_UP_AFTER`]. A refused send changes nothing.
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        to: Address,
        payload: Vec<u8>,
    ) -> Result<FrameId, OutboxError> {
        self.check_payload(payload.len())?;
        if self.outbox.len().saturating_add(self.events.len()) >= MAX_OUTBOX_MESSAGES {
            return Err(OutboxError::OutboxFull {
                max: MAX_OUTBOX_MESSAGES,
            });
        }
        let id = self.fresh_id(rng)?;
        let seq = self.next_seq;
        let give_up_at = now.saturating_add(GIVE_UP_AFTER);
        let next_attempt_at = now.saturating_add(retransmit_wait(&id, 1)).min(give_up_at);
        self.outbox.push(OutboxEntry {
            id,
            seq,
            to,
            created_at: now,
            attempts: 1,
            next_attempt_at,
            payload,
        });
        self.next_seq = seq.saturating_add(1);
        self.changes.outbox.insert(id);
        self.transmit_queue.push_back(QueuedTransmit::Outbox(id));
        self.stats.sent = self.stats.sent.saturating_add(1);
        Ok(id)
    }

    /// Queues one transmission of `payload` to `to` with a fresh id, keeping nothing after it
    /// is polled: no retransmission, no outbox entry, no event. For end-to-end
    /// acknowledgements. A refused send changes nothing.
    pub fn send_unacknowledged<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        to: Address,
        payload: Vec<u8>,
    ) -> Result<FrameId, OutboxError> {
        self.check_payload(payload.len())?;
        let queued = self
            .transmit_queue
            .iter()
            .filter(|q| matches!(q, QueuedTransmit::Unacknowledged { .. }))
            .count();
        if queued >= MAX_QUEUED_UNACKNOWLEDGED {
            return Err(OutboxError::UnacknowledgedQueueFull {
                max: MAX_QUEUED_UNACKNOWLEDGED,
            });
        }
        let id = FrameId::random(rng);
        self.transmit_queue
            .push_back(QueuedTransmit::Unacknowledged { id, to, payload });
        Ok(id)
    }

    /// Reports an acknowledgement of `id` that the facade authenticated as coming from `from`.
    /// Only an ack from the peer the message was sent to completes it; anything else changes
    /// nothing (unknown ids, duplicate acks, acks from another peer).
    pub fn on_ack(&mut self, from: &Address, id: FrameId) -> AckOutcome {
        let Some(index) = self.outbox.iter().position(|e| e.id == id) else {
            return AckOutcome::UnknownId;
        };
        if self.outbox.get(index).is_none_or(|e| &e.to != from) {
            return AckOutcome::PeerMismatch;
        }
        self.outbox.remove(index);
        self.changes.outbox.insert(id);
        self.unqueue(id);
        self.relay_held.remove(&id);
        self.events.push_back(DeliveryEvent::Delivered(id));
        self.stats.delivered = self.stats.delivered.saturating_add(1);
        AckOutcome::Delivered
    }

    /// Removes a waiting message without an event (for example, the user unsent it before it
    /// was acknowledged). Returns whether it was waiting.
    pub fn cancel(&mut self, id: FrameId) -> bool {
        self.outbox
            .iter()
            .position(|e| e.id == id)
            .and_then(|index| self.remove_waiting(index))
            .is_some()
    }

    /// Gives up a waiting message now, as [`Delivery::handle_timeout`] does once
    /// [`GIVE_UP_AFTER`] passed: it leaves the outbox and [`DeliveryEvent::DeliveryFailed`]
    /// reports it. For an owner that can no longer build its payload (an entry stored
    /// without one, [`Delivery::outbox_record_without_payload`]). Returns whether it was
    /// waiting.
    pub fn give_up(&mut self, id: FrameId) -> bool {
        let Some(id) = self
            .outbox
            .iter()
            .position(|e| e.id == id)
            .and_then(|index| self.remove_waiting(index))
        else {
            return false;
        };
        self.report_failed(id);
        true
    }

    /// Removes the outbox entry at `index` with its queued transmit and relay hold; returns
    /// its id (`None` past the end).
    fn remove_waiting(&mut self, index: usize) -> Option<FrameId> {
        if index >= self.outbox.len() {
            return None;
        }
        let id = self.outbox.remove(index).id;
        self.changes.outbox.insert(id);
        self.unqueue(id);
        self.relay_held.remove(&id);
        Some(id)
    }

    /// A message given up: the event for the owner, and the counter.
    fn report_failed(&mut self, id: FrameId) {
        self.events.push_back(DeliveryEvent::DeliveryFailed(id));
        self.stats.failed = self.stats.failed.saturating_add(1);
    }

    /// Reports a receipt from the relay: it durably stored the frame `id` (a transport-level
    /// receipt, not an end-to-end acknowledgement). Retransmissions of a waiting message are
    /// then held back until `now +` [`RELAY_RECEIPT_HOLD`] (or until
    /// [`Delivery::on_relay_reconnected`]); the message still waits for the recipient's
    /// acknowledgement and still gives up after [`GIVE_UP_AFTER`]. A relay that lies only
    /// delays retransmissions; it cannot complete a message. Returns whether `id` was waiting
    /// (receipts for acknowledgement frames and for messages already completed are ignored).
    /// Not saved with the state.
    pub fn on_relay_receipt(&mut self, now: Timestamp, id: FrameId) -> bool {
        if !self.is_waiting(id) {
            return false;
        }
        self.relay_held
            .insert(id, now.saturating_add(RELAY_RECEIPT_HOLD));
        // A retransmission queued meanwhile would only upload a copy the relay holds.
        self.unqueue(id);
        true
    }

    /// Forgets every relay receipt: the transport connected to a relay that may not hold what
    /// it confirmed before (one without durable storage, or another relay). Messages whose
    /// retransmission was held back become due at once.
    pub fn on_relay_reconnected(&mut self) {
        self.relay_held.clear();
    }

    /// Replaces the payload of a waiting message and queues one transmission of it now (for
    /// a payload re-sealed under a renewed certificate, or re-encrypted in a new session).
    /// The id, the give-up time and the retransmission schedule stay as they were, so the
    /// recipient's dedup window still recognises the message. Returns `Ok(false)` (changing
    /// nothing) if `id` is not waiting; a refused replacement changes nothing.
    pub fn replace_payload(&mut self, id: FrameId, payload: Vec<u8>) -> Result<bool, OutboxError> {
        let Some(index) = self.outbox.iter().position(|e| e.id == id) else {
            return Ok(false);
        };
        let old_len = self.outbox.get(index).map_or(0, |e| e.payload.len());
        if payload.is_empty() {
            return Err(OutboxError::EmptyPayload);
        }
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(OutboxError::PayloadTooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        let held = self.held_bytes().saturating_sub(old_len);
        if held.saturating_add(payload.len()) > MAX_HELD_PAYLOAD_BYTES {
            return Err(OutboxError::TooManyBytesHeld {
                held,
                len: payload.len(),
                max: MAX_HELD_PAYLOAD_BYTES,
            });
        }
        if let Some(entry) = self.outbox.get_mut(index) {
            entry.payload = payload;
            self.changes.outbox.insert(id);
        }
        // The relay holds the old payload, not this one.
        self.relay_held.remove(&id);
        if !self
            .transmit_queue
            .iter()
            .any(|q| matches!(q, QueuedTransmit::Outbox(queued) if *queued == id))
        {
            self.transmit_queue.push_back(QueuedTransmit::Outbox(id));
        }
        Ok(true)
    }

    /// Whether a received id (with a payload of digest `digest`) is new, a byte-identical
    /// duplicate, or an altered copy of a frame seen within the dedup window. Changes nothing.
    pub fn check_incoming(
        &self,
        id: FrameId,
        digest: &PayloadDigest,
        now: Timestamp,
    ) -> IncomingStatus {
        match self.seen.get(&id) {
            Some(entry) if !Self::expired(entry, now) => {
                let from = entry.from.clone();
                if entry.digest == *digest {
                    IncomingStatus::Duplicate { from }
                } else {
                    IncomingStatus::Altered { from }
                }
            }
            _ => IncomingStatus::New,
        }
    }

    /// Whether a duplicate of `id` may be acknowledged again now; if so, counts it. Refused
    /// (changing nothing) for an id not recorded, an id acknowledged less than
    /// [`MIN_REACKNOWLEDGE_INTERVAL`] ago, or once [`REACKNOWLEDGE_BUDGET`] re-acknowledgements
    /// were granted within the current [`REACKNOWLEDGE_BUDGET_WINDOW`].
    pub fn grant_reacknowledgement(&mut self, id: FrameId, now: Timestamp) -> bool {
        let Some(entry) = self.seen.get(&id) else {
            return false;
        };
        if now < entry.acked_at.saturating_add(MIN_REACKNOWLEDGE_INTERVAL) {
            return false;
        }
        let window_over = now
            >= self
                .reack_window_start
                .saturating_add(REACKNOWLEDGE_BUDGET_WINDOW)
            || now < self.reack_window_start;
        let count = if window_over { 0 } else { self.reack_count };
        if count >= REACKNOWLEDGE_BUDGET {
            return false;
        }
        if window_over {
            self.reack_window_start = now;
        }
        self.reack_count = count.saturating_add(1);
        if let Some(entry) = self.seen.get_mut(&id) {
            entry.acked_at = now;
            self.changes.note_seen(id, entry.order);
        }
        true
    }

    /// Records that an altered copy of `id` authenticated as its recorded sender (a re-sealed
    /// or re-encrypted retransmission): later copies with this payload are duplicates.
    /// Returns whether the id was recorded.
    pub fn update_incoming_digest(&mut self, id: FrameId, digest: PayloadDigest) -> bool {
        match self.seen.get_mut(&id) {
            Some(entry) => {
                entry.digest = digest;
                self.changes.note_seen(id, entry.order);
                true
            }
            None => false,
        }
    }

    /// Records a received id, its authenticated sender `from` and its payload's digest. Call
    /// only after the payload authenticated. Returns [`IncomingStatus::New`] if it was
    /// recorded now, or the status of the earlier record (changing nothing) if it was already
    /// recorded. The window forgets ids after [`DEDUP_WINDOW_AGE`] and the oldest beyond
    /// [`MAX_DEDUP_ENTRIES`].
    pub fn accept_incoming(
        &mut self,
        id: FrameId,
        from: Address,
        digest: PayloadDigest,
        now: Timestamp,
    ) -> IncomingStatus {
        match self.check_incoming(id, &digest, now) {
            IncomingStatus::New => {}
            status => return status,
        }
        if let Some(old) = self.seen.remove(&id) {
            self.seen_order.retain(|s| *s != id);
            self.changes.note_seen(id, old.order);
        }
        self.seen.insert(
            id,
            SeenEntry {
                order: self.next_seen_order,
                from,
                seen_at: now,
                digest,
                acked_at: now,
            },
        );
        self.changes.note_seen(id, self.next_seen_order);
        self.next_seen_order = self.next_seen_order.saturating_add(1);
        self.seen_order.push_back(id);
        while self.seen_order.len() > MAX_DEDUP_ENTRIES {
            if let Some(oldest) = self.seen_order.pop_front()
                && let Some(entry) = self.seen.remove(&oldest)
            {
                self.changes.note_seen(oldest, entry.order);
            }
        }
        self.stats.received = self.stats.received.saturating_add(1);
        IncomingStatus::New
    }

    /// Advances timers to `now`: gives up messages past [`GIVE_UP_AFTER`], queues one
    /// retransmission of each message whose wait elapsed (after a long sleep, one, not one per
    /// missed interval), and forgets expired dedup entries. Calling it early is a no-op.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let mut index = 0;
        while let Some(entry) = self.outbox.get_mut(index) {
            let give_up_at = entry.give_up_at();
            if now >= give_up_at {
                if let Some(id) = self.remove_waiting(index) {
                    self.report_failed(id);
                }
                continue;
            }
            if now >= entry.next_attempt_at {
                if self
                    .relay_held
                    .get(&entry.id)
                    .is_some_and(|until| now < *until)
                {
                    // The relay holds a copy: the retransmission waits for the hold's end.
                    index = index.saturating_add(1);
                    continue;
                }
                // The copy at the relay (if any) is now presumed lost; the one about to be
                // queued needs a receipt of its own.
                self.relay_held.remove(&entry.id);
                entry.attempts = entry.attempts.saturating_add(1);
                entry.next_attempt_at = now
                    .saturating_add(retransmit_wait(&entry.id, entry.attempts))
                    .min(give_up_at);
                let id = entry.id;
                self.changes.outbox.insert(id);
                if !self
                    .transmit_queue
                    .iter()
                    .any(|q| matches!(q, QueuedTransmit::Outbox(queued) if *queued == id))
                {
                    self.transmit_queue.push_back(QueuedTransmit::Outbox(id));
                    self.stats.retransmitted = self.stats.retransmitted.saturating_add(1);
                }
            }
            index = index.saturating_add(1);
        }
        // Entries are remembered in arrival order, so the oldest are at the front: forgetting
        // stops at the first entry still inside the window. (If the wall clock moved back, a
        // later entry may carry an earlier time; it is then forgotten a little late, never early,
        // and the count bound still applies.) O(forgotten), not O(window).
        while let Some(front) = self.seen_order.front().copied() {
            match self.seen.get(&front) {
                Some(e) if !Self::expired(e, now) => break,
                _ => {
                    self.seen_order.pop_front();
                    if let Some(entry) = self.seen.remove(&front) {
                        self.changes.note_seen(front, entry.order);
                    }
                }
            }
        }
    }

    /// The earliest time [`Delivery::handle_timeout`] has work to do, or `None` if no timer is
    /// running. May be in the past (then call `handle_timeout` now).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let retransmit = self
            .outbox
            .iter()
            .map(|e| match self.relay_held.get(&e.id) {
                Some(until) => e.next_attempt_at.max(*until).min(e.give_up_at()),
                None => e.next_attempt_at,
            })
            .min();
        // The oldest entry is at the front of the arrival order (see `handle_timeout`).
        let forget = self
            .seen_order
            .front()
            .and_then(|id| self.seen.get(id))
            .map(|e| e.seen_at.saturating_add(DEDUP_WINDOW_AGE));
        match (retransmit, forget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next frame to hand to the transport, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some(queued) = self.transmit_queue.pop_front() {
            let (to, frame) = match &queued {
                QueuedTransmit::Outbox(id) => {
                    // An entry without its payload (loaded from a record that left it out)
                    // never goes out empty: it goes at its next retransmission after
                    // `replace_payload` gave it one.
                    let Some(entry) = self
                        .outbox
                        .iter()
                        .find(|e| e.id == *id && !e.payload.is_empty())
                    else {
                        continue;
                    };
                    (entry.to.clone(), encode_data(id, &entry.payload))
                }
                QueuedTransmit::Unacknowledged { id, to, payload } => {
                    (to.clone(), encode_data(id, payload))
                }
            };
            // Payload lengths are checked on entry, so encoding cannot fail; skip defensively.
            if let Ok(frame) = frame {
                // The facade attaches the destination's relay token.
                return Some(Transmit {
                    to,
                    frame,
                    token: None,
                });
            }
        }
        None
    }

    /// The next event for the app, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<DeliveryEvent> {
        self.events.pop_front()
    }

    /// Messages waiting for an acknowledgement.
    #[must_use]
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Whether `id` is waiting for an acknowledgement.
    #[must_use]
    pub fn is_waiting(&self, id: FrameId) -> bool {
        self.outbox.iter().any(|e| e.id == id)
    }

    /// Every waiting message in send order: its id, payload and transmissions queued so far
    /// (1 after `send`, one more per retransmission).
    pub fn waiting(&self) -> impl Iterator<Item = (FrameId, &[u8], u32)> {
        self.outbox
            .iter()
            .map(|e| (e.id, e.payload.as_slice(), e.attempts))
    }

    /// The peer a waiting message is addressed to.
    #[must_use]
    pub fn waiting_recipient(&self, id: FrameId) -> Option<&Address> {
        self.outbox.iter().find(|e| e.id == id).map(|e| &e.to)
    }

    /// Ids remembered in the dedup window.
    #[must_use]
    pub fn dedup_len(&self) -> usize {
        self.seen.len()
    }

    /// Diagnostic counters.
    #[must_use]
    pub fn stats(&self) -> DeliveryStats {
        self.stats
    }

    fn expired(entry: &SeenEntry, now: Timestamp) -> bool {
        now >= entry.seen_at.saturating_add(DEDUP_WINDOW_AGE)
    }

    fn unqueue(&mut self, id: FrameId) {
        self.transmit_queue
            .retain(|q| !matches!(q, QueuedTransmit::Outbox(queued) if *queued == id));
    }

    fn held_bytes(&self) -> usize {
        let outbox = self.outbox.iter().map(|e| e.payload.len());
        let queued = self.transmit_queue.iter().map(|q| match q {
            QueuedTransmit::Outbox(_) => 0,
            QueuedTransmit::Unacknowledged { payload, .. } => payload.len(),
        });
        outbox.chain(queued).fold(0usize, usize::saturating_add)
    }

    fn check_payload(&self, len: usize) -> Result<(), OutboxError> {
        if len == 0 {
            return Err(OutboxError::EmptyPayload);
        }
        if len > MAX_PAYLOAD_LEN {
            return Err(OutboxError::PayloadTooLarge {
                len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        let held = self.held_bytes();
        if held.saturating_add(len) > MAX_HELD_PAYLOAD_BYTES {
            return Err(OutboxError::TooManyBytesHeld {
                held,
                len,
                max: MAX_HELD_PAYLOAD_BYTES,
            });
        }
        Ok(())
    }

    fn fresh_id<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Result<FrameId, OutboxError> {
        for _ in 0..ID_ATTEMPTS {
            let id = FrameId::random(rng);
            if !self.is_waiting(id) {
                return Ok(id);
            }
        }
        Err(OutboxError::IdCollision)
    }

    /// Serializes the whole machine (outbox, queued transmits, unpolled events, dedup window,
    /// counters) to versioned canonical bytes; see `docs/transport.md`.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.held_bytes().saturating_add(1024));
        w.u8(STATE_VERSION);
        self.write_core(&mut w);
        w.u16(count16(self.outbox.len()));
        for e in &self.outbox {
            write_outbox_entry(&mut w, e);
        }
        w.u16(count16(self.transmit_queue.len()));
        for q in &self.transmit_queue {
            match q {
                QueuedTransmit::Outbox(id) => {
                    w.u8(QUEUE_TAG_OUTBOX).bytes(id.as_bytes());
                }
                QueuedTransmit::Unacknowledged { id, to, payload } => {
                    w.u8(QUEUE_TAG_UNACKNOWLEDGED).bytes(id.as_bytes());
                    to.write(&mut w);
                    write_payload(&mut w, payload);
                }
            }
        }
        w.u16(count16(self.events.len()));
        for event in &self.events {
            let (tag, id) = match event {
                DeliveryEvent::Delivered(id) => (EVENT_TAG_DELIVERED, id),
                DeliveryEvent::DeliveryFailed(id) => (EVENT_TAG_FAILED, id),
            };
            w.u8(tag).bytes(id.as_bytes());
        }
        w.u16(count16(self.seen_order.len()));
        for id in &self.seen_order {
            if let Some(entry) = self.seen.get(id) {
                write_seen_entry(&mut w, id, entry);
            }
        }
        w.into_vec()
    }

    /// Restores a machine from [`Delivery::to_bytes`] output. Strict: unknown version, any
    /// broken invariant, limit exceeded or trailing byte is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        read_version(&mut r)?;
        let mut d = Self::read_core(&mut r)?;
        let outbox_len = r.count16("outbox", MAX_OUTBOX_MESSAGES)?;
        for _ in 0..outbox_len {
            let entry = read_outbox_entry(&mut r)?;
            if d.outbox.last().is_some_and(|prev| prev.seq >= entry.seq) {
                return Err(DecodeError::InvalidValue {
                    field: "outbox seq",
                });
            }
            d.insert_outbox_entry(entry)?;
        }

        let queue_len = r.count16(
            "transmit queue",
            MAX_OUTBOX_MESSAGES.saturating_add(MAX_QUEUED_UNACKNOWLEDGED),
        )?;
        let mut unacknowledged = 0usize;
        for _ in 0..queue_len {
            let tag = r.u8()?;
            let id = FrameId::from_bytes(r.array()?);
            let queued = match tag {
                QUEUE_TAG_OUTBOX => {
                    let already = d
                        .transmit_queue
                        .iter()
                        .any(|q| matches!(q, QueuedTransmit::Outbox(x) if *x == id));
                    if !d.is_waiting(id) || already {
                        return Err(DecodeError::InvalidValue {
                            field: "transmit queue id",
                        });
                    }
                    QueuedTransmit::Outbox(id)
                }
                QUEUE_TAG_UNACKNOWLEDGED => {
                    unacknowledged = unacknowledged.saturating_add(1);
                    if unacknowledged > MAX_QUEUED_UNACKNOWLEDGED {
                        return Err(DecodeError::TooLong {
                            field: "unacknowledged queue",
                            len: unacknowledged,
                            max: MAX_QUEUED_UNACKNOWLEDGED,
                        });
                    }
                    let to = Address::read(&mut r)?;
                    let payload = r.var32("payload", MAX_PAYLOAD_LEN)?.to_vec();
                    QueuedTransmit::Unacknowledged { id, to, payload }
                }
                _ => {
                    return Err(DecodeError::InvalidValue {
                        field: "transmit queue tag",
                    });
                }
            };
            d.transmit_queue.push_back(queued);
        }
        d.check_held_bytes()?;

        let events_max = MAX_OUTBOX_MESSAGES.saturating_sub(d.outbox.len());
        let events_len = r.count16("events", events_max)?;
        for _ in 0..events_len {
            let tag = r.u8()?;
            let id = FrameId::from_bytes(r.array()?);
            d.events.push_back(match tag {
                EVENT_TAG_DELIVERED => DeliveryEvent::Delivered(id),
                EVENT_TAG_FAILED => DeliveryEvent::DeliveryFailed(id),
                _ => return Err(DecodeError::InvalidValue { field: "event tag" }),
            });
        }

        let seen_len = r.count16("dedup window", MAX_DEDUP_ENTRIES)?;
        for _ in 0..seen_len {
            let (id, entry) = read_seen_entry(&mut r)?;
            let last_order = d
                .seen_order
                .back()
                .and_then(|last| d.seen.get(last))
                .map(|e| e.order);
            if last_order.is_some_and(|last| last >= entry.order) {
                return Err(DecodeError::InvalidValue {
                    field: "dedup window order",
                });
            }
            d.insert_seen_entry(id, entry)?;
        }
        r.finish()?;
        Ok(d)
    }

    // ---- incremental persistence -------------------------------------------------------

    /// Forgets the changes noted since the last call without reporting them: for a machine
    /// whose state is never stored (what [`Delivery::take_changes`] would return is dropped
    /// unread, without building it).
    pub fn forget_changes(&mut self) {
        self.changes = Default::default();
    }

    /// The ids of the outbox and dedup entries that changed since the previous call (or since
    /// the machine was created or loaded), and forgets them. With [`Delivery::core_record`],
    /// [`Delivery::outbox_record`] and [`Delivery::seen_record`] this lets a store write only
    /// what changed; [`Delivery::from_records`] reassembles the machine.
    pub fn take_changes(&mut self) -> DeliveryChanges {
        let changes = core::mem::take(&mut self.changes);
        DeliveryChanges {
            outbox: changes.outbox.into_iter().collect(),
            seen: changes.seen.into_iter().collect(),
            seen_chunks: changes.seen_chunks.into_iter().collect(),
        }
    }

    /// The ids of every outbox and dedup entry (for a full snapshot of the records).
    #[must_use]
    pub fn entries(&self) -> DeliveryChanges {
        DeliveryChanges {
            outbox: self.outbox.iter().map(|e| e.id).collect(),
            seen: self.seen.keys().copied().collect(),
            seen_chunks: self
                .seen
                .values()
                .map(|e| e.order / DEDUP_ENTRIES_PER_CHUNK)
                .collect::<BTreeSet<u64>>()
                .into_iter()
                .collect(),
        }
    }

    /// The core record: counters and the re-acknowledgement budget, which change with nearly
    /// every step. Transmits and events waiting to be polled are not part of the records: a
    /// machine reassembled from records has none (poll them before persisting, as the
    /// endpoint does after every step; a waiting entry that was never transmitted goes out
    /// when its retransmission is due).
    #[must_use]
    pub fn core_record(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(CORE_RECORD_LEN);
        w.u8(STATE_VERSION);
        self.write_core(&mut w);
        w.into_vec()
    }

    /// The record of the outbox entry `id`, or `None` if it is not waiting (delete it).
    #[must_use]
    pub fn outbox_record(&self, id: FrameId) -> Option<Vec<u8>> {
        let entry = self.outbox.iter().find(|e| e.id == id)?;
        let mut w = Writer::with_capacity(entry.payload.len().saturating_add(128));
        w.u8(STATE_VERSION);
        write_outbox_entry(&mut w, entry);
        Some(w.into_vec())
    }

    /// [`Delivery::outbox_record`] with an empty payload (length 0), for an owner that keeps
    /// what to build the payload from and would otherwise store it twice (the endpoint keeps
    /// each message's content, not its sealed frame). A machine loaded from such a record
    /// holds the entry without a payload: it is never transmitted as it is, and once
    /// [`Delivery::handle_timeout`] queues its retransmission it is listed by
    /// [`Delivery::queued_without_payload`] until [`Delivery::replace_payload`] gives it one.
    #[must_use]
    pub fn outbox_record_without_payload(&self, id: FrameId) -> Option<Vec<u8>> {
        let entry = self.outbox.iter().find(|e| e.id == id)?;
        let mut w = Writer::with_capacity(128);
        w.u8(STATE_VERSION);
        write_outbox_entry_fields(&mut w, entry, &[]);
        Some(w.into_vec())
    }

    /// The waiting entries that have no payload (loaded from
    /// [`Delivery::outbox_record_without_payload`] records) and are queued to be transmitted:
    /// give each one with [`Delivery::replace_payload`] before polling transmits (an entry
    /// still without one is skipped, and goes at its next retransmission). In queue order.
    /// Costs one pass over the outbox and one over the queue.
    #[must_use]
    pub fn queued_without_payload(&self) -> Vec<FrameId> {
        let empty: BTreeSet<FrameId> = self
            .outbox
            .iter()
            .filter(|e| e.payload.is_empty())
            .map(|e| e.id)
            .collect();
        if empty.is_empty() {
            return Vec::new();
        }
        self.transmit_queue
            .iter()
            .filter_map(|q| match q {
                QueuedTransmit::Outbox(id) if empty.contains(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    /// The record of the dedup entry `id`, or `None` if it is not remembered (delete it).
    #[must_use]
    pub fn seen_record(&self, id: FrameId) -> Option<Vec<u8>> {
        let entry = self.seen.get(&id)?;
        let mut w = Writer::with_capacity(160);
        w.u8(STATE_VERSION);
        write_seen_entry(&mut w, &id, entry);
        Some(w.into_vec())
    }

    /// The record of the dedup entries of chunk `chunk` (the arrival orders `chunk *`
    /// [`DEDUP_ENTRIES_PER_CHUNK`] up to the next chunk's), or `None` if it holds none (delete
    /// it). Layout (`docs/transport.md`): version, an entry count (1 ..= 16), then each entry
    /// as in [`Delivery::seen_record`], ascending by order.
    #[must_use]
    pub fn seen_chunk_record(&self, chunk: u64) -> Option<Vec<u8>> {
        let entries = self.seen_chunk_entries(chunk);
        if entries.is_empty() {
            return None;
        }
        let mut w = Writer::with_capacity(entries.len().saturating_mul(160).saturating_add(2));
        w.u8(STATE_VERSION)
            .u8(u8::try_from(entries.len()).unwrap_or(u8::MAX));
        for (id, entry) in entries {
            write_seen_entry(&mut w, id, entry);
        }
        Some(w.into_vec())
    }

    /// The ids of the dedup entries in chunk `chunk` (see [`Delivery::seen_chunk_record`]),
    /// ascending by arrival order.
    #[must_use]
    pub fn seen_chunk_ids(&self, chunk: u64) -> Vec<FrameId> {
        self.seen_chunk_entries(chunk)
            .into_iter()
            .map(|(id, _)| *id)
            .collect()
    }

    /// The dedup entries of chunk `chunk`, ascending by arrival order.
    fn seen_chunk_entries(&self, chunk: u64) -> Vec<(&FrameId, &SeenEntry)> {
        let Some(first) = chunk.checked_mul(DEDUP_ENTRIES_PER_CHUNK) else {
            return Vec::new();
        };
        let end = first.saturating_add(DEDUP_ENTRIES_PER_CHUNK);
        let order_of = |id: &FrameId| self.seen.get(id).map_or(u64::MAX, |e| e.order);
        // `seen_order` is in arrival order, so the chunk's entries are one run of it.
        let from = self.seen_order.partition_point(|id| order_of(id) < first);
        self.seen_order
            .iter()
            .skip(from)
            .map_while(|id| self.seen.get(id).filter(|e| e.order < end).map(|e| (id, e)))
            .collect()
    }

    /// Reassembles a machine from its core record and the records of its outbox and dedup
    /// entries, in any order. Strict: an unknown version, a broken invariant (duplicate ids,
    /// sequence or order numbers, a sequence or order number the core has not issued yet), a
    /// limit exceeded or a trailing byte in any record is an error. Nothing is queued to
    /// transmit: waiting entries go out when their retransmission is due.
    pub fn from_records<'a>(
        core: &[u8],
        outbox: impl IntoIterator<Item = &'a [u8]>,
        seen: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, DecodeError> {
        Self::from_chunked_records(core, outbox, seen, core::iter::empty())
    }

    /// [`Delivery::from_records`] for a store that keeps the dedup window in chunks
    /// ([`Delivery::seen_chunk_record`]), given as `(chunk number, record)`, possibly beside
    /// per-entry records (a store being rewritten). Every entry of a chunk must lie in that
    /// chunk's orders, ascending; no id or order may appear twice across all records.
    pub fn from_chunked_records<'a>(
        core: &[u8],
        outbox: impl IntoIterator<Item = &'a [u8]>,
        seen: impl IntoIterator<Item = &'a [u8]>,
        seen_chunks: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<Self, DecodeError> {
        let mut r = Reader::new(core);
        read_version(&mut r)?;
        let mut d = Self::read_core(&mut r)?;
        r.finish()?;
        let mut entries = Vec::new();
        for record in outbox {
            if entries.len() >= MAX_OUTBOX_MESSAGES {
                return Err(DecodeError::TooLong {
                    field: "outbox",
                    len: entries.len().saturating_add(1),
                    max: MAX_OUTBOX_MESSAGES,
                });
            }
            let mut r = Reader::new(record);
            read_version(&mut r)?;
            entries.push(read_outbox_entry(&mut r)?);
            r.finish()?;
        }
        entries.sort_by_key(|e| e.seq);
        for entry in entries {
            if d.outbox.last().is_some_and(|prev| prev.seq == entry.seq) {
                return Err(DecodeError::InvalidValue {
                    field: "outbox seq",
                });
            }
            d.insert_outbox_entry(entry)?;
        }
        d.check_held_bytes()?;
        let mut entries = Vec::new();
        for record in seen {
            if entries.len() >= MAX_DEDUP_ENTRIES {
                return Err(DecodeError::TooLong {
                    field: "dedup window",
                    len: entries.len().saturating_add(1),
                    max: MAX_DEDUP_ENTRIES,
                });
            }
            let mut r = Reader::new(record);
            read_version(&mut r)?;
            entries.push(read_seen_entry(&mut r)?);
            r.finish()?;
        }
        let invalid = DecodeError::InvalidValue {
            field: "dedup window chunk",
        };
        for (chunk, record) in seen_chunks {
            let first = chunk.checked_mul(DEDUP_ENTRIES_PER_CHUNK).ok_or(invalid)?;
            let end = first.saturating_add(DEDUP_ENTRIES_PER_CHUNK);
            let mut r = Reader::new(record);
            read_version(&mut r)?;
            let n = r.u8()?;
            if n == 0 || u64::from(n) > DEDUP_ENTRIES_PER_CHUNK {
                return Err(invalid);
            }
            let mut previous: Option<u64> = None;
            for _ in 0..n {
                if entries.len() >= MAX_DEDUP_ENTRIES {
                    return Err(DecodeError::TooLong {
                        field: "dedup window",
                        len: entries.len().saturating_add(1),
                        max: MAX_DEDUP_ENTRIES,
                    });
                }
                let (id, entry) = read_seen_entry(&mut r)?;
                if entry.order < first
                    || entry.order >= end
                    || previous.is_some_and(|p| p >= entry.order)
                {
                    return Err(invalid);
                }
                previous = Some(entry.order);
                entries.push((id, entry));
            }
            r.finish()?;
        }
        entries.sort_by_key(|(_, e)| e.order);
        for (id, entry) in entries {
            let last_order = d
                .seen_order
                .back()
                .and_then(|last| d.seen.get(last))
                .map(|e| e.order);
            if last_order == Some(entry.order) {
                return Err(DecodeError::InvalidValue {
                    field: "dedup window order",
                });
            }
            d.insert_seen_entry(id, entry)?;
        }
        Ok(d)
    }

    fn write_core(&self, w: &mut Writer) {
        let s = &self.stats;
        w.u64(self.next_seq)
            .u64(s.sent)
            .u64(s.retransmitted)
            .u64(s.delivered)
            .u64(s.failed)
            .u64(s.received)
            .u64(self.next_seen_order)
            .u64(self.reack_window_start.as_millis())
            .u32(self.reack_count);
    }

    fn read_core(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let next_seq = r.u64()?;
        let stats = DeliveryStats {
            sent: r.u64()?,
            retransmitted: r.u64()?,
            delivered: r.u64()?,
            failed: r.u64()?,
            received: r.u64()?,
        };
        let next_seen_order = r.u64()?;
        let reack_window_start = Timestamp::from_millis(r.u64()?);
        let reack_count = r.u32()?;
        if reack_count > REACKNOWLEDGE_BUDGET {
            return Err(DecodeError::InvalidValue {
                field: "re-acknowledgement count",
            });
        }
        Ok(Self {
            next_seq,
            stats,
            next_seen_order,
            reack_window_start,
            reack_count,
            ..Self::default()
        })
    }

    /// Appends a decoded outbox entry (in increasing `seq` order), checking its invariants.
    fn insert_outbox_entry(&mut self, entry: OutboxEntry) -> Result<(), DecodeError> {
        if entry.seq >= self.next_seq {
            return Err(DecodeError::InvalidValue {
                field: "outbox seq",
            });
        }
        if entry.attempts == 0 {
            return Err(DecodeError::InvalidValue {
                field: "outbox attempts",
            });
        }
        if entry.next_attempt_at > entry.give_up_at() {
            return Err(DecodeError::InvalidValue {
                field: "outbox next attempt",
            });
        }
        if self.is_waiting(entry.id) {
            return Err(DecodeError::InvalidValue { field: "outbox id" });
        }
        self.outbox.push(entry);
        Ok(())
    }

    /// Appends a decoded dedup entry (in increasing `order`), checking its invariants.
    fn insert_seen_entry(&mut self, id: FrameId, entry: SeenEntry) -> Result<(), DecodeError> {
        if entry.order >= self.next_seen_order {
            return Err(DecodeError::InvalidValue {
                field: "dedup window order",
            });
        }
        if self.seen.insert(id, entry).is_some() {
            return Err(DecodeError::InvalidValue {
                field: "dedup window id",
            });
        }
        self.seen_order.push_back(id);
        Ok(())
    }

    fn check_held_bytes(&self) -> Result<(), DecodeError> {
        let held = self.held_bytes();
        if held > MAX_HELD_PAYLOAD_BYTES {
            return Err(DecodeError::TooLong {
                field: "held payload bytes",
                len: held,
                max: MAX_HELD_PAYLOAD_BYTES,
            });
        }
        Ok(())
    }
}

/// Length of the core record: version, eight `u64` counters and a `u32`.
const CORE_RECORD_LEN: usize = 1 + 8 * 8 + 4;

fn read_version(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let version = r.u8()?;
    if version != STATE_VERSION {
        return Err(DecodeError::UnknownVersion {
            what: "delivery state",
            found: version,
        });
    }
    Ok(())
}

fn write_outbox_entry(w: &mut Writer, e: &OutboxEntry) {
    write_outbox_entry_fields(w, e, &e.payload);
}

/// An outbox entry with `payload` in place of its own (empty: left out).
fn write_outbox_entry_fields(w: &mut Writer, e: &OutboxEntry, payload: &[u8]) {
    w.bytes(e.id.as_bytes()).u64(e.seq);
    e.to.write(w);
    w.u64(e.created_at.as_millis())
        .u32(e.attempts)
        .u64(e.next_attempt_at.as_millis());
    write_payload(w, payload);
}

fn read_outbox_entry(r: &mut Reader<'_>) -> Result<OutboxEntry, DecodeError> {
    Ok(OutboxEntry {
        id: FrameId::from_bytes(r.array()?),
        seq: r.u64()?,
        to: Address::read(r)?,
        created_at: Timestamp::from_millis(r.u64()?),
        attempts: r.u32()?,
        next_attempt_at: Timestamp::from_millis(r.u64()?),
        payload: r.var32("payload", MAX_PAYLOAD_LEN)?.to_vec(),
    })
}

fn write_seen_entry(w: &mut Writer, id: &FrameId, entry: &SeenEntry) {
    w.bytes(id.as_bytes()).u64(entry.order);
    entry.from.write(w);
    w.u64(entry.seen_at.as_millis())
        .bytes(entry.digest.as_bytes())
        .u64(entry.acked_at.as_millis());
}

fn read_seen_entry(r: &mut Reader<'_>) -> Result<(FrameId, SeenEntry), DecodeError> {
    let id = FrameId::from_bytes(r.array()?);
    let entry = SeenEntry {
        order: r.u64()?,
        from: Address::read(r)?,
        seen_at: Timestamp::from_millis(r.u64()?),
        digest: PayloadDigest::from_bytes(r.array()?),
        acked_at: Timestamp::from_millis(r.u64()?),
    };
    Ok((id, entry))
}

/// Counts are bounded far below `u16::MAX` by the limits in [`crate::consts`].
fn count16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Payloads are checked against [`MAX_PAYLOAD_LEN`] on entry, so the length fits a `u32`.
fn write_payload(w: &mut Writer, payload: &[u8]) {
    w.u32(u32::try_from(payload.len()).unwrap_or(u32::MAX))
        .bytes(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;
    use chacha20::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn addr(n: u8) -> Address {
        Address::new(&[n; 8]).unwrap()
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn frame_id(tx: &Transmit) -> FrameId {
        match Frame::from_bytes(&tx.frame).unwrap() {
            Frame::Data { id, .. } => id,
        }
    }

    #[test]
    fn give_up_reports_a_waiting_message_as_failed_at_once() {
        let mut rng = ChaCha20Rng::from_seed([11; 32]);
        let mut d = Delivery::new();
        let id = d.send(&mut rng, t(0), addr(2), b"sealed".to_vec()).unwrap();
        let other = d.send(&mut rng, t(0), addr(3), b"kept".to_vec()).unwrap();
        assert!(d.give_up(id));
        assert!(!d.is_waiting(id) && d.is_waiting(other));
        assert_eq!(d.poll_event(), Some(DeliveryEvent::DeliveryFailed(id)));
        assert_eq!(d.poll_event(), None);
        assert_eq!(d.stats().failed, 1);
        // Its queued transmit went with it.
        let sent: Vec<FrameId> = core::iter::from_fn(|| d.poll_transmit())
            .map(|tx| frame_id(&tx))
            .collect();
        assert_eq!(sent, vec![other]);
        assert!(
            d.take_changes().outbox.contains(&id),
            "its record is deleted"
        );
        // Not waiting any more: nothing to give up, nothing reported.
        assert!(!d.give_up(id));
        assert_eq!(d.poll_event(), None);
        assert_eq!(d.stats().failed, 1);
    }

    #[test]
    fn an_empty_payload_is_refused_and_changes_nothing() {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let mut d = Delivery::new();
        let id = d.send(&mut rng, t(0), addr(2), b"sealed".to_vec()).unwrap();
        let _ = d.poll_transmit();
        let before = d.to_bytes();
        assert_eq!(
            d.send(&mut rng, t(1), addr(2), Vec::new()),
            Err(OutboxError::EmptyPayload)
        );
        assert_eq!(
            d.send_unacknowledged(&mut rng, addr(2), Vec::new()),
            Err(OutboxError::EmptyPayload)
        );
        assert_eq!(
            d.replace_payload(id, Vec::new()),
            Err(OutboxError::EmptyPayload)
        );
        assert_eq!(d.to_bytes(), before);
        assert!(d.poll_transmit().is_none());
    }

    /// An entry restored from a record without its payload never goes out empty: when its
    /// retransmission is due it is listed for a payload, and once given one it goes out with
    /// it, under its id, on its schedule.
    #[test]
    fn an_entry_stored_without_its_payload_waits_for_one() {
        let mut rng = ChaCha20Rng::from_seed([10; 32]);
        let mut d = Delivery::new();
        let id = d.send(&mut rng, t(0), addr(2), b"sealed".to_vec()).unwrap();
        let other = d.send(&mut rng, t(0), addr(3), b"kept".to_vec()).unwrap();
        while d.poll_transmit().is_some() {}
        let record = d.outbox_record_without_payload(id).unwrap();
        let whole = d.outbox_record(id).unwrap();
        assert_eq!(record.len() + b"sealed".len(), whole.len());
        assert_eq!(&record[record.len() - 4..], &[0; 4], "payload length 0");
        assert!(
            d.outbox_record_without_payload(FrameId::from_bytes([7; 16]))
                .is_none()
        );
        let other_record = d.outbox_record(other).unwrap();
        let mut loaded = Delivery::from_records(
            &d.core_record(),
            [record.as_slice(), other_record.as_slice()],
            [],
        )
        .unwrap();
        assert!(
            loaded.queued_without_payload().is_empty(),
            "nothing due yet"
        );
        // Both are due: the one with its payload goes, the other waits for one.
        let due = loaded.poll_timeout().unwrap();
        loaded.handle_timeout(due.saturating_add(Duration::from_secs(3)));
        assert_eq!(loaded.queued_without_payload(), vec![id]);
        let mut twin = loaded.clone();
        let tx = loaded.poll_transmit().unwrap();
        assert_eq!((frame_id(&tx), tx.to), (other, addr(3)));
        assert!(loaded.poll_transmit().is_none(), "never an empty frame");
        // Given a payload, it goes with it.
        assert_eq!(twin.replace_payload(id, b"sealed again".to_vec()), Ok(true));
        assert!(twin.queued_without_payload().is_empty());
        let sent: Vec<Transmit> = core::iter::from_fn(|| twin.poll_transmit()).collect();
        assert_eq!(sent.len(), 2);
        let again = sent.iter().find(|tx| frame_id(tx) == id).unwrap();
        match Frame::from_bytes(&again.frame).unwrap() {
            Frame::Data { payload, .. } => assert_eq!(payload, b"sealed again"),
        }
        assert_eq!(
            twin.outbox_record(id).unwrap().len(),
            whole.len() + b" again".len()
        );
    }

    #[test]
    fn send_queues_one_transmit_then_retransmits_with_backoff() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let mut d = Delivery::new();
        let id = d
            .send(&mut rng, t(1_000), addr(2), b"hello".to_vec())
            .unwrap();
        let tx = d.poll_transmit().unwrap();
        assert_eq!(tx.to, addr(2));
        assert_eq!(frame_id(&tx), id);
        assert!(d.poll_transmit().is_none());

        let mut now = t(1_000);
        let mut waits = Vec::new();
        for attempt in 1..=14u32 {
            let due = d.poll_timeout().unwrap();
            let wait = due.saturating_duration_since(now).as_millis();
            let base = (2_000u64 << (attempt - 1)).min(3_600_000);
            assert!(
                (base..=base + base / 4).contains(&wait),
                "attempt {attempt}: {wait}"
            );
            waits.push(wait);
            d.handle_timeout(due.saturating_sub(Duration::from_millis(1)));
            assert!(d.poll_transmit().is_none(), "early timeout is a no-op");
            d.handle_timeout(due);
            assert_eq!(frame_id(&d.poll_transmit().unwrap()), id);
            now = due;
        }
        assert_eq!(d.stats().retransmitted, 14);
    }

    #[test]
    fn ack_from_the_recipient_delivers_once() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let mut d = Delivery::new();
        let id = d.send(&mut rng, t(0), addr(2), vec![1]).unwrap();
        let before = d.clone();
        assert_eq!(d.on_ack(&addr(3), id), AckOutcome::PeerMismatch);
        assert_eq!(
            d.on_ack(&addr(2), FrameId::from_bytes([0; 16])),
            AckOutcome::UnknownId
        );
        assert_eq!(d, before, "ignored acks change nothing");
        assert_eq!(d.on_ack(&addr(2), id), AckOutcome::Delivered);
        assert!(
            d.poll_transmit().is_none(),
            "acked before polled: nothing sent"
        );
        assert_eq!(d.poll_event(), Some(DeliveryEvent::Delivered(id)));
        assert_eq!(d.on_ack(&addr(2), id), AckOutcome::UnknownId);
        assert_eq!(d.poll_event(), None);
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn gives_up_after_the_deadline_even_after_a_long_sleep() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let mut d = Delivery::new();
        let a = d.send(&mut rng, t(0), addr(2), vec![1]).unwrap();
        let b = d.send(&mut rng, t(10_000), addr(2), vec![2]).unwrap();
        while d.poll_transmit().is_some() {}
        // Sleep through a's deadline but not b's: one call does everything due.
        let wake = t(GIVE_UP_AFTER.as_millis() + 5_000);
        d.handle_timeout(wake);
        assert_eq!(d.poll_event(), Some(DeliveryEvent::DeliveryFailed(a)));
        assert_eq!(d.poll_event(), None);
        let tx = d.poll_transmit().unwrap();
        assert_eq!(frame_id(&tx), b);
        assert!(
            d.poll_transmit().is_none(),
            "one retransmission, not a burst"
        );
        let give_up_b = t(GIVE_UP_AFTER.as_millis() + 10_000);
        assert!(d.poll_timeout().unwrap() <= give_up_b);
        d.handle_timeout(give_up_b);
        assert_eq!(d.poll_event(), Some(DeliveryEvent::DeliveryFailed(b)));
        assert_eq!(d.outbox_len(), 0);
        assert_eq!(d.on_ack(&addr(2), b), AckOutcome::UnknownId);
    }

    fn dg(n: u8) -> PayloadDigest {
        PayloadDigest::from_bytes([n; 32])
    }

    #[test]
    fn dedup_remembers_sender_and_forgets_by_age_and_count() {
        let mut d = Delivery::new();
        let id = FrameId::from_bytes([7; 16]);
        assert_eq!(d.check_incoming(id, &dg(1), t(0)), IncomingStatus::New);
        assert_eq!(
            d.accept_incoming(id, addr(5), dg(1), t(0)),
            IncomingStatus::New
        );
        let dup = IncomingStatus::Duplicate { from: addr(5) };
        assert_eq!(d.check_incoming(id, &dg(1), t(1)), dup);
        let before = d.clone();
        assert_eq!(d.accept_incoming(id, addr(6), dg(1), t(1)), dup);
        assert_eq!(d, before, "a duplicate changes nothing");
        let expiry = t(DEDUP_WINDOW_AGE.as_millis());
        assert_eq!(d.poll_timeout(), Some(expiry));
        assert_eq!(d.check_incoming(id, &dg(1), expiry), IncomingStatus::New);
        d.handle_timeout(expiry);
        assert_eq!(d.dedup_len(), 0);

        for i in 0..=MAX_DEDUP_ENTRIES {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let _ = d.accept_incoming(FrameId::from_bytes(b), addr(1), dg(1), t(5));
        }
        assert_eq!(d.dedup_len(), MAX_DEDUP_ENTRIES);
        assert_eq!(
            d.check_incoming(FrameId::from_bytes([0; 16]), &dg(1), t(6)),
            IncomingStatus::New,
            "the oldest id was forgotten"
        );
    }

    #[test]
    fn a_different_payload_under_a_seen_id_is_altered_not_a_duplicate() {
        let mut d = Delivery::new();
        let id = FrameId::from_bytes([7; 16]);
        let _ = d.accept_incoming(id, addr(5), dg(1), t(0));
        let altered = IncomingStatus::Altered { from: addr(5) };
        assert_eq!(d.check_incoming(id, &dg(2), t(1)), altered);
        let before = d.clone();
        assert_eq!(d.accept_incoming(id, addr(5), dg(2), t(1)), altered);
        assert_eq!(d, before, "an altered copy records nothing");
        assert!(d.update_incoming_digest(id, dg(2)));
        assert_eq!(
            d.check_incoming(id, &dg(2), t(2)),
            IncomingStatus::Duplicate { from: addr(5) }
        );
        assert!(!d.update_incoming_digest(FrameId::from_bytes([8; 16]), dg(2)));
    }

    #[test]
    fn reacknowledgements_are_rate_limited_per_id_and_overall() {
        let mut d = Delivery::new();
        let id = FrameId::from_bytes([7; 16]);
        assert!(!d.grant_reacknowledgement(id, t(0)), "unknown id");
        let _ = d.accept_incoming(id, addr(5), dg(1), t(0));
        let interval = MIN_REACKNOWLEDGE_INTERVAL.as_millis();
        assert!(
            !d.grant_reacknowledgement(id, t(interval - 1)),
            "too soon after the ack"
        );
        assert!(d.grant_reacknowledgement(id, t(interval)));
        assert!(
            !d.grant_reacknowledgement(id, t(interval + 1)),
            "too soon again"
        );
        assert!(d.grant_reacknowledgement(id, t(2 * interval)));

        // Overall budget: many distinct ids replayed at once.
        let mut d = Delivery::new();
        let ids: Vec<FrameId> = (0..(REACKNOWLEDGE_BUDGET + 10))
            .map(|i| {
                let mut b = [1u8; 16];
                b[..4].copy_from_slice(&i.to_be_bytes());
                FrameId::from_bytes(b)
            })
            .collect();
        for id in &ids {
            let _ = d.accept_incoming(*id, addr(5), dg(1), t(0));
        }
        let at = t(interval);
        let granted = ids
            .iter()
            .filter(|id| d.grant_reacknowledgement(**id, at))
            .count();
        assert_eq!(granted, REACKNOWLEDGE_BUDGET as usize);
        let restored = Delivery::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(restored, d, "the budget survives a restore");
        let later = t(interval + REACKNOWLEDGE_BUDGET_WINDOW.as_millis());
        assert!(d.grant_reacknowledgement(ids[REACKNOWLEDGE_BUDGET as usize], later));
    }

    #[test]
    fn limits_refuse_without_changing_anything() {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let mut d = Delivery::new();
        assert!(matches!(
            d.send(&mut rng, t(0), addr(1), vec![0; MAX_PAYLOAD_LEN + 1]),
            Err(OutboxError::PayloadTooLarge { .. })
        ));
        for i in 0..MAX_OUTBOX_MESSAGES {
            d.send(
                &mut rng,
                t(0),
                addr(1),
                vec![u8::try_from(i % 251).unwrap()],
            )
            .unwrap();
        }
        let before = d.clone();
        assert_eq!(
            d.send(&mut rng, t(0), addr(1), vec![1]),
            Err(OutboxError::OutboxFull {
                max: MAX_OUTBOX_MESSAGES
            })
        );
        assert_eq!(d, before);

        let mut d = Delivery::new();
        for _ in 0..MAX_HELD_PAYLOAD_BYTES / MAX_PAYLOAD_LEN {
            d.send(&mut rng, t(0), addr(1), vec![0; MAX_PAYLOAD_LEN])
                .unwrap();
        }
        assert!(matches!(
            d.send(&mut rng, t(0), addr(1), vec![0; 1]),
            Err(OutboxError::TooManyBytesHeld { .. })
        ));
        let mut d = Delivery::new();
        for _ in 0..MAX_QUEUED_UNACKNOWLEDGED {
            d.send_unacknowledged(&mut rng, addr(1), vec![1]).unwrap();
        }
        assert!(matches!(
            d.send_unacknowledged(&mut rng, addr(1), vec![1]),
            Err(OutboxError::UnacknowledgedQueueFull { .. })
        ));
    }

    #[test]
    fn unacknowledged_sends_are_transmitted_once() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let mut d = Delivery::new();
        let id = d
            .send_unacknowledged(&mut rng, addr(9), b"ack".to_vec())
            .unwrap();
        assert_eq!(d.poll_timeout(), None);
        let tx = d.poll_transmit().unwrap();
        assert_eq!(tx.to, addr(9));
        assert_eq!(frame_id(&tx), id);
        assert!(d.poll_transmit().is_none());
        d.handle_timeout(t(u64::MAX));
        assert!(d.poll_transmit().is_none());
        assert!(d.poll_event().is_none());
    }

    #[test]
    fn cancel_removes_without_an_event() {
        let mut rng = ChaCha20Rng::from_seed([6; 32]);
        let mut d = Delivery::new();
        let id = d.send(&mut rng, t(0), addr(1), vec![1]).unwrap();
        assert!(d.cancel(id));
        assert!(!d.cancel(id));
        assert!(d.poll_transmit().is_none());
        assert!(d.poll_event().is_none());
    }

    #[test]
    fn state_round_trips_and_refuses_trailing_bytes() {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let mut d = Delivery::new();
        let a = d.send(&mut rng, t(0), addr(1), b"one".to_vec()).unwrap();
        let _b = d.send(&mut rng, t(5), addr(2), b"two".to_vec()).unwrap();
        let _ = d.poll_transmit();
        let _ = d
            .send_unacknowledged(&mut rng, addr(3), b"ack".to_vec())
            .unwrap();
        assert_eq!(d.on_ack(&addr(1), a), AckOutcome::Delivered);
        let _ = d.accept_incoming(FrameId::from_bytes([9; 16]), addr(4), dg(9), t(7));
        d.handle_timeout(t(100_000));
        let bytes = d.to_bytes();
        let restored = Delivery::from_bytes(&bytes).unwrap();
        assert_eq!(restored, d);
        assert_eq!(restored.to_bytes(), bytes);
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Delivery::from_bytes(&long),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        for cut in 0..bytes.len() {
            assert!(Delivery::from_bytes(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn debug_shows_counts_only() {
        let mut rng = ChaCha20Rng::from_seed([8; 32]);
        let mut d = Delivery::new();
        let _ = d
            .send(&mut rng, t(0), addr(0x41), b"secret words".to_vec())
            .unwrap();
        let shown = format!("{d:?}");
        assert!(!shown.contains("secret"));
        assert!(!shown.contains("AAAA"));
        assert!(!shown.contains("65, 65"));
    }
}
