//! The [`Endpoint`]: one account, its conversations and its delivery machine, sans IO.

use std::collections::{BTreeMap, VecDeque};

use confide_crypto::{
    CryptoRng, Timestamp, identity::IdentityKeyPair, identity::IdentityPublicKey,
};
use confide_policy::{
    ConversationPolicy, Incoming, MessageId, OrgBounds, OutgoingFrame, PolicyEvent,
    RetentionPolicy, Side, TimerSetting,
};
use confide_sealed::{Role, SenderCertificate, TrustRoots};
use confide_session::{
    DecryptError, ExpectedIdentity, IdentityChangePolicy, PreKeyBundle, PreKeyStore, SafetyNumber,
    Session, SessionMessage, SessionRecord,
};
use confide_transport::{
    AckOutcome, Address, Delivery, DeliveryEvent, Frame, IncomingStatus, MessageId as FrameId,
    Transmit,
};

use crate::consts::{
    CLOSE_RETRANSMIT_PERIOD, MAX_CONVERSATIONS, MAX_HELD_TRANSMITS, MIN_ONE_TIME_KEM_PREKEYS,
    MIN_ONE_TIME_PREKEYS, ONE_TIME_KEM_PREKEY_TARGET, ONE_TIME_PREKEY_TARGET,
    SIGNED_PREKEY_MAX_AGE,
};
use crate::error::{CommandError, IdentityChangeError, NewEndpointError, StartError};
use crate::event::{ConversationId, Event, Input, Output};

/// Whether the endpoint waits for the app to persist its state before frames leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Persistence {
    /// The default: frames leave only after [`Endpoint::confirm_persisted`] covered the state
    /// that produced them (nothing lost, no key reused across a crash).
    Required,
    /// For endpoints that keep no state at all (a throwaway session, a benchmark): frames
    /// leave at once and no [`Event::PersistRequired`] is emitted. A restart of such an
    /// endpoint loses its conversations; it must never restore an old export.
    Ephemeral,
}

/// Settings of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConfig {
    /// The organisation's bounds on retention timers.
    pub org: OrgBounds,
    /// The timer a new conversation starts with on this side.
    pub initial_retention: RetentionPolicy,
    /// Whether frames wait for persistence.
    pub persistence: Persistence,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            org: OrgBounds::UNRESTRICTED,
            initial_retention: RetentionPolicy::Off,
            persistence: Persistence::Required,
        }
    }
}

/// Counters of what the endpoint dropped and why (diagnostics; never affect behaviour).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Frames that were not valid transport frames.
    pub malformed_frames: u64,
    /// Frames whose sealed envelope did not open (bad certificate chain, not for us, forged).
    pub unopened_envelopes: u64,
    /// Session messages that failed to authenticate (forged, tampered or a reused key).
    pub authentication_failures: u64,
    /// Session messages already decrypted before (replays the dedup window missed).
    pub session_duplicates: u64,
    /// Other refused session messages (unknown prekeys, no session, too far ahead, ...).
    pub session_refusals: u64,
    /// Authenticated frames whose content the conversation policy refused.
    pub content_refusals: u64,
    /// Frames for closed conversations.
    pub closed_conversation_frames: u64,
    /// Frames seen again within the dedup window (re-acknowledged, not shown again).
    pub duplicate_frames: u64,
}

/// What kind of frame an outbox entry carries, so its acknowledgement is reported right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SentKind {
    Text,
    Control,
}

impl SentKind {
    pub(crate) const fn to_byte(self) -> u8 {
        match self {
            Self::Text => 1,
            Self::Control => 2,
        }
    }

    pub(crate) const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Text),
            2 => Some(Self::Control),
            _ => None,
        }
    }
}

/// An outgoing reliable frame waiting for its end-to-end acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SentRecord {
    pub(crate) conversation: ConversationId,
    pub(crate) message: MessageId,
    pub(crate) kind: SentKind,
}

/// One conversation: the peer, its session record and its retention policy.
#[derive(Clone)]
pub(crate) struct Conversation {
    pub(crate) peer_address: Address,
    pub(crate) peer_identity: IdentityPublicKey,
    pub(crate) peer_role: Option<Role>,
    pub(crate) record: SessionRecord,
    pub(crate) policy: ConversationPolicy,
    /// Our close frame's transport id and when it was sent (retransmitted for
    /// [`CLOSE_RETRANSMIT_PERIOD`]).
    pub(crate) close_sent: Option<(FrameId, Timestamp)>,
    /// A frame from the peer's address under a new identity, held for the app's decision.
    pub(crate) held_identity_change: Option<Vec<u8>>,
}

