//! Sealed sender for Confide: the relay learns who receives a message, not who sent it.
//!
//! Who writes to a counselor is itself sensitive. A sealed envelope shows the relay only a
//! version byte, a fresh ephemeral key and ciphertext; the sender's identity, address, role
//! and certificate are inside, readable only by the recipient. Inside, a
//! [`SenderCertificate`] chain (trust root -> server -> sender) tells the recipient who sent
//! it and in what [`Role`]: a client can insist the other side is a verified counselor, and
//! a counselor can tell an intake bot from a person.
//!
//! * [`TrustRoots`]: several root keys by key id (for rotation) and revoked server key ids.
//! * [`ServerCertificate`]: a root vouches for a server key until an expiry.
//! * [`SenderCertificate`]: a server vouches for an address, device, identity key, role and
//!   optional display name until an expiry; [`SenderCertificate::validate`] checks the chain.
//! * [`seal`] / [`open`]: the two-layer envelope (ephemeral layer, then a static layer that
//!   proves the sender holds the certified identity).
//! * [`seal_starting_epoch`], [`SymmetricSealer`], [`TagWindow`], [`TagDirectory`]: after a
//!   public-key envelope, small symmetric envelopes keyed by the session's
//!   [`EnvelopeSecret`](confide_crypto::secret::EnvelopeSecret), with a tag that changes per
//!   message and lets the recipient find the conversation without trial decryption.
//! * [`DeliveryToken`], [`TokenVerifier`], [`relay_check`]: abuse control without identity.
//!
//! The full wire format, key derivation and validation order are in `docs/sealed-sender.md`.
//! Nothing here reads a clock or the OS random source: `now` and `rng` are passed in.
//!
//! ```
//! use chacha20::ChaCha20Rng;
//! use confide_crypto::{Duration, Timestamp, identity::IdentityKeyPair, signing::SigningKey};
//! use confide_sealed::{
//!     DeliveryToken, ProfileKey, Role, SenderCertificate, SenderClaims, ServerCertificate,
//!     ServerKey, TrustRoots, open, relay_check, seal,
//! };
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha20Rng::from_seed([1; 32]);
//! let now = Timestamp::from_millis(1_750_000_000_000);
//!
//! // The service: a root key (pinned in every app) certifies a server key.
//! let root = SigningKey::generate(&mut rng);
//! let mut roots = TrustRoots::new();
//! roots.add_root(1, root.verifying_key())?;
//! let server_signing = SigningKey::generate(&mut rng);
//! let server_cert = ServerCertificate::issue(
//!     1, &root, 100, &server_signing.verifying_key(), now.saturating_add(Duration::from_days(90)),
//! );
//! let server = ServerKey::new(server_signing, server_cert)?;
//!
//! // A counselor gets a certificate naming its role.
//! let counselor = IdentityKeyPair::generate(&mut rng);
//! let client = IdentityKeyPair::generate(&mut rng);
//! let cert = SenderCertificate::issue(
//!     &server,
//!     &SenderClaims {
//!         address: b"counselor-17",
//!         device_id: 1,
//!         identity: counselor.public(),
//!         role: Role::Counselor,
//!         display_name: Some("Dr. Rivera"),
//!     },
//!     now.saturating_add(Duration::from_days(1)),
//! )?;
//!
//! // The client shared its delivery token with the counselor inside their session; the
//! // relay holds only the verifier for the client's mailbox.
//! let profile_key = ProfileKey::random(&mut rng);
//! let token = DeliveryToken::derive(&profile_key)?;
//! let verifier = token.verifier();
//!
//! // The counselor seals a session message to the client.
//! let envelope = seal(&mut rng, &counselor, &cert, &client.public(), b"session message")?;
//! assert!(relay_check(&verifier, token.expose())); // the relay accepts without learning who
//!
//! // The client opens it and learns (and can trust) who sent it.
//! let opened = open(&client, &roots, now, &envelope)?;
//! assert_eq!(opened.payload, b"session message");
//! assert_eq!(opened.sender.role(), Role::Counselor);
//! assert_eq!(opened.sender.identity(), &counselor.public());
//! assert_eq!(opened.sender.display_name(), Some("Dr. Rivera"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod certificate;
mod consts;
mod envelope;
mod role;
mod symmetric;
mod token;
mod trust;

pub use certificate::{
    CertificateError, IssueError, SenderAddress, SenderCertificate, SenderClaims,
    ServerCertificate, ServerKey, ValidatedSender, is_valid_display_name,
};
pub use consts::*;
pub use envelope::{
    EpochSeed, OpenError, Opened, SealError, SealedEnvelope, open, open_with_grace, seal,
    seal_starting_epoch,
};
pub use role::Role;
pub use symmetric::{
    EnvelopeTag, StagedEnvelope, StoredTagWindow, SymmetricOpenError, SymmetricSealError,
    SymmetricSealer, TagDirectory, TagWindow,
};
pub use token::{DeliveryToken, ProfileKey, TokenVerifier, relay_check};
pub use trust::{TrustConfigError, TrustRoots};
