//! The [`Endpoint`]: one account, its conversations and its delivery machine, sans IO.
//!
//! The struct, its getters and the run loop (`handle_input`, `poll_output`, `poll_timeout`)
//! live here; each part with rules of its own has a module:
//!
//! * [`commands`]: what the app asks for (start, send, timers, unsend, read, close, renew);
//! * [`receive`]: the input pipeline, as named stages that each refuse with one reason;
//! * [`reset`]: re-establishing a session with a peer whose state went back in time;
//! * [`timers`]: timeouts, prekey upkeep, key shredding, certificate expiry;
//! * [`conversation`]: one conversation's state, the outbox records, tombstones;
//! * [`gate`]: nothing leaves before the state that produced it is stored;
//! * [`stats`]: every refusal's reason and its persisted counter.

mod acks;
mod bare_ack;
mod code;
mod commands;
pub(crate) mod conversation;
mod first_contact;
pub(crate) mod gate;
mod receive;
mod referral;
pub(crate) mod reset;
mod stats;
mod timers;
pub(crate) mod tracked;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use confide_crypto::{
    CryptoRng, Timestamp, identity::IdentityKeyPair, identity::IdentityPublicKey,
};
use confide_policy::{MessageId, OrgBounds, PolicyEvent, RetentionPolicy, TimerSetting};
use confide_sealed::{
    DeliveryToken, ProfileKey, Role, SenderCertificate, SymmetricSealer, TagDirectory,
    TokenVerifier, TrustRoots,
};
use confide_session::{PreKeyBundle, PreKeyStore, SafetyNumber};
use confide_transport::{Address, Delivery, DeliveryEvent, FrameId, RelayToken};

pub use acks::AckPolicy;
pub use bare_ack::AcknowledgementPayload;
pub use code::{ShortCode, ShortCodeError, Verification};
pub use commands::StartedConversation;
pub use first_contact::{CertifiedBundle, CertifiedBundleError, CertifiedPeer};
pub use referral::{ReceivedReferral, ReferralError};
pub use stats::{DropReason, EndpointStats};

use crate::consts::{
    CERTIFICATE_RENEWAL_WARNING, CLOSE_RETRANSMIT_PERIOD, MAX_GIVEN_UP_REMEMBERED,
    MAX_PENDING_SENDER_EPOCHS, MAX_TOMBSTONES, RESET_REQUEST_MIN_INTERVAL, SIGNED_PREKEY_MAX_AGE,
};
use crate::error::NewEndpointError;
use crate::event::{ConversationId, Event, Input, Output, Party};
use crate::state::{Journal, RecordKey};
use conversation::{
    Conversation, GivenUp, OutgoingEpoch, SenderEpochs, SentKind, SentRecord, Tombstone,
};
use gate::{GateOutput, PersistGate};
use tracked::{ControlSeen, Tracked};

/// Whether the endpoint waits for the app to persist its state before frames leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Persistence {
    /// The default: frames leave only after [`Endpoint::confirm_persisted`] covered the state
    /// that produced them (nothing lost, no key reused across a crash).
    Required,
    /// For endpoints that keep no state at all (a throwaway session, a benchmark): frames
    /// leave at once and no [`Event::PersistRequired`] is emitted. A restart of such an
    /// endpoint loses its conversations. It keeps no record of what changed:
    /// [`Endpoint::take_changes`] returns only the counters (use
    /// [`Endpoint::take_all_records`] or [`Endpoint::export_state`] to store one anyway).
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
    /// When acknowledgements of received frames leave.
    pub acknowledgements: AckPolicy,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            org: OrgBounds::UNRESTRICTED,
            initial_retention: RetentionPolicy::Off,
            persistence: Persistence::Required,
            acknowledgements: AckPolicy::Immediate,
        }
    }
}

/// The prekey bundles to publish, split the way a directory must serve them.
#[derive(Clone, PartialEq, Eq)]
pub struct PublishedBundles {
    /// Encoded bundles that each carry a one-time key: hand each to **one** requester, then
    /// delete it.
    pub one_time: Vec<Vec<u8>>,
    /// The encoded bundle without one-time keys: serve it to everyone once the one-time
    /// bundles are gone (it is safe to use many times).
    pub last_resort: Vec<u8>,
}

