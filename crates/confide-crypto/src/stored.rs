//! Bytes proven to come from authenticated storage, and the only way to read state without
//! re-running the checks that were made when it was written.
//!
//! Reading a long-lived identity or key pair from the network must check everything (the
//! identity's binding signature, that a stored public key matches its secret). State that
//! this library wrote itself and that comes back through authenticated encryption under the
//! app's storage key was checked when it was written; checking it again on every load costs a
//! signature verification per identity. The fast constructors that skip those checks take an
//! [`AuthenticatedReader`], which exists only inside an [`AuthenticatedPlaintext`], which only
//! [`crate::aead::open_authenticated`] produces. Bytes from anywhere else cannot reach them by
//! accident: there is no constructor from a slice.
//!
//! ```
//! # use confide_crypto::{aead, secret::AeadKey, identity::{IdentityKeyPair, IdentityPublicKey}};
//! # use chacha20::ChaCha20Rng;
//! # use rand_core::SeedableRng;
//! # let mut rng = ChaCha20Rng::from_seed([7; 32]);
//! let identity = IdentityKeyPair::generate(&mut rng).public();
//! let key = AeadKey::random(&mut rng);
//! let blob = aead::seal(&key, &[0; 12], b"state", &identity.to_bytes());
//! let opened = aead::open_authenticated(&key, &[0; 12], b"state", &blob).unwrap();
//! let mut r = opened.reader();
//! assert_eq!(IdentityPublicKey::read_authenticated(&mut r).unwrap(), identity);
//! r.finish().unwrap();
//! ```
//!
//! A plain [`Reader`] (bytes from anywhere) is refused at compile time:
//!
//! ```compile_fail
//! use confide_crypto::{codec::Reader, identity::IdentityPublicKey};
//! let bytes = [0u8; 128];
//! let mut r = Reader::new(&bytes);
//! let _ = IdentityPublicKey::read_authenticated(&mut r);
//! ```
//!
//! the key-pair constructor that trusted the caller is gone:
//!
//! ```compile_fail
//! use confide_crypto::x25519::{X25519KeyPair, X25519PublicKey, X25519Secret};
//! let secret = X25519Secret::from_bytes([1; 32]);
//! let _ = X25519KeyPair::from_parts_unchecked(secret, X25519PublicKey::from_bytes([9; 32]));
//! ```
//!
//! and an [`AuthenticatedReader`] cannot be made from a slice:
//!
//! ```compile_fail
//! use confide_crypto::{codec::Reader, stored::AuthenticatedReader};
//! let bytes = [0u8; 128];
//! let _ = AuthenticatedReader(Reader::new(&bytes));
//! ```

use core::ops::{Deref, DerefMut};

use zeroize::Zeroizing;

use crate::codec::{DecodeError, Reader};

/// A plaintext that authenticated under a key the caller holds (wiped when dropped).
///
/// Only [`crate::aead::open_authenticated`] and [`crate::aead::open_extended_authenticated`]
/// make one. Use it only for state the app sealed itself under its storage key.
pub struct AuthenticatedPlaintext(Zeroizing<Vec<u8>>);

impl AuthenticatedPlaintext {
    pub(crate) fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// A reader over the whole plaintext that keeps the proof of authentication.
    #[must_use]
    pub fn reader(&self) -> AuthenticatedReader<'_> {
        AuthenticatedReader(Reader::new(&self.0))
    }

    /// The plaintext, without the proof.
    #[must_use]
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl Deref for AuthenticatedPlaintext {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl core::fmt::Debug for AuthenticatedPlaintext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Stored state holds secrets: only its length is shown.
        let Self(plaintext) = self;
        f.debug_struct("AuthenticatedPlaintext")
            .field("len", &plaintext.len())
            .finish_non_exhaustive()
    }
}

/// A [`Reader`] over authenticated plaintext (it dereferences to one for ordinary fields).
/// It has no public constructor: it comes from [`AuthenticatedPlaintext::reader`] or from
/// [`AuthenticatedReader::authenticated_var32`] on another authenticated reader.
#[derive(Debug)]
pub struct AuthenticatedReader<'a>(Reader<'a>);

impl<'a> AuthenticatedReader<'a> {
    /// Reads a `u32`-length-prefixed field (at most `max` bytes) as a nested authenticated
    /// reader: a part of authenticated bytes is authenticated.
    pub fn authenticated_var32(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<AuthenticatedReader<'a>, DecodeError> {
        Ok(AuthenticatedReader(Reader::new(self.0.var32(field, max)?)))
    }

    /// Succeeds only if every byte has been read.
    pub fn finish(self) -> Result<(), DecodeError> {
        self.0.finish()
    }
}

impl<'a> Deref for AuthenticatedReader<'a> {
    type Target = Reader<'a>;

    fn deref(&self) -> &Reader<'a> {
        &self.0
    }
}

impl DerefMut for AuthenticatedReader<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
