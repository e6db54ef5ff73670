//! Confide: the facade apps link. One account and its conversations behind one sans-IO
//! [`Endpoint`].
//!
//! An [`Endpoint`] holds an identity with its prekeys (generated, replenished and rotated on
//! a schedule, see [`consts`]), its mailbox [`Address`], its
//! [`SenderCertificate`](confide_sealed::SenderCertificate), the service's
//! [`TrustRoots`](confide_sealed::TrustRoots), one conversation per peer (a session record
//! and a retention policy) and the transport's reliable-delivery machine.
//!
//! # The run loop (after str0m)
//!
//! The endpoint never reads a clock, a random source, a socket or a file.
//!
//! 1. Feed an input: [`Endpoint::handle_input`] with [`Input::Receive`] (frame bytes from
//!    the transport and the time they arrived) or [`Input::Timeout`] (the current time), or
//!    call a command ([`Endpoint::start_conversation`], [`Endpoint::send`],
//!    [`Endpoint::set_timer`], [`Endpoint::unsend`], [`Endpoint::mark_read`],
//!    [`Endpoint::close`], [`Endpoint::accept_identity_change`]).
//! 2. Call [`Endpoint::poll_output`] until it returns [`Output::Timeout`]:
//!    * [`Output::Transmit`]: hand the frame to the transport;
//!    * [`Output::Event`]: act on it; on [`Event::PersistRequired`], export the state
//!      ([`Endpoint::export_state`]), store it durably together with what the app keeps of
//!      the events it handled, then call [`Endpoint::confirm_persisted`] and go back to 2;
//!    * [`Output::Timeout`]: the next deadline (or none).
//! 3. Wait until a frame arrives or the deadline passes, then go to 1. A timeout that comes
//!    early (spurious) changes nothing.
//!
//! # Nothing lost, no key used twice
//!
//! Every frame the endpoint produces (a new message, a retransmission, an end-to-end
//! acknowledgement) is held until a state at least as new as the one that produced it was
//! confirmed persisted. Hence an incoming message is acknowledged only after the state that
//! holds it is stored, and a ciphertext never leaves before the ratchet state that moved past
//! its message key is stored: after a crash the endpoint restarts from its last stored state
//! ([`Endpoint::import_state`]) and loses no message.
//!
//! An app may also import an *older* state (a phone restored from its backup). Every session
//! read from storage moves to a fresh sending chain before it encrypts again, so no message
//! key is ever used twice, whatever state comes back. If the peer can no longer follow, the
//! two endpoints start a new session within one round trip and both report
//! [`Event::SessionReset`] (see `docs/endpoint.md`, "Backups and restores").
//!
//! # One message's path
//!
//! Send: policy stamps the frame with the conversation timer, the session encrypts it, the
//! sealed-sender layer wraps it with our certificate for the peer's identity, the delivery
//! machine gives it an id and keeps it until an acknowledgement, and it leaves as a
//! transmit. Receive: transport frame, dedup, sealed open (certificate chain checked against
//! the trust roots at `now`), conversation lookup by the certified sender (a prekey message
//! from a new peer starts a conversation), transactional session decrypt, policy, events.
//! Acknowledgements are encrypted content frames, so a relay cannot forge delivery.
//!
//! The full design and the state encoding are in `docs/endpoint.md`.
//!
//! ```
//! use chacha20::ChaCha20Rng;
//! use confide::{Endpoint, EndpointConfig, Event, Input, Output};
//! use confide_crypto::{Duration, Timestamp, identity::IdentityKeyPair, signing::SigningKey};
//! use confide_sealed::{Role, SenderCertificate, SenderClaims, ServerCertificate, ServerKey, TrustRoots};
//! use confide_session::{ExpectedIdentity, storage::StorageKey};
//! use confide_transport::{Address, Transmit};
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha20Rng::from_seed([7; 32]);
//! let now = Timestamp::from_millis(1_750_000_000_000);
//!
//! // The service: a pinned root certifies a server key, which certifies each account.
//! let root = SigningKey::generate(&mut rng);
//! let mut roots = TrustRoots::new();
//! roots.add_root(1, root.verifying_key())?;
//! let server_signing = SigningKey::generate(&mut rng);
//! let server_cert = ServerCertificate::issue(
//!     1, &root, 1, &server_signing.verifying_key(), now.saturating_add(Duration::from_days(90)),
//! );
//! let server = ServerKey::new(server_signing, server_cert)?;
//! let mut account = |name: &[u8], role: Role, rng: &mut ChaCha20Rng| {
//!     let identity = IdentityKeyPair::generate(rng);
//!     let claims = SenderClaims {
//!         address: name, device_id: 1, identity: identity.public(), role, display_name: None,
//!     };
//!     let cert = SenderCertificate::issue(&server, &claims, now.saturating_add(Duration::from_days(30)))
//!         .unwrap();
//!     let address = Address::new(name).unwrap();
//!     Endpoint::new(rng, now, identity, address, cert, roots.clone(), EndpointConfig::default())
//!         .unwrap()
//! };
//! let mut client = account(b"client-4821", Role::Client, &mut rng);
//! let mut counselor = account(b"counselor-17", Role::Counselor, &mut rng);
//! let key = StorageKey::new([9; 32]);
//!
//! // The run loop's step 2, for one endpoint: persist when asked, collect frames and events.
//! fn drain(e: &mut Endpoint, key: &StorageKey, rng: &mut ChaCha20Rng) -> (Vec<Transmit>, Vec<Event>) {
//!     let (mut out, mut events) = (Vec::new(), Vec::new());
//!     loop {
//!         match e.poll_output() {
//!             Output::Transmit(tx) => out.push(tx),
//!             Output::Event(Event::PersistRequired) => {
//!                 let _blob = e.export_state(rng, key, b"account").unwrap(); // store it durably here
//!                 e.confirm_persisted();
//!             }
//!             Output::Event(ev) => events.push(ev),
//!             Output::Timeout(_) => return (out, events),
//!             _ => {}
//!         }
//!     }
//! }
//! let _ = drain(&mut counselor, &key, &mut rng);
//!
//! // The counselor publishes its bundles; the directory hands each one-time bundle to one
//! // client, then the last-resort bundle to everyone. The client fetches one and writes first.
//! let published = counselor.published_bundles();
//! let bundle = published.one_time.first().unwrap_or(&published.last_resort).clone();
//! // The bundle carries the counselor's certificate: its role is known before the client writes.
//! let started = client.start_conversation(
//!     &mut rng, now, counselor.address().clone(), &bundle, ExpectedIdentity::TrustOnFirstUse,
//! )?;
//! assert_eq!(started.peer_role, Role::Counselor);
//! let conversation = started.conversation;
//! let id = client.send(&mut rng, now, conversation, b"I need to talk to someone")?;
//! let (frames, _) = drain(&mut client, &key, &mut rng);
//!
//! // The counselor receives it (over any transport) and acknowledges end to end.
//! for tx in frames {
//!     counselor.handle_input(&mut rng, Input::Receive { bytes: &tx.frame, now });
//! }
//! let (acks, events) = drain(&mut counselor, &key, &mut rng);
//! assert!(events.iter().any(|e| matches!(e,
//!     Event::Message { text, sender_role: Role::Client, .. } if text.as_bytes() == b"I need to talk to someone")));
//! for tx in acks {
//!     client.handle_input(&mut rng, Input::Receive { bytes: &tx.frame, now });
//! }
//! let (_, events) = drain(&mut client, &key, &mut rng);
//! assert!(events.contains(&Event::Delivered { conversation, id }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod consts;
mod endpoint;
mod error;
mod event;
mod state;

pub use endpoint::{
    AckPolicy, AcknowledgementPayload, CertifiedBundle, CertifiedBundleError, CertifiedPeer,
    DropReason, Endpoint, EndpointConfig, EndpointStats, Persistence, PublishedBundles,
    ReceivedReferral, ReferralError, ShortCode, ShortCodeError, StartedConversation, Verification,
};
pub use error::{
    CommandError, ExportError, IdentityChangeError, ImportError, NewEndpointError, RenewError,
    StartError,
};
pub use event::{ConversationId, Event, Input, Output, Party};
pub use state::ChangeSet;

pub use confide_attachment::AttachmentPointer;
pub use confide_policy::{MessageId, MessageText, RetentionPolicy, Side, TimerSetting, Urgency};
pub use confide_sealed::Role;
pub use confide_session::{ExpectedIdentity, SafetyNumber, storage::StorageKey};
pub use confide_transport::{Address, Transmit};
