//! Small helpers shared by the example programs in `src/bin`: a certificate issuer, a relay
//! (by default in-process: mailboxes over the simulated network plus a prekey directory and a
//! blob store; or a connection to the reference relay, `confide-relay`) that records what it
//! could see, and a participant that runs the endpoint's loop (for the single-process
//! `counseling_session` and `intake_bot`); and the demo service keys that the
//! `relay` and `chat` programs share ([`demo_service`]), which run over the reference relay
//! (`confide-relay`) in separate processes.
#![forbid(unsafe_code)]

mod real_relay;

use std::collections::{BTreeMap, VecDeque};

use chacha20::ChaCha20Rng;
use confide::{
    Address, ConversationId, Endpoint, EndpointConfig, Event, ExpectedIdentity, Input, Output,
    PublishedBundles, Role, StorageKey,
};
use confide_attachment::{AttachmentDecryptor, AttachmentPointer, BlobDeleteToken, BlobId};
use confide_crypto::{Duration, Timestamp, identity::IdentityKeyPair, signing::SigningKey};
use confide_relay::client::RelayAddress;
use confide_sealed::{
    SenderCertificate, SenderClaims, ServerCertificate, ServerKey, TokenVerifier, TrustRoots,
    relay_check,
};
use confide_sim::{LinkConfig, SimNetwork};
use confide_store::{NewMessage, SqliteStore, Transcript};
use confide_transport::{FrameId, RelayToken};
use subtle::ConstantTimeEq;

/// Why an example helper failed (setup errors; the examples print them and exit).
pub type ExampleError = Box<dyn std::error::Error>;

/// The seed of the demo service's keys, which the `relay` and `chat` programs derive alike.
///
/// Demo only: a real service keeps its root key offline (`confide-relay init-root`), its
/// server key on the relay host (`confide-relay init`), and apps pin the root's public key.
/// Anyone with this seed can issue certificates the demo accepts.
pub const DEMO_SERVICE_SEED: [u8; 32] = *b"confide demo service, not secret";

/// The demo service: its trust roots (what `chat` pins) and the server key that certifies
/// client certificates (what the `relay` program's issuer signs with), both from
/// [`DEMO_SERVICE_SEED`]. The server certificate is valid from the epoch for a very long time,
/// since the demo has no key rotation.
pub fn demo_service() -> Result<(TrustRoots, ServerKey), ExampleError> {
    let mut rng = <ChaCha20Rng as rand_core::SeedableRng>::from_seed(DEMO_SERVICE_SEED);
    let root = SigningKey::generate(&mut rng);
    let mut roots = TrustRoots::new();
    roots.add_root(1, root.verifying_key())?;
    let signing = SigningKey::generate(&mut rng);
    let cert = ServerCertificate::issue(
        1,
        &root,
        1,
        &signing.verifying_key(),
        Timestamp::from_millis(u64::MAX / 2),
    );
    Ok((roots, ServerKey::new(signing, cert)?))
}

/// The service's certificate issuer: a pinned root key certifies a server key, which
/// certifies each account's address, identity key and role.
pub struct CertificateIssuer {
    roots: TrustRoots,
    server: ServerKey,
}

impl CertificateIssuer {
    /// A fresh service whose certificates are valid for a year from `now`.
    pub fn new(rng: &mut ChaCha20Rng, now: Timestamp) -> Result<Self, ExampleError> {
        let root = SigningKey::generate(rng);
        let mut roots = TrustRoots::new();
        roots.add_root(1, root.verifying_key())?;
        let signing = SigningKey::generate(rng);
        let cert = ServerCertificate::issue(
            1,
            &root,
            1,
            &signing.verifying_key(),
            now.saturating_add(Duration::from_days(365)),
        );
        Ok(Self {
            roots,
            server: ServerKey::new(signing, cert)?,
        })
    }

    /// The trust roots every app pins.
    pub fn roots(&self) -> &TrustRoots {
        &self.roots
    }