impl core::fmt::Debug for PublishedBundles {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            one_time,
            last_resort,
        } = self;
        f.debug_struct("PublishedBundles")
            .field("one_time", &one_time.len())
            .field("last_resort_len", &last_resort.len())
            .finish()
    }
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
    /// [`Event::CertificateExpiring`] was emitted for the current certificate.
    pub(crate) certificate_warned: bool,
    pub(crate) roots: TrustRoots,
    /// The secret our delivery token comes from (rotating it revokes the token).
    pub(crate) profile_key: ProfileKey,
    /// `DeliveryToken::derive(profile_key)`: what senders present to the relay for our
    /// mailbox; we send it to each peer until the peer acknowledged a frame carrying it.
    pub(crate) own_token: DeliveryToken,
    pub(crate) config: EndpointConfig,
    pub(crate) conversations: Tracked<ConversationId, Box<Conversation>>,
    pub(crate) tombstones: Tracked<ConversationId, Tombstone>,
    pub(crate) next_conversation: u64,
    pub(crate) delivery: Delivery,
    pub(crate) sent: Tracked<FrameId, SentRecord>,
    pub(crate) given_up: Tracked<FrameId, GivenUp>,
    pub(crate) gate: PersistGate,
    /// Which records changed and are not yet confirmed stored.
    pub(crate) journal: Journal,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: EndpointStats,
    /// Frame ids of received acknowledgements and resume frames.
    pub(crate) control_seen: ControlSeen,
    /// This state was imported and has not yet sent its resume frames.
    pub(crate) resume_pending: bool,
    /// Peers without a conversation we recently asked to reset (rate limit; not stored).
    pub(crate) unknown_peer_resets: BTreeMap<Address, Timestamp>,
    /// Every tag of the peers' symmetric envelopes we accept, by conversation
    /// (`docs/sealed-sender.md` §9.4). Its windows are stored in the conversation records.
    pub(crate) tag_directory: TagDirectory<ConversationId>,
    /// Our symmetric epochs to each peer. Never stored (see [`SenderEpochs`]).
    pub(crate) sender_epochs: BTreeMap<ConversationId, SenderEpochs>,
    /// The serial the next epoch of ours gets (never stored).
    pub(crate) next_epoch_serial: u64,
    /// Conversations whose next acknowledgement frame goes in a public-key envelope: it
    /// answers a duplicate, so our earlier acknowledgement did not arrive, perhaps because
    /// it was symmetric in an epoch the peer dropped (never stored).
    pub(crate) public_key_acks: BTreeSet<ConversationId>,
    /// Waiting frames re-encrypted once because a symmetric envelope of theirs drew no
    /// acknowledgement ([`Endpoint::reseal_unanswered_symmetric`]; never stored).
    pub(crate) reencrypted_symmetric: BTreeSet<FrameId>,
    /// Our waiting frames in symmetric envelopes, with their conversation and epoch serial
    /// (never stored: after a load no epoch of ours exists).
    pub(crate) symmetric_sent: BTreeMap<FrameId, (ConversationId, u64)>,
    /// Verifications by short code in flight (never stored: an app restart abandons them).
    pub(crate) code_attempts: BTreeMap<ConversationId, code::CodeAttempt>,
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Keys, tokens, addresses and certificates (which name people) stay out: counts only.
        let Self {
            store: _,
            address: _,
            certificate: _,
            certificate_warned: _,
            roots: _,
            profile_key: _,
            own_token: _,
            config: _,
            conversations,
            tombstones,
            next_conversation: _,
            delivery,
            sent: _,
            given_up: _,
            gate,
            journal: _,
            events,
            stats: _,
            control_seen: _,
            resume_pending: _,
            unknown_peer_resets: _,
            tag_directory: _,
            sender_epochs: _,
            next_epoch_serial: _,
            public_key_acks: _,
            reencrypted_symmetric: _,
            symmetric_sent: _,
            code_attempts: _,
        } = self;
        f.debug_struct("Endpoint")
            .field("conversations", &conversations.len())
            .field("tombstones", &tombstones.len())
            .field("outbox", &delivery.outbox_len())
            .field("held_transmits", &gate.held_len())
            .field("events", &events.len())
            .field("unconfirmed_changes", &gate.unconfirmed())
            .finish_non_exhaustive()
    }
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
        if !config.acknowledgements.is_valid() {
            return Err(NewEndpointError::InvalidAckPolicy);
        }
        let store = PreKeyStore::new(identity, rng, now);
        let profile_key = ProfileKey::random(rng);
        let mut endpoint = Self::assemble(store, address, certificate, roots, profile_key, config);
        endpoint.maintain_prekeys(rng, now);
        endpoint.journal.mark(RecordKey::Identity);
        endpoint.mark_changed();
        Ok(endpoint)
    }

    pub(crate) fn assemble(
        store: PreKeyStore,
        address: Address,
        certificate: SenderCertificate,
        roots: TrustRoots,
        profile_key: ProfileKey,
        config: EndpointConfig,
    ) -> Self {
        let own_token = derive_token(&profile_key);
        Self {
            store,
            address,
            certificate,
            certificate_warned: false,
            roots,
            profile_key,
            own_token,
            config,
            conversations: Tracked::default(),
            tombstones: Tracked::default(),
            next_conversation: 1,
            delivery: Delivery::new(),
            sent: Tracked::default(),
            given_up: Tracked::default(),
            gate: PersistGate::default(),
            journal: Journal::default(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
            control_seen: ControlSeen::default(),
            resume_pending: false,
            unknown_peer_resets: BTreeMap::new(),
            tag_directory: TagDirectory::new(),
            sender_epochs: BTreeMap::new(),
            next_epoch_serial: 0,
            public_key_acks: BTreeSet::new(),
            reencrypted_symmetric: BTreeSet::new(),
            symmetric_sent: BTreeMap::new(),
            code_attempts: BTreeMap::new(),
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

    /// The certified prekey bundles to upload to the directory: one-time bundles (each
    /// handed out once) and the last-resort bundle (served to everyone when they run out).
    /// Each carries our sender certificate, so an initiator learns our certified role before
    /// its first message. Upload again after every [`Event::BundlesChanged`] (also emitted
    /// when the certificate is renewed).
    #[must_use]
    pub fn published_bundles(&self) -> PublishedBundles {
        let certify =
            |b: &PreKeyBundle| first_contact::encode(&self.certificate, b, &self.own_token);
        PublishedBundles {
            one_time: self.store.one_time_bundles().iter().map(certify).collect(),
            last_resort: self
                .store
                .last_resort_bundle()
                .map(|b| certify(&b))
                .unwrap_or_default(),
        }
    }

    /// The verifier of our delivery token: register it with the relay for our mailbox, so
    /// that the relay accepts frames for us only from senders who hold the token (our
    /// contacts, and whoever fetched our certified bundle), without learning which one.
    #[must_use]
    pub fn delivery_token_verifier(&self) -> TokenVerifier {
        self.own_token.verifier()
    }

    /// Our sender certificate's expiry. Renew before it (see [`Event::CertificateExpiring`]).
    #[must_use]
    pub fn certificate_expires_at(&self) -> Timestamp {
        self.certificate.expires_at()
    }

    /// Our conversations: open ones and closed ones still running message timers.
    #[must_use]
    pub fn conversations(&self) -> Vec<ConversationId> {
        self.conversations.keys().copied().collect()
    }

    /// How many conversations are open (what [`MAX_CONVERSATIONS`] bounds).
    ///
    /// [`MAX_CONVERSATIONS`]: crate::consts::MAX_CONVERSATIONS
    #[must_use]
    pub fn open_conversation_count(&self) -> usize {
        self.conversations.values().filter(|c| c.is_open()).count()
    }

    /// The open conversation with the peer at `address`, if any.
    #[must_use]
    pub fn conversation_with(&self, address: &Address) -> Option<ConversationId> {
        self.conversations
            .iter()
            .find(|(_, c)| c.is_open() && &c.peer_address == address)
            .map(|(id, _)| *id)
    }

    /// The peer's mailbox address.
    #[must_use]
    pub fn peer_address(&self, conversation: ConversationId) -> Option<&Address> {
        self.conversations
            .get(&conversation)
            .map(|c| &c.peer_address)
    }

    /// The peer's certified role: from its certified bundle for a conversation we started,
    /// from its first message's certificate otherwise.
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

    /// The safety number the conversation would have under the peer's *new* identity, while
    /// an identity change is held ([`Event::IdentityChanged`]): show it next to
    /// [`Endpoint::safety_number`] (the old one) so the user can compare it out of band before
    /// accepting. `None` when no change is pending.
    #[must_use]
    pub fn pending_identity_safety_number(
        &self,
        conversation: ConversationId,
    ) -> Option<SafetyNumber> {
        self.conversations
            .get(&conversation)
            .and_then(|c| c.held_identity_change.as_ref())
            .map(|(_, new)| SafetyNumber::new(&self.store.identity().public(), new))
    }

    /// Who closed the conversation, if it is closed (also after it shrank to a tombstone,
    /// for the last [`MAX_TOMBSTONES`] of them).
    #[must_use]
    pub fn closed_by(&self, conversation: ConversationId) -> Option<Party> {
        self.conversations
            .get(&conversation)
            .and_then(|c| {
                c.policy
                    .closed_by()
                    .map(|by| Party::of(c.policy.local_side(), by))
            })
            .or_else(|| self.tombstones.get(&conversation).map(|t| t.closed_by))
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
        self.gate.needs_persist()
    }

    /// Diagnostic counters (stored with the state).
    #[must_use]
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    // ---- the sans-IO core ------------------------------------------------------------------

    /// Feeds one input. Afterwards call [`Endpoint::poll_output`] until it returns
    /// [`Output::Timeout`].
    pub fn handle_input<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, input: Input<'_>) {
        let now = input.now();
        if self.resume_pending {
            self.send_resumes(rng, now);
        }
        match input {
            Input::Receive { bytes, now } => self.receive(rng, bytes, now),
            Input::RelayReceipt { id, now } => {
                // Volatile (not saved): nothing to persist.
                if self.receipt_may_hold(id) {
                    let _ = self.delivery.on_relay_receipt(now, id);
                }
            }
            Input::RelayReconnected { now } => {
                self.delivery.on_relay_reconnected();
                self.timeout(rng, now);
            }
            // Timeouts, and any input kind a newer transport adds: do what is due.
            _ => self.timeout(rng, now),
        }
        self.collect_transmits(now);
    }

    /// The next output: events first, then [`Event::PersistRequired`] if the state changed,
    /// then frames whose state is confirmed persisted, then the next deadline.
    pub fn poll_output(&mut self) -> Output {
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        // Announced after the events it covers, so the app stores what it made of them
        // together with the state.
        let ephemeral = self.config.persistence == Persistence::Ephemeral;
        match self.gate.poll(ephemeral) {
            Some(GateOutput::PersistRequired) => Output::Event(Event::PersistRequired),
            Some(GateOutput::Transmit(tx)) => Output::Transmit(tx),
            None => {
                if ephemeral {
                    // Nothing is ever taken as a change set: what changed is not kept (or
                    // the change logs would grow with every message for as long as it runs).
                    self.forget_changes();
                }
                Output::Timeout(self.poll_timeout())
            }
        }
    }

    /// The earliest time something is due, or `None`: retransmissions, message timers, key
    /// shredding, close retransmissions, prekey rotation and the certificate warning.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.resume_pending {
            // Imported and not yet announced: due at once.
            return Some(Timestamp::from_millis(0));
        }
        let mut next = self.delivery.poll_timeout();
        let mut consider = |t: Option<Timestamp>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for c in self.conversations.values() {
            consider(c.policy.poll_timeout());
            consider(timers::shred_deadline(c));
            consider(
                c.close_sent
                    .map(|(_, at)| at.saturating_add(CLOSE_RETRANSMIT_PERIOD)),
            );
            consider(c.ack_due);
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
        if !self.certificate_warned {
            consider(Some(
                self.certificate
                    .expires_at()
                    .saturating_sub(CERTIFICATE_RENEWAL_WARNING),
            ));
        }
        next
    }

    /// The app stored the last change set of [`Endpoint::take_changes`] (or the blob of the
    /// last [`Endpoint::export_state`]): frames produced up to then (acknowledgements and new
    /// ciphertexts) may now leave, and the records it carried count as stored.
    pub fn confirm_persisted(&mut self) {
        self.gate.confirm();
        self.journal.confirm();
    }

    // ---- shared internals ------------------------------------------------------------------

    pub(crate) fn mark_changed(&mut self) {
        self.gate.mark_changed();
    }

    fn insert_conversation(&mut self, conversation: Conversation) -> ConversationId {
        let id = ConversationId(self.next_conversation);
        self.next_conversation = self.next_conversation.saturating_add(1);
        self.conversations.insert(id, Box::new(conversation));
        id
    }

    /// Encrypts `content` in the conversation's current session and seals the session message
    /// to the peer. The one path every outgoing frame takes; `None` if the session or the
    /// seal refused.
    ///
    /// The envelope is symmetric (`docs/sealed-sender.md` §9) when the conversation has a
    /// current epoch that is not due for renewal at `now` and belongs to the session's
    /// current envelope secret; otherwise it is a public-key envelope under our certificate,
    /// which starts a new epoch ([`Sealed::started`]: the caller that gives the frame an id
    /// records it with [`Endpoint::note_started_epoch`]).
    pub(crate) fn encrypt_and_seal<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        content: &[u8],
    ) -> Option<Sealed> {
        self.encrypt_and_seal_as(rng, now, conversation, content, true)
    }

    /// As [`Endpoint::encrypt_and_seal`]; with `symmetric_allowed` false the envelope is a
    /// public-key one even if a current epoch exists (which stays current).
    pub(crate) fn encrypt_and_seal_as<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        content: &[u8],
        symmetric_allowed: bool,
    ) -> Option<Sealed> {
        self.encrypt_and_seal_with(rng, now, conversation, content, symmetric_allowed, None)
    }

    /// As [`Endpoint::encrypt_and_seal_as`], with `acks` (acknowledgements of the peer's
    /// frames that were waiting) riding in front of the session message.
    pub(crate) fn encrypt_and_seal_with<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        conversation: ConversationId,
        content: &[u8],
        symmetric_allowed: bool,
        acks: Option<&AcknowledgementPayload>,
    ) -> Option<Sealed> {
        let conv = self.conversations.get_mut(&conversation)?;
        let message = conv.record.encrypt_message(rng, content).ok()?;
        // The session message's AEAD ciphertext ends every payload below (the token and the
        // acknowledgements go in front of it). A symmetric envelope carries it without
        // encrypting it again (`docs/sealed-sender.md` §9.3): it is fresh for this message and
        // never sent under another envelope (every re-seal encrypts the content again).
        let ciphertext_len = message.ciphertext_len();
        let session_message = message.to_bytes();
        let carries_token = !conv.token_confirmed;
        let payload = with_token(conv, &self.own_token, session_message);
        let payload = match acks {
            Some(acks) => acks.in_front_of(&payload),
            None => payload,
        };
        let secret = conv
            .record
            .current()
            .and_then(|s| s.envelope_secret())
            .cloned();
        let to = conv.peer_address.clone();
        let peer_identity = conv.peer_identity;
        let epochs = self.sender_epochs.entry(conversation).or_default();
        if symmetric_allowed
            && let Some(secret) = &secret
            && let Some((envelope, serial)) =
                epochs.seal_current(now, secret, &payload, ciphertext_len)
        {
            return Some(Sealed {
                carries_token,
                envelope,
                to,
                started: None,
                symmetric_epoch: Some(serial),
            });
        }
        // The current epoch (if any) ended: renewal is due, or the session changed. Frames
        // still waiting in it keep their envelopes: the peer keeps the epoch's window, and
        // one it lost is covered by the re-seal of unanswered symmetric frames
        // ([`Endpoint::reseal_unanswered_symmetric`]).
        if symmetric_allowed {
            epochs.current = None;
        }
        let (envelope, seed) = confide_sealed::seal_starting_epoch(
            rng,
            self.store.identity(),
            &self.certificate,
            &peer_identity,
            &payload,
        )
        .ok()?;
        let started = secret.and_then(|secret| self.new_epoch(&seed, secret, now));
        Some(Sealed {
            carries_token,
            envelope,
            to,
            started,
            symmetric_epoch: None,
        })
    }

    /// Our side of the epoch a public-key envelope with `seed` started, in the session with
    /// envelope secret `secret`.
    pub(crate) fn new_epoch(
        &mut self,
        seed: &confide_sealed::EpochSeed,
        secret: confide_crypto::secret::EnvelopeSecret,
        now: Timestamp,
    ) -> Option<OutgoingEpoch> {
        let sealer = SymmetricSealer::new(seed, &secret, now).ok()?;
        let serial = self.next_epoch_serial;
        self.next_epoch_serial = serial.wrapping_add(1);
        Some(OutgoingEpoch {
            sealer,
            secret,
            serial,
            proven: false,
        })
    }

    /// Records what the envelope of the reliable frame `frame_id` did to our epochs: a
    /// public-key one started a pending epoch ([`Endpoint::note_started_epoch`]); a symmetric
    /// one belongs to epoch `symmetric_epoch` (remembered so that its acknowledgement proves
    /// the epoch, and its failure to draw one demotes it).
    pub(crate) fn note_sealed(
        &mut self,
        conversation: ConversationId,
        frame_id: FrameId,
        started: Option<OutgoingEpoch>,
        symmetric_epoch: Option<u64>,
    ) {
        match symmetric_epoch {
            Some(serial) => {
                self.symmetric_sent.insert(frame_id, (conversation, serial));
            }
            None => {
                self.symmetric_sent.remove(&frame_id);
            }
        }
        self.note_started_epoch(conversation, frame_id, started);
    }

    /// Waiting frames in symmetric envelopes that drew no acknowledgement after
    /// [`SYMMETRIC_RESEAL_AFTER_ATTEMPTS`] transmissions go again in public-key envelopes
    /// (each starting a pending epoch), and the epoch they were sealed in stops being used:
    /// the peer may have lost its window (it keeps windows for its newest epochs only, and
    /// public-key frames can reach it out of order), and a symmetric frame it cannot open
    /// would otherwise be retransmitted unchanged until it gives up. A frame the peer merely
    /// did not receive yet costs one public-key envelope more.
    ///
    /// [`SYMMETRIC_RESEAL_AFTER_ATTEMPTS`]: crate::consts::SYMMETRIC_RESEAL_AFTER_ATTEMPTS
    pub(crate) fn reseal_unanswered_symmetric<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
    ) {
        // One pass over the outbox (a timeout must not cost outbox x frames).
        let unanswered: Vec<FrameId> = self
            .delivery
            .waiting()
            .filter(|(id, payload, attempts)| {
                payload.first() == Some(&confide_sealed::SYMMETRIC_ENVELOPE_KIND)
                    && *attempts >= crate::consts::SYMMETRIC_RESEAL_AFTER_ATTEMPTS
                    && self.sent.contains_key(id)
            })
            .map(|(id, _, _)| id)
            .collect();
        for frame_id in unanswered {
            let first_time = self.reencrypted_symmetric.insert(frame_id);
            if let Some((conversation, _)) = self.symmetric_sent.remove(&frame_id)
                && let Some(epochs) = self.sender_epochs.get_mut(&conversation)
            {
                // In a proven epoch (the peer opened envelopes of it) a first failure is
                // most likely loss: the frame goes again in that epoch, under a new index.
                // Otherwise, or the second time, the peer may have dropped the epoch: it
                // stops being used, and the frame goes with public keys.
                let stays = first_time && epochs.current.as_ref().is_some_and(|c| c.proven);
                if !stays {
                    epochs.current = None;
                }
            }
            let _ = self.reencrypt_frame(rng, now, frame_id);
        }
        // Forget frames no longer waiting (acknowledged, cancelled, given up).
        if !self.symmetric_sent.is_empty() || !self.reencrypted_symmetric.is_empty() {
            let waiting: BTreeSet<FrameId> = self.delivery.waiting().map(|(id, _, _)| id).collect();
            self.symmetric_sent.retain(|id, _| waiting.contains(id));
            self.reencrypted_symmetric.retain(|id| waiting.contains(id));
        }
    }

    /// Whether a relay receipt for `frame_id` may hold back its retransmissions: not for a
    /// symmetric frame whose epoch the peer has not yet proven to hold (an acknowledged
    /// symmetric envelope of it), since such a frame may need re-sealing
    /// ([`Endpoint::reseal_unanswered_symmetric`]) and a hold would delay that by hours.
    pub(crate) fn receipt_may_hold(&self, frame_id: FrameId) -> bool {
        let symmetric = self
            .delivery
            .waiting()
            .find(|(id, _, _)| *id == frame_id)
            .is_some_and(|(_, p, _)| p.first() == Some(&confide_sealed::SYMMETRIC_ENVELOPE_KIND));
        if !symmetric {
            return true;
        }
        self.symmetric_sent
            .get(&frame_id)
            .and_then(|(conversation, serial)| {
                let current = self.sender_epochs.get(conversation)?.current.as_ref()?;
                Some(current.serial == *serial && current.proven)
            })
            .unwrap_or(false)
    }

    /// Records the epoch a public-key envelope started as one of the conversation's pending
    /// epochs, under the id of the reliable frame that carries it: it becomes current when
    /// the peer acknowledges that frame (see [`SenderEpochs`]). The oldest pending epoch is
    /// forgotten beyond [`MAX_PENDING_SENDER_EPOCHS`].
    pub(crate) fn note_started_epoch(
        &mut self,
        conversation: ConversationId,
        frame_id: FrameId,
        started: Option<OutgoingEpoch>,
    ) {
        if let Some(epoch) = started {
            let epochs = self.sender_epochs.entry(conversation).or_default();
            epochs.pending.retain(|(f, _)| *f != frame_id);
            epochs.pending.push_back((frame_id, epoch));
            while epochs.pending.len() > MAX_PENDING_SENDER_EPOCHS {
                epochs.pending.pop_front();
            }
        }
    }

    /// The peer acknowledged our frame `frame_id` (called before the delivery machine
    /// forgets it). If it carried a pending epoch's public-key envelope, that epoch becomes
    /// current (the peer installed its window just before acknowledging) and the pending ones
    /// started before it are forgotten. The first acknowledgement of any other public-key
    /// frame (one whose epoch we forgot, or started before the current one) counts as a
    /// window the peer installed after the current one's was last used;
    /// [`MAX_EPOCHS_PER_CONVERSATION`] of them may have pushed it out, so it ends (see
    /// [`SenderEpochs`]). An acknowledged symmetric envelope of the current epoch (the peer
    /// used its window) starts the count again.
    ///
    /// [`MAX_EPOCHS_PER_CONVERSATION`]: confide_sealed::MAX_EPOCHS_PER_CONVERSATION
    pub(crate) fn confirm_epoch(&mut self, conversation: ConversationId, frame_id: FrameId) {
        let symmetric = self.symmetric_sent.remove(&frame_id);
        let public_key_frame_waiting = symmetric.is_none()
            && self.delivery.waiting().any(|(id, payload, _)| {
                id == frame_id && payload.first() != Some(&confide_sealed::SYMMETRIC_ENVELOPE_KIND)
            });
        let Some(epochs) = self.sender_epochs.get_mut(&conversation) else {
            return;
        };
        if let Some(position) = epochs.pending.iter().position(|(f, _)| *f == frame_id)
            && let Some((_, epoch)) = epochs.pending.remove(position)
        {
            // Epochs started before this one can no longer become current: the peer keeps
            // the newest windows it installed, and a late acknowledgement of an older frame
            // would take us back to an epoch it is likelier to have dropped. Their late
            // acknowledgements are counted below instead.
            epochs.pending.drain(..position);
            epochs.current = Some(epoch);
            epochs.installed_since_current = 0;
        } else if let Some((c, serial)) = symmetric {
            if c == conversation
                && let Some(current) = epochs.current.as_mut()
                && current.serial == serial
            {
                // The peer opened an envelope of the current epoch, which made its window
                // the last to go (order of last use): installs counted before no longer
                // threaten it.
                current.proven = true;
                epochs.installed_since_current = 0;
            }
        } else if public_key_frame_waiting && epochs.current.is_some() {
            // The peer installed this frame's window when it handled the frame, after the
            // current epoch's (whose acknowledgement came first) as far as we can tell.
            epochs.installed_since_current = epochs.installed_since_current.saturating_add(1);
            if epochs.installed_since_current >= confide_sealed::MAX_EPOCHS_PER_CONVERSATION {
                epochs.current = None;
                epochs.installed_since_current = 0;
            }
        }
    }

    /// Forgets our symmetric epochs to `conversation` (its session changed or it closed): the
    /// next envelope is a public-key one.
    pub(crate) fn end_sender_epochs(&mut self, conversation: ConversationId) {
        self.sender_epochs.remove(&conversation);
    }

    /// Forgets everything symmetric of a closed conversation: our epochs and the windows of
    /// the peer's.
    pub(crate) fn forget_epochs(&mut self, conversation: ConversationId) {
        self.end_sender_epochs(conversation);
        self.tag_directory.remove(&conversation);
    }

    /// The relay token for frames to `to`: the delivery token its conversation learned (from
    /// its certified bundle or from its own frames). `None` for a peer we have none for.
    fn relay_token_for(&self, to: &Address) -> Option<RelayToken> {
        self.conversations
            .values()
            .rev()
            .filter(|c| &c.peer_address == to)
            .find_map(|c| c.peer_token.as_ref())
            .map(|t| RelayToken::new(*t.expose()))
    }

    /// Records a refusal: its counter always, an event when it concerns a conversation.
    pub(crate) fn drop_frame(&mut self, conversation: Option<ConversationId>, reason: DropReason) {
        self.stats.record(reason);
        #[cfg(feature = "tracing")]
        tracing::debug!(reason = reason.as_str(), "confide: frame dropped");
        if let Some(conversation) = conversation {
            self.events.push_back(Event::FrameDropped {
                conversation,
                reason,
            });
        }
        self.mark_changed();
    }

    /// Stops retransmitting every waiting frame of `conversation` for which `which` holds,
    /// erasing what we kept of it.
    fn cancel_sent(&mut self, conversation: ConversationId, which: impl Fn(&SentRecord) -> bool) {
        let waiting: Vec<FrameId> = self
            .sent
            .iter()
            .filter(|(_, s)| s.conversation == conversation && which(s))
            .map(|(f, _)| *f)
            .collect();
        for f in waiting {
            let _ = self.delivery.cancel(f);
            self.sent.remove(&f);
        }
    }

    fn drain_policy_events(&mut self, conversation: ConversationId) {
        let Some(conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        let mut expired_ours = Vec::new();
        let local = conv.policy.local_side();
        while let Some(event) = conv.policy.poll_event() {
            let event = match event {
                PolicyEvent::TimerChanged { setting, effective } => Event::TimerChanged {
                    conversation,
                    setting,
                    effective,
                },
                PolicyEvent::Expired { id } => {
                    expired_ours.push(id);
                    Event::Expired { conversation, id }
                }
                PolicyEvent::Deleted { id, author } => Event::Deleted {
                    conversation,
                    id,
                    by: Party::of(local, author),
                },
                PolicyEvent::Closed { by } => Event::ConversationClosed {
                    conversation,
                    by: Party::of(local, by),
                },
                _ => continue,
            };
            self.events.push_back(event);
        }
        // An expired text leaves the outbox too: its plaintext and ciphertext are erased and
        // it is no longer retransmitted.
        for id in expired_ours {
            self.cancel_sent(conversation, |s| s.message == id);
        }
    }

    /// Moves the delivery machine's transmits and events into the endpoint's queues.
    pub(crate) fn collect_transmits(&mut self, now: Timestamp) {
        while let Some(mut tx) = self.delivery.poll_transmit() {
            tx.token = self.relay_token_for(&tx.to);
            self.gate.hold(tx);
        }
        let mut changed = false;
        while let Some(event) = self.delivery.poll_event() {
            changed = true;
            match event {
                DeliveryEvent::Delivered(id) => {
                    if let Some(s) = self.sent.remove(&id) {
                        self.on_delivered(s.conversation, s.message, id, s.kind, now);
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
                        self.given_up.insert(
                            id,
                            GivenUp {
                                conversation: s.conversation,
                                message: s.message,
                            },
                        );
                        while self.given_up.len() > MAX_GIVEN_UP_REMEMBERED {
                            let _ = self.given_up.pop_first();
                        }
                    }
                }
                _ => {}
            }
        }
        if changed {
            self.mark_changed();
        }
    }

    fn on_delivered(
        &mut self,
        conversation: ConversationId,
        message: MessageId,
        frame: FrameId,
        kind: SentKind,
        now: Timestamp,
    ) {
        if kind == SentKind::Resume {
            // The peer has compared what we hold: nothing more to announce.
            if let Some(conv) = self.conversations.get_mut(&conversation) {
                conv.resume_unconfirmed = false;
            }
            return;
        }
        if kind != SentKind::Text {
            return;
        }
        self.events.push_back(Event::Delivered {
            conversation,
            id: message,
        });
        if let Some(conv) = self.conversations.get_mut(&conversation) {
            conv.note_delivered(message, frame, now);
        }
    }

    /// Shrinks closed conversations with nothing left to do to tombstones.
    fn shrink_closed(&mut self, now: Timestamp) {
        let drained: Vec<ConversationId> = self
            .conversations
            .iter()
            .filter(|(_, c)| c.is_drained())
            .map(|(id, _)| *id)
            .collect();
        for id in drained {
            self.make_tombstone(id, now);
        }
    }

    fn make_tombstone(&mut self, id: ConversationId, now: Timestamp) {
        let Some(mut conv) = self.conversations.remove(&id) else {
            return;
        };
        // Its policy's entries and tombstone chunks and its delivered texts are records of
        // their own: delete them with it (its windows go with `forget_epochs`).
        let mut entries = conv.policy.take_changed_entries();
        entries.extend(conv.policy.entry_ids());
        for message in entries {
            self.journal
                .mark(crate::state::RecordKey::PolicyEntry(id, message));
        }
        let mut chunks = conv.policy.take_changed_tombstone_chunks();
        chunks.extend(conv.policy.tombstone_chunks());
        for chunk in chunks {
            self.journal
                .mark(crate::state::RecordKey::TombstoneChunk(id, chunk));
        }
        let mut delivered = conv.recently_delivered.take_changed();
        delivered.extend(conv.recently_delivered.entries.iter().map(|d| d.order));
        for order in delivered {
            self.journal.mark(crate::state::RecordKey::DeliveredChunk(
                id,
                order / crate::consts::LOG_ENTRIES_PER_CHUNK,
            ));
        }
        self.forget_epochs(id);
        let closed_by = conv
            .policy
            .closed_by()
            .map_or(Party::Us, |by| Party::of(conv.policy.local_side(), by));
        self.cancel_sent(id, |_| true);
        self.tombstones.insert(
            id,
            Tombstone {
                closed_by,
                shrunk_at: now,
            },
        );
        while self.tombstones.len() > MAX_TOMBSTONES {
            let _ = self.tombstones.pop_first();
        }
        self.mark_changed();
    }

    /// Whether a reset request to this conversation's peer may be sent at `now`.
    fn may_request_reset(conv: &Conversation, now: Timestamp) -> bool {
        conv.reset_requested_at
            .is_none_or(|at| now >= at.saturating_add(RESET_REQUEST_MIN_INTERVAL))
    }
}