/// One account behind a sans-IO interface: identity and prekeys, mailbox address, sender
/// certificate, the service's trust roots, conversations, the transport delivery machine and
/// the output queue. See the [crate documentation](crate) for the run loop.
///
/// `Debug` prints counts only.
pub struct Endpoint {
    pub(crate) store: PreKeyStore,
    pub(crate) address: Address,
    pub(crate) certificate: SenderCertificate,
    pub(crate) roots: TrustRoots,
    pub(crate) config: EndpointConfig,
    pub(crate) conversations: BTreeMap<ConversationId, Conversation>,
    pub(crate) next_conversation: u64,
    pub(crate) delivery: Delivery,
    pub(crate) sent: BTreeMap<FrameId, SentRecord>,
    /// Frames to transmit, tagged with the change counter at which they were produced. A frame
    /// leaves only once a state at least that new was confirmed persisted.
    pub(crate) held: VecDeque<(u64, Transmit)>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: EndpointStats,
    /// Incremented at every state change that must be persisted.
    pub(crate) changes: u64,
    /// The change counter captured by the last export.
    pub(crate) exported: u64,
    /// The change counter the app confirmed persisted.
    pub(crate) confirmed: u64,
    /// `PersistRequired` was returned and no export happened since.
    pub(crate) persist_announced: bool,
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("conversations", &self.conversations.len())
            .field("outbox", &self.delivery.outbox_len())
            .field("held_transmits", &self.held.len())
            .field("events", &self.events.len())
            .field(
                "unconfirmed_changes",
                &self.changes.saturating_sub(self.confirmed),
            )
            .finish_non_exhaustive()
    }
}

fn frame_id_as_message_id(id: FrameId) -> MessageId {
    MessageId::from_bytes(id.to_bytes())
}

fn message_id_as_frame_id(id: MessageId) -> FrameId {
    FrameId::from_bytes(id.to_bytes())
}

impl Endpoint {
    /// A new account: `identity`, reachable at `address`, certified by `certificate` (which
    /// must name `identity`), trusting `roots`. Generates the initial prekeys. The first
    /// output is [`Event::PersistRequired`] (persist the new identity before publishing).
    pub fn new<R: CryptoRng + ?Sized>(
        rng: &mut R,
        now: Timestamp,
        identity: IdentityKeyPair,
        address: Address,
        certificate: SenderCertificate,
        roots: TrustRoots,
        config: EndpointConfig,
    ) -> Result<Self, NewEndpointError> {
        if *certificate.identity() != identity.public() {
            return Err(NewEndpointError::CertificateIdentityMismatch);
        }
        let store = PreKeyStore::new(identity, rng, now);
        let mut endpoint = Self::assemble(store, address, certificate, roots, config);
        endpoint.maintain_prekeys(rng, now);
        endpoint.mark_changed();
        Ok(endpoint)
    }

    pub(crate) fn assemble(
        store: PreKeyStore,
        address: Address,
        certificate: SenderCertificate,
        roots: TrustRoots,
        config: EndpointConfig,
    ) -> Self {
        Self {
            store,
            address,
            certificate,
            roots,
            config,
            conversations: BTreeMap::new(),
            next_conversation: 1,
            delivery: Delivery::new(),
            sent: BTreeMap::new(),
            held: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
            changes: 0,
            exported: 0,
            confirmed: 0,
            persist_announced: false,
        }
    }

    // ---- getters ---------------------------------------------------------------------------

    /// Our mailbox address.
    #[must_use]
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Our identity key.
    #[must_use]
    pub fn identity(&self) -> IdentityPublicKey {
        self.store.identity().public()
    }

    /// Encoded prekey bundles to upload to the directory (one per one-time prekey, then a
    /// last-resort bundle).
    #[must_use]
    pub fn bundles(&self) -> Vec<Vec<u8>> {
        self.store
            .bundles()
            .iter()
            .map(PreKeyBundle::to_bytes)
            .collect()
    }

    /// Our conversations.
    #[must_use]
    pub fn conversations(&self) -> Vec<ConversationId> {
        self.conversations.keys().copied().collect()
    }

