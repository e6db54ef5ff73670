//! Cryptographic building blocks for Confide.
//!
//! This crate holds no protocol logic. It gives the protocol crates:
//!
//! * typed secrets ([`secret`]) that zeroize on drop, print as redacted and compare in
//!   constant time;
//! * identities ([`identity`]): an Ed25519 signing key plus an X25519 agreement key whose
//!   public half the signing key signs;
//! * X25519 ([`x25519`]) that refuses all-zero (non-contributory) results;
//! * Ed25519 ([`signing`]) verified strictly (no malleable signatures, no weak keys);
//! * HKDF-SHA256 and HMAC-SHA256 ([`kdf`]) where every `info` label is a named constant;
//! * ChaCha20-Poly1305 ([`aead`]);
//! * ML-KEM-768 ([`kem`]);
//! * length-hiding padding ([`padding`]);
//! * readers of authenticated stored state ([`stored`]) that alone may skip checks made when
//!   the state was written;
//! * re-exported from the vocabulary crate `confide-wire`: the strict, canonical byte codec
//!   ([`codec`]), the wall-clock [`Timestamp`] ([`time`]) and the secret storage
//!   ([`secret::SecretBytes`], [`define_secret!`]).
//!
//! Nothing here reads a clock or the operating system's random source: callers pass time and
//! a [`CryptoRng`] in.
//!
//! ```
//! use confide_crypto::identity::IdentityKeyPair;
//! use chacha20::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha20Rng::from_seed([7; 32]);
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let public = alice.public();
//! // The public identity carries a self-signature that binds the agreement key.
//! let parsed = confide_crypto::identity::IdentityPublicKey::from_bytes(&public.to_bytes()).unwrap();
//! assert_eq!(parsed, public);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod aead;
pub mod identity;
pub mod kdf;
pub mod kem;
pub mod padding;
pub mod secret;
pub mod signing;
pub mod stored;
pub mod x25519;

mod error;

pub use confide_wire::{
    CryptoRng, Duration, FrameId, Timestamp, codec, define_secret, random_array, time,
};
pub use error::CryptoError;
