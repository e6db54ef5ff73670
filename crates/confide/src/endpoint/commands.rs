//! What the app asks the endpoint to do. Every command takes `(rng, now, ...)` and changes
//! nothing when it returns an error.

use crate::state::RecordKey;
use confide_crypto::{CryptoRng, Timestamp};
use confide_policy::{ConversationPolicy, MessageId, OutgoingFrame, RetentionPolicy, Side};
use confide_sealed::{Role, SenderCertificate};
use confide_session::{ExpectedIdentity, IdentityChangePolicy, Session, SessionRecord};
use confide_transport::{Address, FrameId};

use super::Endpoint;
use super::bare_ack::AcknowledgementPayload;
use super::conversation::{Conversation, SentKind, SentRecord};
use crate::consts::{MAX_CONVERSATIONS, MAX_HELD_TRANSMITS, UNANSWERED_SESSION_MAX_AGE};
use crate::error::{CommandError, IdentityChangeError, NewEndpointError, RenewError, StartError};
use crate::event::{ConversationId, Event, Party};

/// A conversation [`Endpoint::start_conversation`] started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct StartedConversation {
    /// Its handle.
    pub conversation: ConversationId,
    /// The peer's role, as its certificate states (validated before anything was encrypted).
    pub peer_role: Role,
}