    /// The conversation with the peer at `address`, if any.
    #[must_use]
    pub fn conversation_with(&self, address: &Address) -> Option<ConversationId> {
        self.conversations
            .iter()
            .find(|(_, c)| &c.peer_address == address)
            .map(|(id, _)| *id)
    }

    /// The peer's mailbox address.
    #[must_use]
    pub fn peer_address(&self, conversation: ConversationId) -> Option<&Address> {
        self.conversations
            .get(&conversation)
            .map(|c| &c.peer_address)
    }

    /// The peer's certified role, once a message from it authenticated.
    #[must_use]
    pub fn peer_role(&self, conversation: ConversationId) -> Option<Role> {
        self.conversations
            .get(&conversation)
            .and_then(|c| c.peer_role)
    }

    /// The safety number of this conversation (compare it out of band).
    #[must_use]
    pub fn safety_number(&self, conversation: ConversationId) -> Option<SafetyNumber> {
        self.conversations
            .get(&conversation)
            .map(|c| SafetyNumber::new(&self.store.identity().public(), &c.peer_identity))
    }

    /// Who closed the conversation, if it is closed.
    #[must_use]
    pub fn closed_by(&self, conversation: ConversationId) -> Option<Side> {
        self.conversations
            .get(&conversation)
            .and_then(|c| c.policy.closed_by())
    }

    /// Whether the conversation still holds session keys.
    #[must_use]
    pub fn has_session(&self, conversation: ConversationId) -> bool {
        self.conversations
            .get(&conversation)
            .is_some_and(|c| c.record.current().is_some())
    }

    /// The conversation's agreed timer.
    #[must_use]
    pub fn current_timer(&self, conversation: ConversationId) -> Option<TimerSetting> {
        self.conversations
            .get(&conversation)
            .map(|c| c.policy.current_timer())
    }

    /// Reliable frames waiting for an acknowledgement.
    #[must_use]
    pub fn outbox_len(&self) -> usize {
        self.delivery.outbox_len()
    }

    /// Whether state changed since the last [`Endpoint::confirm_persisted`].
    #[must_use]
    pub fn needs_persist(&self) -> bool {
        self.changes > self.confirmed
    }

    /// Diagnostic counters.
    #[must_use]
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Replaces our sender certificate (renewal before expiry). Must name our identity.
    pub fn set_certificate(
        &mut self,
        certificate: SenderCertificate,
    ) -> Result<(), NewEndpointError> {
        if *certificate.identity() != self.store.identity().public() {
            return Err(NewEndpointError::CertificateIdentityMismatch);
        }
        self.certificate = certificate;
        self.mark_changed();
        Ok(())
    }

    // ---- the sans-IO core ------------------------------------------------------------------