    /// Registers an account: a new identity, certified for `address` in `role`.
    pub fn register(
        &self,
        rng: &mut ChaCha20Rng,
        now: Timestamp,
        address: &str,
        role: Role,
        display_name: Option<&str>,
        config: EndpointConfig,
    ) -> Result<Endpoint, ExampleError> {
        let identity = IdentityKeyPair::generate(rng);
        let cert = SenderCertificate::issue(
            &self.server,
            &SenderClaims {
                address: address.as_bytes(),
                device_id: 1,
                identity: identity.public(),
                role,
                display_name,
            },
            now.saturating_add(Duration::from_days(30)),
        )?;
        Ok(Endpoint::new(
            rng,
            now,
            identity,
            Address::new(address.as_bytes())?,
            cert,
            self.roots.clone(),
            config,
        )?)
    }
}

/// One frame as the relay saw it.
#[derive(Debug, Clone)]
pub struct Observed {
    /// When it was submitted.
    pub at: Timestamp,
    /// The destination mailbox (the relay must know it to deliver).
    pub mailbox: String,
    /// The frame's size in bytes.
    pub size: usize,
    /// Its first bytes (a random-looking frame id, then the sealed envelope).
    pub head: Vec<u8>,
}

/// The relay the apps talk to: by default a small in-process relay (store-and-forward
/// mailboxes over a lossy simulated network, a directory of prekey bundles, a blob store),
/// or a connection to a real `confide-relay` ([`Relay::connect`], [`Relay::start_local`]).
/// Either way it keeps a log of everything the relay could observe (in the second case as
/// the apps observed it: the frames the relay receipted).
pub struct Relay {
    transport: Transport,
    observed: Vec<Observed>,
    refused: usize,
}

/// Where frames, bundles and blobs go.
enum Transport {
    /// The in-process relay over the simulated network.
    Simulated(Box<Simulated>),
    /// A real relay, reached over TCP.
    Real(Box<real_relay::RealRelay>),
}

/// The in-process relay's state.
struct Simulated {
    network: SimNetwork,
    directory: BTreeMap<Vec<u8>, Published>,
    /// Token verifiers registered by mailbox owners.
    verifiers: BTreeMap<Vec<u8>, TokenVerifier>,
    /// The blob store: each encrypted attachment with the hash of its delete token.
    blobs: BTreeMap<[u8; 16], (Vec<u8>, [u8; 32])>,
}

impl Relay {
    /// A relay whose links lose, duplicate and reorder as `link` says (deterministic per seed).
    pub fn new(seed: u64, link: LinkConfig) -> Self {
        let mut network = SimNetwork::new(seed);
        network.set_default_link(link);
        Self {
            transport: Transport::Simulated(Box::new(Simulated {
                network,
                directory: BTreeMap::new(),
                verifiers: BTreeMap::new(),
                blobs: BTreeMap::new(),
            })),
            observed: Vec::new(),
            refused: 0,
        }
    }

    /// A connection to the real relay (`confide-relay`) at `address`: each app gets a
    /// mailbox under its own owner key, an owner connection receiving its frames and an
    /// anonymous sending connection; bundles and blobs go to the relay's directory and blob
    /// store. The owner keys are drawn from the operating system's random source.
    pub fn connect(address: RelayAddress) -> Result<Self, ExampleError> {
        Ok(Self::real(real_relay::RealRelay::connect(address)?))
    }

    /// Starts the reference relay in this process on 127.0.0.1 (a free port), keeping its
    /// SQLite database in `dir`, and connects to it as [`Relay::connect`] does.
    pub fn start_local(dir: &std::path::Path) -> Result<Self, ExampleError> {
        Ok(Self::real(real_relay::RealRelay::start(dir)?))
    }

    fn real(relay: real_relay::RealRelay) -> Self {
        Self {
            transport: Transport::Real(Box::new(relay)),
            observed: Vec::new(),
            refused: 0,
        }
    }

    /// The real relay's address; `None` for the in-process simulation.
    pub fn real_address(&self) -> Option<RelayAddress> {
        match &self.transport {
            Transport::Simulated(_) => None,
            Transport::Real(r) => Some(r.address()),
        }
    }

