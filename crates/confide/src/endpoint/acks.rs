//! When end-to-end acknowledgements leave: the app's [`AckPolicy`], the per-conversation
//! batch, and the re-acknowledgement of duplicates.
//!
//! Acknowledgement timing tells a relay that watches both mailboxes when a recipient handled
//! a frame. With [`AckPolicy::Immediate`] an acknowledgement follows each received frame as
//! soon as the state is persisted; [`AckPolicy::Batched`] collects them per conversation and
//! sends them together at a random moment inside a window; [`AckPolicy::AppDriven`] sends
//! them only when the app asks. See `docs/endpoint.md` ("Acknowledgements").

use confide_crypto::{CryptoRng, Duration, Timestamp};
use confide_policy::MessageId;
use confide_policy::limits::MAX_IDS_PER_FRAME;
use confide_transport::FrameId;

use super::bare_ack::AcknowledgementPayload;
use super::{DropReason, Endpoint};
use crate::consts::{MAX_ACK_BATCH_WINDOW, MAX_HELD_TRANSMITS};
use crate::event::ConversationId;

/// When the endpoint sends end-to-end acknowledgements of received frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckPolicy {
    /// Acknowledge each frame as soon as the state that received it is persisted (the
    /// default: the sender learns of delivery soonest and retransmits least).
    Immediate,
    /// Collect acknowledgements per conversation and send them together in one frame, at a
    /// moment drawn uniformly from `[first + window/2, first + window]`, where `first` is
    /// when the oldest one started waiting. `window` is at most [`MAX_ACK_BATCH_WINDOW`].
    Batched {
        /// The batching window.
        window: Duration,
    },
    /// Acknowledge only when the app calls [`Endpoint::send_acknowledgements`] (for example
    /// when the user opens the conversation), or when [`MAX_IDS_PER_FRAME`] wait in one
    /// conversation. The sender retransmits until then.
    AppDriven,
}

impl AckPolicy {
    /// Whether the policy's parameters are within their limits.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        match self {
            Self::Batched { window } => {
                window.as_millis() > 0 && window.as_millis() <= MAX_ACK_BATCH_WINDOW.as_millis()
            }
            Self::Immediate | Self::AppDriven => true,
        }
    }
}

