//! Confide's core: asynchronous, post-quantum hybrid session setup and the Double Ratchet.
//!
//! * [`PreKeyStore`] holds a responder's prekeys and publishes [`PreKeyBundle`]s.
//! * [`Session::initiate`] starts a session from a verified bundle (X3DH + ML-KEM-768, the
//!   shape of Signal's PQXDH); [`SessionRecord::decrypt`] accepts it on the other side,
//!   consuming one-time prekeys only after the first message authenticates and refusing replays.
//! * The Double Ratchet gives forward secrecy and post-compromise security, tolerates loss and
//!   reordering within named limits ([`consts`]), and refuses duplicates with a distinct error.
//! * Decryption is transactional: a message that fails leaves every byte of state unchanged.
//! * [`SafetyNumber`] lets two people check they talk to each other; [`storage`] encrypts state
//!   at rest.
//!
//! The byte-level specification is `docs/spec.md` in the repository.
//!
//! ```
//! use chacha20::ChaCha20Rng;
//! use confide_crypto::{Timestamp, identity::IdentityKeyPair};
//! use confide_session::{
//!     ExpectedIdentity, IdentityChangePolicy, PreKeyBundle, PreKeyStore, SafetyNumber, Session,
//!     SessionRecord,
//! };
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha20Rng::from_seed([1; 32]);
//! let now = Timestamp::from_millis(1_700_000_000_000);
//!
//! // The counselor publishes prekeys, then goes offline.
//! let mut counselor = PreKeyStore::new(IdentityKeyPair::generate(&mut rng), &mut rng, now);
//! counselor.generate_one_time_prekeys(&mut rng, 5);
//! counselor.generate_one_time_kem_prekeys(&mut rng, 5);
//! let published = counselor.bundles()[0].to_bytes();
//!
//! // A client fetches a bundle, verifies it and writes first.
//! let client_id = IdentityKeyPair::generate(&mut rng);
//! let bundle = PreKeyBundle::from_bytes(&published)
//!     .unwrap()
//!     .verify(ExpectedIdentity::TrustOnFirstUse, &client_id.public())
//!     .unwrap();
//! let mut client = SessionRecord::with_session(Session::initiate(&mut rng, &client_id, &bundle).unwrap());
//! let first = client.encrypt(&mut rng, b"I need to talk to someone").unwrap();
//!
//! // The counselor comes online and reads it.
//! let mut with_client = SessionRecord::new();
//! let got = with_client
//!     .decrypt(&mut counselor, &first, now, IdentityChangePolicy::Refuse)
//!     .unwrap();
//! assert_eq!(&got.plaintext[..], b"I need to talk to someone");
//!
//! // And answers; both can compare the same safety number.
//! let reply = with_client.encrypt(&mut rng, b"I'm here. Take your time.").unwrap();
//! let mut unused = PreKeyStore::new(client_id.clone(), &mut rng, now);
//! let got = client.decrypt(&mut unused, &reply, now, IdentityChangePolicy::Refuse).unwrap();
//! assert_eq!(&got.plaintext[..], b"I'm here. Take your time.");
//! assert!(SafetyNumber::new(&client_id.public(), &got.remote_identity)
//!     .ct_equals(&SafetyNumber::new(&counselor.identity().public(), &client_id.public())));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod consts;
mod error;
pub mod message;
pub mod prekeys;
mod ratchet;
mod record;
mod safety;
mod session;
pub mod state;
pub mod storage;

pub use error::{BundleError, DecryptError, EncryptError, SessionSetupError, StateError};
pub use message::{ForkRecord, PreKeyMessage, RatchetMessage, SessionMessage};
pub use prekeys::{
    ExpectedIdentity, KemPreKeyKind, PreKeyBundle, PreKeyStore, VerifiedPreKeyBundle,
};
pub use ratchet::{CHAIN_FORK_LABEL, kdf_vector};
pub use record::{IdentityChangePolicy, RecordEncryptError, SessionRecord};
pub use safety::{COMPACT_LEN, SAFETY_NUMBER_VERSION, SafetyNumber};
pub use session::{Decrypted, KnownIdentities, Session, Side};