impl Endpoint {
    /// Starts a conversation with the peer at `peer_address` from its certified prekey
    /// bundle (from the directory; see [`Endpoint::published_bundles`]), accepting its
    /// identity as `expected` says. The bundle's certificate must validate against our trust
    /// roots at `now` and name `peer_address` and the bundle's identity
    /// ([`Endpoint::inspect_bundle`] checks the same without changing anything). Returns the
    /// handle and the peer's certified role, known before anything is encrypted; messages
    /// sent on it are prekey messages until the peer answers. A closed conversation with the
    /// same peer does not prevent a new one.
    pub fn start_conversation<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        peer_address: Address,
        certified_bundle: &[u8],
        expected: ExpectedIdentity<'_>,
    ) -> Result<StartedConversation, StartError> {
        if self.conversation_with(&peer_address).is_some() {
            return Err(StartError::ConversationExists);
        }
        if self.open_conversation_count() >= MAX_CONVERSATIONS {
            return Err(StartError::TooManyConversations {
                max: MAX_CONVERSATIONS,
            });
        }
        let verified = self.verify_certified(now, &peer_address, certified_bundle, expected)?;
        let peer_role = verified.sender.role();
        let peer_identity = *verified.bundle.bundle().identity();
        let session = Session::initiate(rng, self.store.identity(), &verified.bundle)?;
        let mut conversation = Conversation::new(
            peer_address,
            peer_identity,
            Some(peer_role),
            SessionRecord::with_session(session),
            ConversationPolicy::new(
                Side::Initiator,
                self.config.org,
                self.config.initial_retention,
            ),
            Some(now),
        );
        conversation.peer_token = Some(verified.token);
        let id = self.insert_conversation(conversation);
        self.mark_changed();
        Ok(StartedConversation {
            conversation: id,
            peer_role,
        })
    }

    /// Replaces the session of an open conversation by a new one started from a fresh
    /// certified prekey bundle of the same peer (after [`CommandError::SessionStale`]). The
    /// bundle must carry the peer's known identity and a certificate for its address. Texts still waiting for an acknowledgement are
    /// re-encrypted in the new session and go out again under their old frame ids, so the
    /// peer shows none of them twice.
    pub fn renew_session<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        certified_bundle: &[u8],
    ) -> Result<(), RenewError> {
        let conv = self
            .conversations
            .get(&conversation)
            .filter(|c| c.is_open())
            .ok_or(RenewError::UnknownConversation)?;
        let verified = self.verify_certified(
            now,
            &conv.peer_address,
            certified_bundle,
            ExpectedIdentity::Exactly(&conv.peer_identity),
        )?;
        let role = verified.sender.role();
        let session = Session::initiate(rng, self.store.identity(), &verified.bundle)?;
        if let Some(conv) = self.conversations.get_mut(&conversation) {
            conv.peer_role = Some(role);
            conv.peer_token = Some(verified.token);
        }
        self.install_session(rng, now, conversation, session);
        self.collect_transmits(now);
        Ok(())
    }

    /// Makes `session` (one we initiated) the conversation's current session and
    /// re-encrypts every waiting frame of the conversation in it.
    pub(crate) fn install_session<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        session: Session,
    ) -> usize {
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return 0;
        };
        conv.record.promote(session);
        // The peer's new session state may come from a backup without our token.
        conv.token_confirmed = false;
        conv.initiated_at = Some(now);
        conv.reset_requested_at = None;
        self.end_sender_epochs(conversation);
        self.mark_changed();
        self.reencrypt_waiting(rng, now, conversation)
    }

    /// Re-encrypts every frame of `conversation` still waiting for an acknowledgement in the
    /// conversation's current session and queues it again under its old frame id (so a peer
    /// that already has it acknowledges it without showing it twice). Returns how many.
    pub(crate) fn reencrypt_waiting<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
    ) -> usize {
        let waiting: Vec<FrameId> = self
            .sent
            .iter()
            .filter(|(_, s)| s.conversation == conversation)
            .map(|(f, _)| *f)
            .collect();
        let mut resent = 0;
        for frame_id in waiting {
            if self.reencrypt_frame(rng, now, frame_id) {
                resent += 1;
            }
        }
        self.mark_changed();
        resent
    }

    /// Re-encrypts the waiting frame `frame_id` in its conversation's current session (a new
    /// session message, so a new position in the ratchet) and seals it as
    /// [`Endpoint::encrypt_and_seal`] does, keeping its frame id. Returns whether it was
    /// replaced.
    pub(crate) fn reencrypt_frame<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        frame_id: FrameId,
    ) -> bool {
        let Some((conversation, content)) = self
            .sent
            .get(&frame_id)
            .map(|r| (r.conversation, r.content.clone()))
        else {
            return false;
        };
        let Some(sealed) = self.encrypt_and_seal(rng, now, conversation, &content) else {
            return false;
        };
        if self.delivery.replace_payload(frame_id, sealed.envelope) == Ok(true)
            && let Some(record) = self.sent.get_mut(&frame_id)
        {
            record.carries_token = sealed.carries_token;
            self.note_sealed(
                conversation,
                frame_id,
                sealed.started,
                sealed.symmetric_epoch,
            );
            self.mark_changed();
            return true;
        }
        false
    }

    /// Gives a payload to every frame whose retransmission is queued but whose payload was
    /// not stored (a state loaded from records keeps each waiting frame's content, not its
    /// sealed frame): its content is encrypted again in its conversation's current session
    /// and sealed, under the same frame id. The loaded session is marked restored, so this
    /// takes a fresh key (`docs/endpoint.md`, "Backups and restores"). A frame that cannot be
    /// encrypted again (its conversation has no session) is given up through the delivery
    /// machine, as one whose time ran out: the app learns it for a text
    /// (`Event::DeliveryFailed`) when the machine's events are collected.
    pub(crate) fn supply_payloads<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, now: Timestamp) {
        for frame_id in self.delivery.queued_without_payload() {
            if !self.reencrypt_frame(rng, now, frame_id) {
                self.delivery.give_up(frame_id);
            }
        }
    }

    /// Replaces our sender certificate (renewal). It must name our identity. Frames still
    /// waiting for an acknowledgement are re-sealed under it at once, so a recipient that
    /// comes online after the old certificate's grace period still accepts them.
    pub fn set_certificate<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        certificate: SenderCertificate,
    ) -> Result<(), NewEndpointError> {
        if *certificate.identity() != self.store.identity().public() {
            return Err(NewEndpointError::CertificateIdentityMismatch);
        }
        self.certificate = certificate;
        // The peers learn the new certificate from our next public-key envelopes: every
        // symmetric epoch of ours ends (`docs/sealed-sender.md` §9.5).
        self.sender_epochs.clear();
        self.journal.mark(RecordKey::Identity);
        self.certificate_warned = false;
        // Our published bundles carry the certificate: the directory needs the new ones.
        self.events.push_back(Event::BundlesChanged);
        // Each waiting frame is encrypted again in its conversation's current session (a new
        // position in the ratchet; the frame id stays, so a peer that got the old copy drops
        // the new one as a duplicate) and sealed in a public-key envelope under the new
        // certificate (the epochs just ended).
        let frames: Vec<FrameId> = self.sent.keys().copied().collect();
        for frame_id in frames {
            self.reencrypt_frame(rng, now, frame_id);
        }
        self.mark_changed();
        self.collect_transmits(now);
        Ok(())
    }

    /// Sends a text. Returns its id (named again by `Delivered`, `Expired`, `Deleted`).
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        text: &[u8],
    ) -> Result<MessageId, CommandError> {
        let max = confide_policy::limits::MAX_TEXT_LEN;
        if text.len() > max {
            return Err(CommandError::TextTooLong {
                len: text.len(),
                max,
            });
        }
        let (id, frame) = self.policy_frame(rng, now, conversation, |policy, id| {
            policy
                .send_text(id, text, now)
                .map_err(|e| send_error(policy, e))
        })?;
        self.send_frame(rng, now, conversation, frame, SentKind::Text)?;
        Ok(id)
    }

    /// Sends an attachment (a voice note, an image, a file) whose encrypted blob is already
    /// stored on the relay: the pointer (blob id, key, digest, length, type, duration)
    /// travels end to end encrypted like a text, expires with the timer and can be taken
    /// back with [`Endpoint::unsend`]. When either happens, erase the pointer and ask the
    /// relay to delete the blob. Returns its id.
    pub fn send_attachment<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        pointer: &confide_attachment::AttachmentPointer,
    ) -> Result<MessageId, CommandError> {
        let content = confide_policy::UserContent::Attachment(pointer.clone());
        self.send_user_content(rng, now, conversation, &content)
    }

    /// Tells the peer that the user took a screenshot of the conversation (send it when the
    /// platform reports one). Shown to the peer like a message, and timed like one.
    pub fn send_screenshot_notice<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
    ) -> Result<MessageId, CommandError> {
        let content = confide_policy::UserContent::ScreenshotNotice;
        self.send_user_content(rng, now, conversation, &content)
    }

    /// Sends user-visible content that is not a text: tracked, retransmitted, acknowledged
    /// (`Delivered`) and timed like a text.
    pub(crate) fn send_user_content<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        content: &confide_policy::UserContent,
    ) -> Result<MessageId, CommandError> {
        let (id, frame) = self.policy_frame(rng, now, conversation, |policy, id| {
            policy
                .send_content(id, content, now)
                .map_err(|e| send_error(policy, e))
        })?;
        self.send_frame(rng, now, conversation, frame, SentKind::Text)?;
        Ok(id)
    }

    /// Sends a control frame the policy builds with `build` (a referral answer, a step of a
    /// verification by code): reliable, never shown, never tracked by the policy.
    pub(crate) fn send_control<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        build: impl FnOnce(
            &mut ConversationPolicy,
            MessageId,
        ) -> Result<OutgoingFrame, confide_policy::ReceiptError>,
    ) -> Result<(), CommandError> {
        let (_, frame) = self.policy_frame(rng, now, conversation, |p, id| {
            build(p, id).map_err(|e| match e {
                confide_policy::ReceiptError::Closed { by } => CommandError::Closed {
                    by: Party::of(p.local_side(), by),
                },
                _ => CommandError::Policy,
            })
        })?;
        self.send_frame(rng, now, conversation, frame, SentKind::Control)
            .map(|_| ())
    }

    /// Proposes a new conversation timer (clamped by the org bounds); applies here at once.
    pub fn set_timer<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        policy: RetentionPolicy,
    ) -> Result<MessageId, CommandError> {
        let (id, frame) = self.policy_frame(rng, now, conversation, |p, id| {
            p.set_timer(policy, id, now).map_err(|e| match e {
                confide_policy::TimerChangeError::Closed { by } => CommandError::Closed {
                    by: Party::of(p.local_side(), by),
                },
                _ => CommandError::Policy,
            })
        })?;
        self.send_frame(rng, now, conversation, frame, SentKind::Control)?;
        Ok(id)
    }

    /// Takes back one of our texts (within the unsend window): erased here at once and a
    /// delete goes to the peer. If the text was never acknowledged, it stops being
    /// retransmitted.
    pub fn unsend<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        target: MessageId,
    ) -> Result<(), CommandError> {
        let (_, frame) = self.policy_frame(rng, now, conversation, |p, id| {
            p.unsend(target, id, now).map_err(|e| match e {
                confide_policy::UnsendError::Closed { by } => CommandError::Closed {
                    by: Party::of(p.local_side(), by),
                },
                _ => CommandError::Policy,
            })
        })?;
        self.cancel_sent(conversation, |s| s.message == target);
        self.send_frame(rng, now, conversation, frame, SentKind::Control)
            .map(|_| ())
    }

    /// The user read these messages: starts their after-read timers and sends a read
    /// receipt (if any of them are the peer's).
    pub fn mark_read<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        ids: &[MessageId],
    ) -> Result<(), CommandError> {
        let (_, frame) = self.policy_frame(rng, now, conversation, |p, id| {
            p.mark_read(ids, id, now).map_err(|_| CommandError::Policy)
        })?;
        match frame {
            Some(frame) => self
                .send_frame(rng, now, conversation, frame, SentKind::Control)
                .map(|_| ()),
            None => {
                self.drain_policy_events(conversation);
                self.mark_changed();
                Ok(())
            }
        }
    }

    /// Closes the conversation: a close frame goes to the peer, then our session keys are
    /// erased. Nothing more can be sent or received in it; the same peer can be contacted
    /// again with [`Endpoint::start_conversation`], which starts a new conversation.
    pub fn close<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
    ) -> Result<(), CommandError> {
        let (_, (frame, _erase)) = self.policy_frame(rng, now, conversation, |p, id| {
            p.close(id, now).map_err(|e| match e {
                confide_policy::CloseError::AlreadyClosed { by } => CommandError::Closed {
                    by: Party::of(p.local_side(), by),
                },
                _ => CommandError::Policy,
            })
        })?;
        let frame_id = self.send_frame(rng, now, conversation, frame, SentKind::Control)?;
        // The close frame is retransmitted for a while but can never be acknowledged.
        self.sent.remove(&frame_id);
        self.cancel_sent(conversation, |_| true);
        if let Some(conv) = self.conversations.get_mut(&conversation) {
            conv.record.erase();
            conv.close_sent = Some((frame_id, now));
        }
        self.forget_epochs(conversation);
        Ok(())
    }

    /// Accepts the new identity key of the peer after the user compared the new safety
    /// number, and processes the held message under it.
    pub fn accept_identity_change<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
    ) -> Result<(), IdentityChangeError> {
        let conv = self
            .conversations
            .get_mut(&conversation)
            .ok_or(IdentityChangeError::UnknownConversation)?;
        let (held, _new_identity) = conv
            .held_identity_change
            .take()
            .ok_or(IdentityChangeError::NothingPending)?;
        self.mark_changed();
        self.receive_frame(rng, &held, now, IdentityChangePolicy::Accept);
        self.collect_transmits(now);
        Ok(())
    }

    /// Drops the held message of a changed identity; the conversation keeps the old identity.
    pub fn reject_identity_change(
        &mut self,
        conversation: ConversationId,
    ) -> Result<(), IdentityChangeError> {
        let conv = self
            .conversations
            .get_mut(&conversation)
            .ok_or(IdentityChangeError::UnknownConversation)?;
        conv.held_identity_change
            .take()
            .ok_or(IdentityChangeError::NothingPending)?;
        self.mark_changed();
        Ok(())
    }

    // ---- internals -------------------------------------------------------------------------

    /// The shared start of every command that sends a policy frame: checks the conversation
    /// can send, picks a fresh content id, and lets the policy build the frame.
    pub(crate) fn policy_frame<R: CryptoRng + ?Sized, T>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        build: impl FnOnce(&mut ConversationPolicy, MessageId) -> Result<T, CommandError>,
    ) -> Result<(MessageId, T), CommandError> {
        self.check_can_send(now, conversation)?;
        let id = MessageId::random(rng);
        let conv = self
            .conversations
            .get_mut(&conversation)
            .ok_or(CommandError::UnknownConversation)?;
        Ok((id, build(&mut conv.policy, id)?))
    }

    pub(crate) fn check_can_send(
        &self,
        now: Timestamp,
        conversation: ConversationId,
    ) -> Result<(), CommandError> {
        let conv = self
            .conversations
            .get(&conversation)
            .ok_or(CommandError::UnknownConversation)?;
        if let Some(by) = conv.policy.closed_by() {
            return Err(CommandError::Closed {
                by: Party::of(conv.policy.local_side(), by),
            });
        }
        let Some(session) = conv.record.current() else {
            return Err(CommandError::Session);
        };
        if now >= self.certificate.expires_at() {
            return Err(CommandError::CertificateExpired {
                expired_at: self.certificate.expires_at(),
            });
        }
        if session.awaiting_reply()
            && conv
                .initiated_at
                .is_some_and(|t| now >= t.saturating_add(UNANSWERED_SESSION_MAX_AGE))
        {
            return Err(CommandError::SessionStale);
        }
        if self.delivery.outbox_len() >= confide_transport::consts::MAX_OUTBOX_MESSAGES
            || self.gate.held_len() >= MAX_HELD_TRANSMITS
        {
            return Err(CommandError::OutboxFull);
        }
        Ok(())
    }

    /// Encrypts a policy frame in the session, seals it to the peer and puts it in the
    /// outbox. Returns its frame id.
    pub(crate) fn send_frame<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        frame: OutgoingFrame,
        kind: SentKind,
    ) -> Result<FrameId, CommandError> {
        let conv = self
            .conversations
            .get(&conversation)
            .ok_or(CommandError::UnknownConversation)?;
        if conv.record.current().is_none() {
            return Err(CommandError::Session);
        }
        let message = frame.id();
        let content = frame.into_bytes();
        // Acknowledgements waiting in this conversation's batch ride on the message instead of
        // leaving in a frame of their own (`docs/endpoint.md`, "Acknowledgements").
        // Not a re-acknowledgement, which goes public-key on its own (the peer may have
        // dropped the epoch this message is sealed in).
        let acks = if conv.pending_acks.is_empty() || self.public_key_acks.contains(&conversation) {
            None
        } else {
            AcknowledgementPayload::new(&conv.pending_acks)
        };
        // With a session present only the seal can refuse, for a payload over its limit.
        let sealed = self
            .encrypt_and_seal_with(rng, now, conversation, &content, true, acks.as_ref())
            .ok_or(CommandError::TextTooLong {
                len: content.len(),
                max: confide_policy::limits::MAX_TEXT_LEN,
            })?;
        if acks.is_some()
            && let Some(conv) = self.conversations.get_mut(&conversation)
        {
            conv.pending_acks.clear();
            conv.ack_due = None;
        }
        let carries_token = sealed.carries_token;
        let frame_id = self
            .delivery
            .send(rng, now, sealed.to, sealed.envelope)
            .map_err(|_| CommandError::OutboxFull)?;
        self.note_sealed(
            conversation,
            frame_id,
            sealed.started,
            sealed.symmetric_epoch,
        );
        self.sent.insert(
            frame_id,
            SentRecord {
                conversation,
                message,
                kind,
                content,
                carries_token,
            },
        );
        self.drain_policy_events(conversation);
        self.mark_changed();
        self.collect_transmits(now);
        Ok(frame_id)
    }
}

/// What a refused user message means for the app.
fn send_error(policy: &ConversationPolicy, e: confide_policy::SendError) -> CommandError {
    match e {
        confide_policy::SendError::Closed { by } => CommandError::Closed {
            by: Party::of(policy.local_side(), by),
        },
        confide_policy::SendError::TextTooLong { len, max } => {
            CommandError::TextTooLong { len, max }
        }
        _ => CommandError::Policy,
    }
}