    /// Stores an encrypted attachment under `id` with the hash of its delete token. `from`
    /// is the uploading app (the real relay takes blobs only from a mailbox owner; the
    /// in-process relay, a stand-in for the reference relay's blob store, `docs/relay.md`
    /// §6.6, ignores it). The relay sees ciphertext padded to a size bucket.
    pub fn put_blob(
        &mut self,
        from: &Address,
        id: &BlobId,
        delete_token_hash: [u8; 32],
        blob: Vec<u8>,
    ) -> Result<(), ExampleError> {
        match &mut self.transport {
            Transport::Simulated(s) => {
                s.blobs.insert(*id.as_bytes(), (blob, delete_token_hash));
                Ok(())
            }
            Transport::Real(r) => r.put_blob(from, id, delete_token_hash, blob),
        }
    }

    /// The blob stored under `id`, if it is still there.
    pub fn get_blob(&self, id: &BlobId) -> Result<Option<Vec<u8>>, ExampleError> {
        match &self.transport {
            Transport::Simulated(s) => Ok(s.blobs.get(id.as_bytes()).map(|(blob, _)| blob.clone())),
            Transport::Real(r) => r.get_blob(id),
        }
    }

    /// Deletes the blob under `id` for a token whose hash it stored (anyone holding the
    /// pointer holds the token). Returns whether a blob was deleted.
    pub fn delete_blob(
        &mut self,
        id: &BlobId,
        token: &BlobDeleteToken,
    ) -> Result<bool, ExampleError> {
        match &mut self.transport {
            Transport::Simulated(s) => {
                let matches = s
                    .blobs
                    .get(id.as_bytes())
                    .is_some_and(|(_, hash)| bool::from(hash.ct_eq(&token.hash())));
                Ok(matches && s.blobs.remove(id.as_bytes()).is_some())
            }
            Transport::Real(r) => r.delete_blob(id, token),
        }
    }

    /// Blobs stored, if this relay can count them (the in-process one; a real relay tells
    /// a client only about a blob whose id it names: [`Relay::has_blob`]).
    pub fn blob_count(&self) -> Option<usize> {
        match &self.transport {
            Transport::Simulated(s) => Some(s.blobs.len()),
            Transport::Real(_) => None,
        }
    }

    /// Whether the relay holds a blob under `id`.
    pub fn has_blob(&self, id: &BlobId) -> Result<bool, ExampleError> {
        match &self.transport {
            Transport::Simulated(s) => Ok(s.blobs.contains_key(id.as_bytes())),
            Transport::Real(r) => r.has_blob(id),
        }
    }

    /// A typical mobile link: 10% loss, 5% duplication, 10% reordering, 30-300 ms.
    pub fn lossy_link() -> LinkConfig {
        LinkConfig::perfect(Duration::from_millis(30))
            .with_delay(Duration::from_millis(30), Duration::from_millis(300))
            .with_loss(100_000)
            .with_duplication(50_000)
            .with_reordering(100_000)
    }

    /// Replaces the bundles published for `address`, and registers the verifier of its
    /// delivery token: from then on the relay takes frames for `address` only with the token.
    /// (A real relay: the first call creates the mailbox; each one-time bundle is uploaded
    /// once, since its directory appends them, and the last-resort bundle is replaced.)
    pub fn publish(
        &mut self,
        address: &Address,
        bundles: PublishedBundles,
        verifier: TokenVerifier,
    ) -> Result<(), ExampleError> {
        match &mut self.transport {
            Transport::Simulated(s) => {
                s.verifiers.insert(address.as_bytes().to_vec(), verifier);
                s.directory.insert(
                    address.as_bytes().to_vec(),
                    (bundles.one_time.into_iter().collect(), bundles.last_resort),
                );
                Ok(())
            }
            Transport::Real(r) => r.publish(address, bundles, verifier),
        }
    }

    /// Hands out one bundle for `address`: each one-time bundle to one requester only (then
    /// it is gone), the last-resort bundle to everyone after that.
    pub fn fetch_bundle(&mut self, address: &Address) -> Result<Option<Vec<u8>>, ExampleError> {
        match &mut self.transport {
            Transport::Simulated(s) => {
                let Some((one_time, last_resort)) = s.directory.get_mut(address.as_bytes()) else {
                    return Ok(None);
                };
                Ok(one_time.pop_front().or_else(|| Some(last_resort.clone())))
            }
            Transport::Real(r) => r.fetch_bundle(address),
        }
    }