    /// Feeds one input. Afterwards call [`Endpoint::poll_output`] until it returns
    /// [`Output::Timeout`].
    pub fn handle_input<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, input: Input<'_>) {
        match input {
            Input::Receive { bytes, now } => self.receive(rng, bytes, now),
            Input::Timeout { now } => self.timeout(rng, now),
        }
        self.collect_transmits();
    }

    /// The next output: events first, then frames whose state is confirmed persisted, then
    /// the next deadline.
    pub fn poll_output(&mut self) -> Output {
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        // Announced after the events it covers, so the app stores what it made of them
        // together with the state.
        let ephemeral = self.config.persistence == Persistence::Ephemeral;
        if !ephemeral && self.changes > self.exported && !self.persist_announced {
            self.persist_announced = true;
            return Output::Event(Event::PersistRequired);
        }
        if self
            .held
            .front()
            .is_some_and(|(tag, _)| ephemeral || *tag <= self.confirmed)
            && let Some((_, tx)) = self.held.pop_front()
        {
            return Output::Transmit(tx);
        }
        Output::Timeout(self.poll_timeout())
    }

    /// The earliest time something is due, or `None`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next = self.delivery.poll_timeout();
        let mut consider = |t: Option<Timestamp>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for c in self.conversations.values() {
            consider(c.policy.poll_timeout());
            consider(
                c.close_sent
                    .map(|(_, at)| at.saturating_add(CLOSE_RETRANSMIT_PERIOD)),
            );
        }
        consider(
            self.store
                .signed_prekey_created_at()
                .map(|t| t.saturating_add(SIGNED_PREKEY_MAX_AGE)),
        );
        consider(
            self.store
                .last_resort_kem_created_at()
                .map(|t| t.saturating_add(SIGNED_PREKEY_MAX_AGE)),
        );
        next
    }

    /// The app stored the blob of the last [`Endpoint::export_state`]: frames produced up to
    /// that export (acknowledgements and new ciphertexts) may now leave.
    pub fn confirm_persisted(&mut self) {
        self.confirmed = self.confirmed.max(self.exported);
    }

    // ---- commands --------------------------------------------------------------------------

    /// Starts a conversation with the peer at `peer_address` from its encoded prekey bundle
    /// (from the directory), accepting its identity as `expected` says. Returns the handle;
    /// messages sent on it are prekey messages until the peer answers.
    pub fn start_conversation<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        peer_address: Address,
        bundle: &[u8],
        expected: ExpectedIdentity<'_>,
    ) -> Result<ConversationId, StartError> {
        if self.conversation_with(&peer_address).is_some() {
            return Err(StartError::ConversationExists);
        }
        if self.conversations.len() >= MAX_CONVERSATIONS {
            return Err(StartError::TooManyConversations {
                max: MAX_CONVERSATIONS,
            });
        }
        let own = self.store.identity().public();
        let verified = PreKeyBundle::from_bytes(bundle)?.verify(expected, &own)?;
        let peer_identity = *verified.bundle().identity();
        let session = Session::initiate(rng, self.store.identity(), &verified)?;
        let id = self.insert_conversation(Conversation {
            peer_address,
            peer_identity,
            peer_role: None,
            record: SessionRecord::with_session(session),
            policy: ConversationPolicy::new(
                Side::Initiator,
                self.config.org,
                self.config.initial_retention,
            ),
            close_sent: None,
            held_identity_change: None,
        });
        self.mark_changed();
        Ok(id)
    }

    /// Sends a text. Returns its id (named again by `Delivered`, `Expired`, `Deleted`).
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        text: &[u8],
    ) -> Result<MessageId, CommandError> {
        self.check_can_send(conversation)?;
        let max = confide_policy::limits::MAX_TEXT_LEN;
        if text.len() > max {
            return Err(CommandError::TextTooLong {
                len: text.len(),
                max,
            });
        }
        let (id, frame) = self.policy_frame(rng, conversation, |policy, id| {
            policy.send_text(id, text, now).map_err(|e| match e {
                confide_policy::SendError::Closed { by } => CommandError::Closed { by },
                confide_policy::SendError::TextTooLong { len, max } => {
                    CommandError::TextTooLong { len, max }
                }
                _ => CommandError::Policy,
            })
        })?;
        self.send_frame(rng, now, conversation, &frame, SentKind::Text)?;
        Ok(id)
    }

    /// Proposes a new conversation timer (clamped by the org bounds); applies here at once.
    pub fn set_timer<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        policy: RetentionPolicy,
    ) -> Result<MessageId, CommandError> {
        let (id, frame) = self.policy_frame(rng, conversation, |p, id| {
            p.set_timer(policy, id, now).map_err(|e| match e {
                confide_policy::TimerChangeError::Closed { by } => CommandError::Closed { by },
                _ => CommandError::Policy,
            })
        })?;
        self.send_frame(rng, now, conversation, &frame, SentKind::Control)?;
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
        let (_, frame) = self.policy_frame(rng, conversation, |p, id| {
            p.unsend(target, id, now).map_err(|e| match e {
                confide_policy::UnsendError::Closed { by } => CommandError::Closed { by },
                _ => CommandError::Policy,
            })
        })?;
        let waiting: Vec<FrameId> = self
            .sent
            .iter()
            .filter(|(_, s)| s.conversation == conversation && s.message == target)
            .map(|(f, _)| *f)
            .collect();
        for f in waiting {
            if self.delivery.cancel(f) {
                self.sent.remove(&f);
            }
        }
        self.send_frame(rng, now, conversation, &frame, SentKind::Control)
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
        let (_, frame) = self.policy_frame(rng, conversation, |p, id| {
            p.mark_read(ids, id, now).map_err(|_| CommandError::Policy)
        })?;
        match frame {
            Some(frame) => self.send_frame(rng, now, conversation, &frame, SentKind::Control),
            None => {
                self.drain_policy_events(conversation);
                self.mark_changed();
                Ok(())
            }
        }
    }

    /// Closes the conversation: a close frame goes to the peer, then our session keys are
    /// erased. Nothing more can be sent or received in it.
    pub fn close<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
    ) -> Result<(), CommandError> {
        self.check_can_send(conversation)?;
        let id = MessageId::random(rng);
        let conv = self
            .conversations
            .get_mut(&conversation)
            .ok_or(CommandError::UnknownConversation)?;
        let (frame, _erase) = conv.policy.close(id, now).map_err(|e| match e {
            confide_policy::CloseError::AlreadyClosed { by } => CommandError::Closed { by },
            _ => CommandError::Policy,
        })?;
        let frame_id = self.send_frame_id(rng, now, conversation, &frame, SentKind::Control)?;
        if let Some(conv) = self.conversations.get_mut(&conversation) {
            conv.record.erase();
            conv.close_sent = Some((frame_id, now));
        }
        // The close frame is retransmitted for a while but can never be acknowledged.
        self.sent.remove(&frame_id);
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
        let held = conv
            .held_identity_change
            .take()
            .ok_or(IdentityChangeError::NothingPending)?;
        self.mark_changed();
        self.receive_frame(rng, &held, now, IdentityChangePolicy::Accept);
        self.collect_transmits();
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

    pub(crate) fn mark_changed(&mut self) {
        self.changes = self.changes.saturating_add(1);
    }

    fn insert_conversation(&mut self, conversation: Conversation) -> ConversationId {
        let id = ConversationId(self.next_conversation);
        self.next_conversation = self.next_conversation.saturating_add(1);
        self.conversations.insert(id, conversation);
        id
    }

    /// The shared start of every command that sends a policy frame: checks the conversation
    /// can send, picks a fresh frame id, and lets the policy build the frame.
    fn policy_frame<R: CryptoRng + ?Sized, T>(
        &mut self,
        rng: &mut R,
        conversation: ConversationId,
        build: impl FnOnce(&mut ConversationPolicy, MessageId) -> Result<T, CommandError>,
    ) -> Result<(MessageId, T), CommandError> {
        self.check_can_send(conversation)?;
        let id = MessageId::random(rng);
        let conv = self
            .conversations
            .get_mut(&conversation)
            .ok_or(CommandError::UnknownConversation)?;
        Ok((id, build(&mut conv.policy, id)?))
    }

    fn check_can_send(&self, conversation: ConversationId) -> Result<(), CommandError> {
        let conv = self
            .conversations
            .get(&conversation)
            .ok_or(CommandError::UnknownConversation)?;
        if let Some(by) = conv.policy.closed_by() {
            return Err(CommandError::Closed { by });
        }
        if conv.record.current().is_none() {
            return Err(CommandError::Session);
        }
        if self.delivery.outbox_len() >= confide_transport::consts::MAX_OUTBOX_MESSAGES
            || self.held.len() >= MAX_HELD_TRANSMITS
        {
            return Err(CommandError::OutboxFull);
        }
        Ok(())
    }

    fn send_frame<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        frame: &OutgoingFrame,
        kind: SentKind,
    ) -> Result<(), CommandError> {
        self.send_frame_id(rng, now, conversation, frame, kind)
            .map(|_| ())
    }

    /// Encrypts a policy frame in the session, seals it to the peer and puts it in the outbox.
    fn send_frame_id<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        frame: &OutgoingFrame,
        kind: SentKind,
    ) -> Result<FrameId, CommandError> {
        let conv = self
            .conversations
            .get_mut(&conversation)
            .ok_or(CommandError::UnknownConversation)?;
        let ciphertext = conv
            .record
            .encrypt(rng, frame.as_bytes())
            .map_err(|_| CommandError::Session)?;
        let envelope = confide_sealed::seal(
            rng,
            self.store.identity(),
            &self.certificate,
            &conv.peer_identity,
            &ciphertext,
        )
        .map_err(|_| CommandError::TextTooLong {
            len: frame.as_bytes().len(),
            max: confide_policy::limits::MAX_TEXT_LEN,
        })?;
        let to = conv.peer_address.clone();
        let frame_id = self
            .delivery
            .send(to, envelope, now, rng)
            .map_err(|_| CommandError::OutboxFull)?;
        self.sent.insert(
            frame_id,
            SentRecord {
                conversation,
                message: frame.id(),
                kind,
            },
        );
        self.drain_policy_events(conversation);
        self.mark_changed();
        self.collect_transmits();
        Ok(frame_id)
    }

    /// Moves the delivery machine's transmits and events into the endpoint's queues.
    fn collect_transmits(&mut self) {
        while let Some(tx) = self.delivery.poll_transmit() {
            self.held.push_back((self.changes, tx));
        }
        let mut changed = false;
        while let Some(event) = self.delivery.poll_event() {
            changed = true;
            match event {
                DeliveryEvent::Delivered(id) => {
                    if let Some(s) = self.sent.remove(&id)
                        && s.kind == SentKind::Text
                    {
                        self.events.push_back(Event::Delivered {
                            conversation: s.conversation,
                            id: s.message,
                        });
                    }
                }
                DeliveryEvent::DeliveryFailed(id) => {
                    if let Some(s) = self.sent.remove(&id)
                        && s.kind == SentKind::Text
                    {
                        self.events.push_back(Event::DeliveryFailed {
                            conversation: s.conversation,
                            id: s.message,
                        });
                    }
                }
                _ => {}
            }
        }
        if changed {
            self.mark_changed();
        }
    }

    fn drain_policy_events(&mut self, conversation: ConversationId) {
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        while let Some(event) = conv.policy.poll_event() {
            let event = match event {
                PolicyEvent::TimerChanged { setting, effective } => Event::TimerChanged {
                    conversation,
                    setting,
                    effective,
                },
                PolicyEvent::Expired { id } => Event::Expired { conversation, id },
                PolicyEvent::Deleted { id, author } => Event::Deleted {
                    conversation,
                    id,
                    by: author,
                },
                PolicyEvent::Closed { by } => Event::ConversationClosed { conversation, by },
                _ => continue,
            };
            self.events.push_back(event);
        }
    }

    fn timeout<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, now: Timestamp) {
        self.delivery.handle_timeout(now);
        let ids: Vec<ConversationId> = self.conversations.keys().copied().collect();
        for id in ids {
            let Some(conv) = self.conversations.get_mut(&id) else {
                continue;
            };
            let before = self.events.len();
            conv.policy.handle_timeout(now);
            let mut changed = false;
            if let Some(cutoff) = conv.policy.skipped_key_cutoff(now) {
                changed |= conv.record.prune_skipped_keys(cutoff) > 0;
            }
            if let Some((frame_id, at)) = conv.close_sent
                && now >= at.saturating_add(CLOSE_RETRANSMIT_PERIOD)
            {
                let _ = self.delivery.cancel(frame_id);
                conv.close_sent = None;
                changed = true;
            }
            self.drain_policy_events(id);
            if changed || self.events.len() != before {
                self.mark_changed();
            }
        }
        self.maintain_prekeys(rng, now);
    }

    /// Tops up one-time prekeys and rotates the signed and last-resort prekeys when due.
    fn maintain_prekeys<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, now: Timestamp) {
        let mut changed = false;
        let have = self.store.one_time_prekey_count();
        if have < MIN_ONE_TIME_PREKEYS {
            changed |= self
                .store
                .generate_one_time_prekeys(rng, ONE_TIME_PREKEY_TARGET.saturating_sub(have))
                > 0;
        }
        let have = self.store.one_time_kem_prekey_count();
        if have < MIN_ONE_TIME_KEM_PREKEYS {
            changed |= self.store.generate_one_time_kem_prekeys(
                rng,
                ONE_TIME_KEM_PREKEY_TARGET.saturating_sub(have),
            ) > 0;
        }
        if self
            .store
            .signed_prekey_created_at()
            .is_none_or(|t| now >= t.saturating_add(SIGNED_PREKEY_MAX_AGE))
        {
            let _ = self.store.rotate_signed_prekey(rng, now);
            changed = true;
        }
        if self
            .store
            .last_resort_kem_created_at()
            .is_none_or(|t| now >= t.saturating_add(SIGNED_PREKEY_MAX_AGE))
        {
            let _ = self.store.rotate_last_resort_kem_prekey(rng, now);
            changed = true;
        }
        if changed {
            self.events.push_back(Event::BundlesChanged);
            self.mark_changed();
        }
    }

    fn receive<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, bytes: &[u8], now: Timestamp) {
        self.receive_frame(rng, bytes, now, IdentityChangePolicy::Refuse);
    }

    /// The receive path: transport frame -> dedup -> sealed open -> conversation lookup ->
    /// session decrypt -> policy -> events and an end-to-end acknowledgement.
    fn receive_frame<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        bytes: &[u8],
        now: Timestamp,
        identity_change: IdentityChangePolicy,
    ) {
        let Ok(Frame::Data {
            id: frame_id,
            payload,
        }) = Frame::from_bytes(bytes)
        else {
            self.stats.malformed_frames = self.stats.malformed_frames.saturating_add(1);
            return;
        };
        if let IncomingStatus::Duplicate { from } = self.delivery.check_incoming(frame_id, now) {
            // Seen and recorded before: its acknowledgement may have been lost. Acknowledge
            // again (a fresh ack frame) without showing it again.
            self.stats.duplicate_frames = self.stats.duplicate_frames.saturating_add(1);
            if let Some(conversation) = self.conversation_with(&from) {
                self.acknowledge(rng, now, conversation, frame_id);
            }
            return;
        }
        let Ok(opened) = confide_sealed::open(self.store.identity(), &self.roots, now, &payload)
        else {
            self.stats.unopened_envelopes = self.stats.unopened_envelopes.saturating_add(1);
            return;
        };
        let sender = opened.sender;
        let Ok(peer_address) = Address::new(sender.address().as_bytes()) else {
            self.stats.unopened_envelopes = self.stats.unopened_envelopes.saturating_add(1);
            return;
        };
        let sender_identity = *sender.identity();
        let sender_role = sender.role();
        // A prekey message must come from the identity the certificate names.
        let prekey_from = match SessionMessage::from_bytes(&opened.payload) {
            Ok(SessionMessage::PreKey(p)) => Some(*p.initiator_identity()),
            Ok(_) => None,
            Err(_) => {
                self.stats.session_refusals = self.stats.session_refusals.saturating_add(1);
                return;
            }
        };
        if prekey_from.is_some_and(|i| i != sender_identity) {
            self.stats.session_refusals = self.stats.session_refusals.saturating_add(1);
            return;
        }

        let (conversation, decrypted) = match self.conversation_with(&peer_address) {
            Some(conversation) => {
                let Some(conv) = self.conversations.get_mut(&conversation) else {
                    return;
                };
                if conv.policy.closed_by().is_some() || conv.record.current().is_none() {
                    self.stats.closed_conversation_frames =
                        self.stats.closed_conversation_frames.saturating_add(1);
                    return;
                }
                let changed_identity = conv.peer_identity != sender_identity;
                if changed_identity && identity_change == IdentityChangePolicy::Refuse {
                    // Never accepted silently: hold the frame for the app's decision.
                    conv.held_identity_change = Some(bytes.to_vec());
                    self.events
                        .push_back(Event::IdentityChanged { conversation });
                    self.mark_changed();
                    return;
                }
                match conv
                    .record
                    .decrypt(&mut self.store, &opened.payload, now, identity_change)
                {
                    Ok(d) => {
                        if changed_identity {
                            conv.peer_identity = sender_identity;
                        }
                        (conversation, d)
                    }
                    Err(e) => {
                        self.count_decrypt_error(e);
                        return;
                    }
                }
            }
            None => {
                if prekey_from.is_none() {
                    self.stats.session_refusals = self.stats.session_refusals.saturating_add(1);
                    return;
                }
                if self.conversations.len() >= MAX_CONVERSATIONS {
                    self.stats.session_refusals = self.stats.session_refusals.saturating_add(1);
                    return;
                }
                let mut record = SessionRecord::new();
                let decrypted = match record.decrypt(
                    &mut self.store,
                    &opened.payload,
                    now,
                    IdentityChangePolicy::Refuse,
                ) {
                    Ok(d) => d,
                    Err(e) => {
                        self.count_decrypt_error(e);
                        return;
                    }
                };
                let conversation = self.insert_conversation(Conversation {
                    peer_address: peer_address.clone(),
                    peer_identity: sender_identity,
                    peer_role: Some(sender_role),
                    record,
                    policy: ConversationPolicy::new(
                        Side::Responder,
                        self.config.org,
                        self.config.initial_retention,
                    ),
                    close_sent: None,
                    held_identity_change: None,
                });
                self.events.push_back(Event::ConversationStarted {
                    conversation,
                    peer_role: sender_role,
                });
                self.maintain_prekeys(rng, now);
                (conversation, decrypted)
            }
        };
        // The session state advanced: from here on the state must be persisted.
        self.mark_changed();
        if decrypted.remote_identity != sender_identity {
            // Only possible through an archived session of an earlier identity: refuse.
            self.stats.content_refusals = self.stats.content_refusals.saturating_add(1);
            return;
        }
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        conv.peer_role = Some(sender_role);
        let incoming = match conv.policy.handle_incoming(&decrypted.plaintext, now) {
            Ok(incoming) => incoming,
            Err(_) => {
                self.stats.content_refusals = self.stats.content_refusals.saturating_add(1);
                return;
            }
        };
        match incoming {
            Incoming::DeliveryAcks { ids } => {
                // An authenticated end-to-end acknowledgement: never recorded, never acked.
                for id in ids {
                    let _: AckOutcome = self
                        .delivery
                        .on_ack(&peer_address, message_id_as_frame_id(id));
                }
            }
            Incoming::Closed(_erase) => {
                let _ = self
                    .delivery
                    .accept_incoming(frame_id, peer_address.clone(), now);
                conv.record.erase();
                // Stop retransmitting anything still waiting for this peer: it can never
                // be acknowledged now.
                let waiting: Vec<FrameId> = self
                    .sent
                    .iter()
                    .filter(|(_, s)| s.conversation == conversation)
                    .map(|(f, _)| *f)
                    .collect();
                for f in waiting {
                    let _ = self.delivery.cancel(f);
                    self.sent.remove(&f);
                }
            }
            other => {
                let _ = self
                    .delivery
                    .accept_incoming(frame_id, peer_address.clone(), now);
                self.acknowledge(rng, now, conversation, frame_id);
                match other {
                    Incoming::Message(m) => self.events.push_back(Event::Message {
                        conversation,
                        id: m.id,
                        sender_role,
                        text: m.text,
                        expires_at: m.deadline,
                    }),
                    Incoming::ReadReceipts { ids } => {
                        self.events.push_back(Event::Read { conversation, ids })
                    }
                    _ => {}
                }
            }
        }
        self.drain_policy_events(conversation);
    }

    fn count_decrypt_error(&mut self, e: DecryptError) {
        let s = &mut self.stats;
        match e {
            DecryptError::Authentication => {
                s.authentication_failures = s.authentication_failures.saturating_add(1);
            }
            DecryptError::Duplicate | DecryptError::ReplayedInitialMessage => {
                s.session_duplicates = s.session_duplicates.saturating_add(1);
            }
            _ => s.session_refusals = s.session_refusals.saturating_add(1),
        }
    }

    /// Encrypts an acknowledgement of `frame_id` in the session and queues it (unreliable:
    /// a lost ack is answered by a retransmission, which is acknowledged again). It leaves
    /// only after the state that received the message is confirmed persisted.
    fn acknowledge<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        frame_id: FrameId,
    ) {
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        if self.held.len() >= MAX_HELD_TRANSMITS {
            return;
        }
        let ack_id = MessageId::random(rng);
        let Ok(frame) = conv
            .policy
            .acknowledge(&[frame_id_as_message_id(frame_id)], ack_id, now)
        else {
            return;
        };
        let Ok(ciphertext) = conv.record.encrypt(rng, frame.as_bytes()) else {
            return;
        };
        let Ok(envelope) = confide_sealed::seal(
            rng,
            self.store.identity(),
            &self.certificate,
            &conv.peer_identity,
            &ciphertext,
        ) else {
            return;
        };
        let to = conv.peer_address.clone();
        let _ = self.delivery.send_unacknowledged(to, envelope, rng);
        self.mark_changed();
    }
}

impl confide_transport::driver::SansIoEndpoint for Endpoint {
    type Event = Event;

    fn handle_receive<R: CryptoRng + ?Sized>(&mut self, frame: &[u8], now: Timestamp, rng: &mut R) {
        self.handle_input(rng, Input::Receive { bytes: frame, now });
    }

    fn handle_timeout<R: CryptoRng + ?Sized>(&mut self, now: Timestamp, rng: &mut R) {
        self.handle_input(rng, Input::Timeout { now });
    }

    fn poll_output(&mut self) -> confide_transport::driver::EndpointOutput<Event> {
        use confide_transport::driver::EndpointOutput;
        match Endpoint::poll_output(self) {
            Output::Transmit(tx) => EndpointOutput::Transmit(tx),
            Output::Event(e) => EndpointOutput::Event(e),
            Output::Timeout(t) => EndpointOutput::Timeout(t),
        }
    }
}