impl confide_transport::driver::SansIoEndpoint for Endpoint {
    type Event = Event;

    fn handle_input<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, input: Input<'_>) {
        Endpoint::handle_input(self, rng, input);
    }

    fn poll_output(&mut self) -> Output {
        Endpoint::poll_output(self)
    }
}

/// What [`Endpoint::encrypt_and_seal`] produced.
pub(crate) struct Sealed {
    /// The envelope's session message carries our delivery token in front (the peer has not
    /// confirmed it yet).
    pub(crate) carries_token: bool,
    /// The envelope (public-key or symmetric).
    pub(crate) envelope: Vec<u8>,
    /// The peer's mailbox.
    pub(crate) to: Address,
    /// The epoch a public-key envelope started (`None` for a symmetric one, or a session
    /// without an envelope secret).
    pub(crate) started: Option<OutgoingEpoch>,
    /// For a symmetric envelope, the serial of the epoch that sealed it.
    pub(crate) symmetric_epoch: Option<u64>,
}

/// The envelope payload for `session_message` in `conv`: with our delivery token in front
/// until the peer acknowledged a frame that carried it.
pub(crate) fn with_token(
    conv: &Conversation,
    own_token: &DeliveryToken,
    session_message: Vec<u8>,
) -> Vec<u8> {
    if conv.token_confirmed {
        session_message
    } else {
        reset::wrap_with_token(own_token, &session_message)
    }
}

/// `DeliveryToken::derive`; HKDF cannot fail for a 16-byte output, and an all-zero token (never
/// reached) would only make the relay refuse our mail, never leak anything.
pub(crate) fn derive_token(profile_key: &ProfileKey) -> DeliveryToken {
    DeliveryToken::derive(profile_key)
        .unwrap_or_else(|_| DeliveryToken::new([0; DeliveryToken::LEN]))
}