impl Endpoint {
    /// Acknowledges `frame_id` to the peer of `conversation` as the [`AckPolicy`] says (at
    /// once, in a batch, or when the app asks). It leaves only after the state that received
    /// the frame is confirmed persisted.
    pub(crate) fn acknowledge<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        frame_id: FrameId,
    ) {
        let policy = self.config.acknowledgements;
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        if !conv.pending_acks.contains(&frame_id) {
            conv.pending_acks.push(frame_id);
        }
        let full = conv.pending_acks.len() >= MAX_IDS_PER_FRAME;
        let flush_now = match policy {
            AckPolicy::Batched { window } => {
                if conv.ack_due.is_none() {
                    conv.ack_due = Some(batch_deadline(rng, now, window));
                }
                full
            }
            AckPolicy::AppDriven => full,
            AckPolicy::Immediate => true,
        };
        self.mark_changed();
        if flush_now {
            self.flush_acks(rng, now, conversation);
        }
    }

    /// Sends every acknowledgement still waiting, in every conversation (one frame per
    /// conversation). For [`AckPolicy::AppDriven`]; harmless under the other policies.
    pub fn send_acknowledgements<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, now: Timestamp) {
        let waiting: Vec<ConversationId> = self
            .conversations
            .iter()
            .filter(|(_, c)| !c.pending_acks.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for conversation in waiting {
            self.flush_acks(rng, now, conversation);
        }
        self.collect_transmits(now);
    }

    /// Sends the batches whose moment came.
    pub(crate) fn flush_due_acks<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, now: Timestamp) {
        let due: Vec<ConversationId> = self
            .conversations
            .iter()
            .filter(|(_, c)| c.ack_due.is_some_and(|t| now >= t))
            .map(|(id, _)| *id)
            .collect();
        for conversation in due {
            self.flush_acks(rng, now, conversation);
        }
    }

    /// Encrypts one acknowledgement frame naming every waiting frame id of `conversation`
    /// and queues it (unreliable: a lost ack is answered by a retransmission, which is
    /// acknowledged again).
    fn flush_acks<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
    ) {
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        let ids: Vec<FrameId> = conv.pending_acks.drain(..).collect();
        conv.ack_due = None;
        self.mark_changed();
        if ids.is_empty() {
            return;
        }
        if self.gate.held_len() >= MAX_HELD_TRANSMITS {
            self.drop_frame(Some(conversation), DropReason::AcknowledgementDeferred);
            return;
        }
        // The peer's frames are acknowledged outside the session when our current epoch
        // to it can seal them (`bare_ack`): no ratchet step on either side, 54 bytes for one
        // id. A re-acknowledgement (ours may not have arrived because the peer dropped that
        // epoch) and a conversation without a current epoch go in the session as before.
        let symmetric_allowed = !self.public_key_acks.remove(&conversation);
        if symmetric_allowed
            && let Some((to, envelope)) = self.seal_bare_acks(now, conversation, &ids)
        {
            let _ = self.delivery.send_unacknowledged(rng, to, envelope);
            return;
        }
        let ack_id = MessageId::random(rng);
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        // A conversation closed meanwhile has no session left to acknowledge in.
        let Ok(frame) = conv.policy.acknowledge(&ids, ack_id, now) else {
            return;
        };
        // An acknowledgement is never acknowledged, so an epoch its public-key envelope
        // would start can never become current: it is not recorded (and the peer installs
        // no window for it).
        let Some(sealed) =
            self.encrypt_and_seal_as(rng, now, conversation, frame.as_bytes(), symmetric_allowed)
        else {
            return;
        };
        let _ = self
            .delivery
            .send_unacknowledged(rng, sealed.to, sealed.envelope);
    }
}

impl Endpoint {
    /// `ids` as an [`AcknowledgementPayload`] in a symmetric envelope of our current epoch to
    /// the peer of `conversation`, if the conversation is open and that epoch can seal now
    /// (not due for renewal, keyed with the session's current envelope secret).
    fn seal_bare_acks(
        &mut self,
        now: Timestamp,
        conversation: ConversationId,
        ids: &[FrameId],
    ) -> Option<(confide_transport::Address, Vec<u8>)> {
        let conv = self
            .conversations
            .get(&conversation)
            .filter(|c| c.is_open())?;
        let secret = conv.record.current().and_then(|s| s.envelope_secret())?;
        let payload = AcknowledgementPayload::new(ids)?;
        let (envelope, _) = self.sender_epochs.get_mut(&conversation)?.seal_current(
            now,
            secret,
            &payload.to_bytes(),
            0,
        )?;
        Some((conv.peer_address.clone(), envelope))
    }
}

/// `now + window/2 + u`, with `u` uniform in `[0, window - window/2]` (milliseconds), drawn
/// as 8 bytes from `rng` read as a big-endian `u64` and reduced modulo the range size (the bias is below 2^-40 for any
/// window within [`MAX_ACK_BATCH_WINDOW`]).
fn batch_deadline<R: CryptoRng + ?Sized>(
    rng: &mut R,
    now: Timestamp,
    window: Duration,
) -> Timestamp {
    let window = window.as_millis().min(MAX_ACK_BATCH_WINDOW.as_millis());
    let half = window / 2;
    let span = window.saturating_sub(half).saturating_add(1);
    let draw = u64::from_be_bytes(confide_crypto::random_array::<8, R>(rng));
    let jitter = draw.checked_rem(span).unwrap_or(0);
    now.saturating_add(Duration::from_millis(half.saturating_add(jitter)))
}