    /// Accepts a frame for `to`'s mailbox if it comes with `to`'s delivery token (the relay
    /// learns that the sender holds the token, not who the sender is). In the in-process
    /// relay `from` only says which simulated link the frame takes; with a real relay, it
    /// says which app's anonymous connection sends it, and the call waits for the relay
    /// receipt, whose frame id it returns (`None`: no receipt, the frame was refused or is
    /// in flight on the simulated network).
    pub fn submit(
        &mut self,
        from: &Address,
        to: &Address,
        token: Option<&RelayToken>,
        frame: &[u8],
        now: Timestamp,
    ) -> Result<Option<FrameId>, ExampleError> {
        let receipt = match &mut self.transport {
            Transport::Simulated(s) => {
                if let Some(verifier) = s.verifiers.get(to.as_bytes())
                    && !token.is_some_and(|t| relay_check(verifier, t.expose()))
                {
                    self.refused += 1;
                    return Ok(None);
                }
                s.network.send(from, to, frame, now);
                None
            }
            Transport::Real(r) => match r.send(from, to, token, frame)? {
                Ok(id) => Some(id),
                Err(_code) => {
                    self.refused += 1;
                    return Ok(None);
                }
            },
        };
        self.observed.push(Observed {
            at: now,
            mailbox: String::from_utf8_lossy(to.as_bytes()).into_owned(),
            size: frame.len(),
            head: frame.iter().take(24).copied().collect(),
        });
        Ok(receipt)
    }

    /// Moves frames that arrived by `now` into their mailboxes (the simulated network).
    pub fn deliver_due(&mut self, now: Timestamp) {
        if let Transport::Simulated(s) = &mut self.transport {
            s.network.deliver_due(now);
        }
    }

    /// When the next frame arrives, if one is in flight on the simulated network.
    pub fn next_arrival(&self) -> Option<Timestamp> {
        match &self.transport {
            Transport::Simulated(s) => s.network.next_event_time(),
            Transport::Real(_) => None,
        }
    }

    /// Whether `address` has mail waiting: in its simulated mailbox, or frames the real
    /// relay receipted for it that its app has not taken yet.
    pub fn has_mail(&self, address: &Address) -> bool {
        match &self.transport {
            Transport::Simulated(s) => s.network.mailbox_len(address) > 0,
            Transport::Real(r) => r.has_mail(address),
        }
    }

    /// Takes one frame from `address`'s mailbox. With a real relay it waits (bounded) only
    /// while the relay receipted frames for the mailbox that have not been taken; otherwise
    /// it takes only a frame already pushed to the owner connection.
    pub fn take_mail(&mut self, address: &Address) -> Result<Option<Vec<u8>>, ExampleError> {
        match &mut self.transport {
            Transport::Simulated(s) => Ok(s.network.take_mail(address)),
            Transport::Real(r) => r.take_mail(address),
        }
    }

    /// Tells the relay that `address`'s app persisted the state that holds `frame` (a real
    /// relay then deletes it; nothing to do in the simulation).
    pub fn confirm(&mut self, address: &Address, frame: &[u8]) -> Result<(), ExampleError> {
        match &mut self.transport {
            Transport::Simulated(_) => Ok(()),
            Transport::Real(r) => r.confirm(address, frame),
        }
    }

    /// `address`'s app restarted: a real relay gets a new owner connection from it (and
    /// pushes again what was not confirmed). Nothing to do in the simulation.
    pub fn reconnect(&mut self, address: &Address) -> Result<(), ExampleError> {
        match &mut self.transport {
            Transport::Simulated(_) => Ok(()),
            Transport::Real(r) => r.reconnect(address),
        }
    }

    /// Everything the relay saw (with a real relay: the frames it receipted).
    pub fn observed(&self) -> &[Observed] {
        &self.observed
    }

    /// Frames refused (the in-process relay: for a missing or wrong delivery token; a real
    /// relay: for any reason it gave).
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// Frames lost by the simulated network (`None` with a real relay: nothing simulated).
    pub fn lost(&self) -> Option<u64> {
        match &self.transport {
            Transport::Simulated(s) => Some(s.network.stats().lost),
            Transport::Real(_) => None,
        }
    }
}

/// What the directory keeps for one address: one-time bundles (each handed out once) and the
/// last-resort bundle (handed to everyone after them).
type Published = (VecDeque<Vec<u8>>, Vec<u8>);

/// One app: an endpoint, its storage key and its store (the embedded SQLite database an app
/// gets by default: each state change commits only the records it touched).
pub struct Participant {
    /// A name for the transcript.
    pub name: &'static str,
    /// The endpoint.
    pub endpoint: Endpoint,
    storage_key: StorageKey,
    /// Where the endpoint persists (what a restart loads).
    pub store: SqliteStore,
    /// Whether the app is running (an offline app leaves its mail at the relay).
    pub online: bool,
    /// The transcript the app shows, if it keeps one: the encrypted message store in the same
    /// database file. Received texts are stored as they arrive, sent ones by
    /// [`Participant::record_sent`]; an expired or deleted message is erased from it when the
    /// endpoint says so.
    pub transcript: Option<Transcript>,
    /// The attachments of live messages (sent or received), by message id: what the app
    /// needs to delete each blob from the relay when its message expires or is deleted.
    pub attachments: BTreeMap<confide::MessageId, AttachmentPointer>,
    next_timeout: Option<Timestamp>,
}

impl Participant {
    /// Wraps an endpoint persisting into `store`.
    pub fn new(
        name: &'static str,
        endpoint: Endpoint,
        storage_key: StorageKey,
        store: SqliteStore,
    ) -> Self {
        Self {
            name,
            endpoint,
            storage_key,
            store,
            online: true,
            transcript: None,
            attachments: BTreeMap::new(),
            next_timeout: None,
        }
    }

    /// Keeps the app's transcript in `transcript` (the message store of its database).
    #[must_use]
    pub fn with_transcript(mut self, transcript: Transcript) -> Self {
        self.transcript = Some(transcript);
        self
    }

    /// Adds a text of ours to the transcript (after [`Endpoint::send`] returned its id).
    pub fn record_sent(
        &mut self,
        rng: &mut ChaCha20Rng,
        now: Timestamp,
        conversation: ConversationId,
        id: confide::MessageId,
        text: &[u8],
    ) -> Result<(), ExampleError> {
        if let Some(transcript) = &mut self.transcript {
            transcript.put(
                rng,
                now,
                &NewMessage {
                    conversation: conversation.as_u64(),
                    id,
                    from: confide::Party::Us,
                    sent_at: now,
                    expires_at: None,
                    body: text,
                },
            )?;
        }
        Ok(())
    }

    /// Keeps the transcript in step with an event: stores a received text, erases an expired
    /// or deleted message (its key row, its body row, and every old copy in the log).
    fn update_transcript(
        &mut self,
        rng: &mut ChaCha20Rng,
        now: Timestamp,
        event: &Event,
    ) -> Result<(), ExampleError> {
        let Some(transcript) = &mut self.transcript else {
            return Ok(());
        };
        match event {
            // An attachment's row holds its pointer (with the key), so erasing the row
            // erases the only stored copy of the key.
            Event::Attachment {
                conversation,
                id,
                pointer,
                expires_at,
                sent_at,
                ..
            } => {
                transcript.put(
                    rng,
                    now,
                    &NewMessage {
                        conversation: conversation.as_u64(),
                        id: *id,
                        from: confide::Party::Peer,
                        sent_at: *sent_at,
                        expires_at: *expires_at,
                        body: &pointer.to_bytes(),
                    },
                )?;
            }
            Event::Message {
                conversation,
                id,
                text,
                expires_at,
                sent_at,
                ..
            } => {
                transcript.put(
                    rng,
                    now,
                    &NewMessage {
                        conversation: conversation.as_u64(),
                        id: *id,
                        from: confide::Party::Peer,
                        sent_at: *sent_at,
                        expires_at: *expires_at,
                        body: text.as_bytes(),
                    },
                )?;
            }
            Event::Expired { conversation, id }
            | Event::Deleted {
                conversation, id, ..
            } => {
                let erasure = transcript.erase(conversation.as_u64(), id)?;
                if !erasure.wal_cleared {
                    return Err("the transcript's write-ahead log could not be cleared".into());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Remembers a received attachment; when a message with an attachment expires or is
    /// deleted, asks the relay to delete its blob (with the token only pointer holders can
    /// derive) and forgets the pointer, its key with it.
    fn update_attachments(&mut self, relay: &mut Relay, event: &Event) -> Result<(), ExampleError> {
        match event {
            Event::Attachment { id, pointer, .. } => {
                self.attachments.insert(*id, pointer.clone());
            }
            Event::Expired { id, .. } | Event::Deleted { id, .. } => {
                if let Some(pointer) = self.attachments.remove(id) {
                    relay.delete_blob(pointer.blob_id(), &pointer.delete_token())?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Kills the app and starts it again from its database alone (what a phone does after the
    /// system stopped the app): the endpoint is loaded from the stored records.
    pub fn restart(&mut self) -> Result<(), ExampleError> {
        self.endpoint = confide_store::load(&self.store, &self.storage_key)?
            .ok_or("the database holds no endpoint")?;
        self.next_timeout = None;
        Ok(())
    }

    /// Step 2 of the run loop: polls until the deadline, persisting when asked, handing
    /// frames to the relay, publishing bundles. Returns the other events.
    pub fn drain(
        &mut self,
        relay: &mut Relay,
        rng: &mut ChaCha20Rng,
        now: Timestamp,
    ) -> Result<Vec<Event>, ExampleError> {
        let mut events = Vec::new();
        let mut receipts = Vec::new();
        loop {
            match self.endpoint.poll_output() {
                Output::Transmit(tx) => receipts.extend(relay.submit(
                    self.endpoint.address(),
                    &tx.to,
                    tx.token.as_ref(),
                    &tx.frame,
                    now,
                )?),
                Output::Event(Event::PersistRequired) => {
                    confide_store::persist(
                        &mut self.endpoint,
                        &mut self.store,
                        rng,
                        &self.storage_key,
                    )?;
                }
                Output::Event(Event::BundlesChanged) => {
                    let address = self.endpoint.address().clone();
                    relay.publish(
                        &address,
                        self.endpoint.published_bundles(),
                        self.endpoint.delivery_token_verifier(),
                    )?;
                }
                Output::Event(e) => {
                    self.update_transcript(rng, now, &e)?;
                    self.update_attachments(relay, &e)?;
                    events.push(e);
                }
                Output::Timeout(t) if receipts.is_empty() => {
                    self.next_timeout = t;
                    return Ok(events);
                }
                // A real relay receipted frames: their retransmissions can wait.
                Output::Timeout(_) => {
                    for id in std::mem::take(&mut receipts) {
                        self.endpoint
                            .handle_input(rng, Input::RelayReceipt { id, now });
                    }
                }
                _ => {}
            }
        }
    }

    /// Step 1 for incoming mail and due timers at `now`. Returns the events.
    pub fn poll(
        &mut self,
        relay: &mut Relay,
        rng: &mut ChaCha20Rng,
        now: Timestamp,
    ) -> Result<Vec<Event>, ExampleError> {
        let mut events = Vec::new();
        if !self.online {
            return Ok(events);
        }
        let address = self.endpoint.address().clone();
        while let Some(frame) = relay.take_mail(&address)? {
            self.endpoint
                .handle_input(rng, Input::Receive { bytes: &frame, now });
            events.extend(self.drain(relay, rng, now)?);
            // `drain` committed every change the frame made: the relay may delete it.
            relay.confirm(&address, &frame)?;
        }
        if self.next_timeout.is_some_and(|t| t <= now) {
            self.endpoint.handle_input(rng, Input::Timeout { now });
            events.extend(self.drain(relay, rng, now)?);
        }
        Ok(events)
    }

    /// When this app next needs to run (its timer), if online.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        if self.online { self.next_timeout } else { None }
    }
}

/// A virtual clock that runs participants over a relay, jumping to the next deadline.
pub struct Stage {
    /// The relay.
    pub relay: Relay,
    /// The apps.
    pub participants: Vec<Participant>,
    /// The deterministic random source.
    pub rng: ChaCha20Rng,
    /// The virtual time.
    pub now: Timestamp,
    /// When the story started (for printing offsets).
    pub start: Timestamp,
}

impl Stage {
    /// Runs until nothing is due before `until`, then sets the clock to `until`. Calls
    /// `on_event(time, participant_index, event)` for each event.
    pub fn run_until(
        &mut self,
        until: Timestamp,
        on_event: &mut dyn FnMut(Timestamp, usize, &Event),
    ) -> Result<(), ExampleError> {
        loop {
            let next = self
                .participants
                .iter()
                .filter_map(Participant::next_deadline)
                .chain(self.relay.next_arrival())
                .min();
            let online_mail = self
                .participants
                .iter()
                .any(|p| p.online && self.relay.has_mail(p.endpoint.address()));
            let at = if online_mail { Some(self.now) } else { next };
            match at {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.relay.deliver_due(self.now);
                    for i in 0..self.participants.len() {
                        let Some(p) = self.participants.get_mut(i) else {
                            continue;
                        };
                        let events = p.poll(&mut self.relay, &mut self.rng, self.now)?;
                        for e in &events {
                            on_event(self.now, i, e);
                        }
                    }
                }
                _ => {
                    self.now = self.now.max(until);
                    return Ok(());
                }
            }
        }
    }

    /// Runs a command on participant `i` at the current time and drains its outputs.
    pub fn command<T>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Endpoint, &mut ChaCha20Rng, Timestamp) -> T,
    ) -> Result<(T, Vec<Event>), ExampleError> {
        let p = self.participants.get_mut(i).ok_or("no such participant")?;
        let out = f(&mut p.endpoint, &mut self.rng, self.now);
        let events = p.drain(&mut self.relay, &mut self.rng, self.now)?;
        Ok((out, events))
    }

    /// Participant `i` fetches `address`'s bundle from the relay's directory and starts a
    /// conversation with it (trust on first use: the example compares safety numbers after).
    pub fn start_conversation_with(
        &mut self,
        i: usize,
        address: &Address,
    ) -> Result<(ConversationId, Vec<Event>), ExampleError> {
        let bundle = self
            .relay
            .fetch_bundle(address)?
            .ok_or("no bundle published for that address")?;
        let (conversation, events) = self.command(i, |e, rng, now| {
            e.start_conversation(
                rng,
                now,
                address.clone(),
                &bundle,
                ExpectedIdentity::TrustOnFirstUse,
            )
        })?;
        Ok((conversation?.conversation, events))
    }

    /// Restarts participant `i` from its database ([`Participant::restart`]); its app
    /// connects to the relay again.
    pub fn restart(&mut self, i: usize) -> Result<(), ExampleError> {
        let p = self.participants.get_mut(i).ok_or("no such participant")?;
        p.restart()?;
        let address = p.endpoint.address().clone();
        self.relay.reconnect(&address)
    }

    /// Participant `i`.
    pub fn get(&self, i: usize) -> Result<&Participant, ExampleError> {
        Ok(self.participants.get(i).ok_or("no such participant")?)
    }

    /// Participant `i`, mutably.
    pub fn get_mut(&mut self, i: usize) -> Result<&mut Participant, ExampleError> {
        Ok(self.participants.get_mut(i).ok_or("no such participant")?)
    }

    /// `now` as an offset from the start, `h:mm:ss`.
    pub fn clock(&self, at: Timestamp) -> String {
        let s = at.saturating_duration_since(self.start).as_millis() / 1000;
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    }
}

/// Downloads the blob an attachment pointer names from the relay and decrypts it (checking
/// every chunk, the end and the digest). `None` if the relay no longer has it.
pub fn fetch_attachment(
    relay: &Relay,
    pointer: &AttachmentPointer,
) -> Result<Option<Vec<u8>>, ExampleError> {
    let Some(blob) = relay.get_blob(pointer.blob_id())? else {
        return Ok(None);
    };
    let mut decryptor = AttachmentDecryptor::for_pointer(pointer)?;
    let mut plaintext = Vec::new();
    let mut input = blob.as_slice();
    while let Some(out) = decryptor.push(&mut input)? {
        plaintext.extend_from_slice(out);
    }
    decryptor.finish()?;
    Ok(Some(plaintext))
}

/// The first referral participant `i` received among `events`: its message id and the
/// referral (what the app keeps to accept or decline it).
#[must_use]
pub fn referral_received(
    events: &[(usize, Event)],
    i: usize,
) -> Option<(confide::MessageId, confide::ReceivedReferral)> {
    events.iter().find_map(|(j, e)| match e {
        Event::Referral { id, referral, .. } if *j == i => Some((*id, referral.clone())),
        _ => None,
    })
}
