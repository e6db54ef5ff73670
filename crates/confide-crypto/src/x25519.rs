//! X25519 key agreement that refuses non-contributory results.
//!
//! A peer that sends a low-order point forces the shared secret to all zeros, which would
//! let an attacker predict session keys. Every agreement here checks the output and returns
//! [`CryptoError::NonContributoryAgreement`] instead.

use core::fmt;

use crate::{CryptoError, CryptoRng, secret::SharedSecret};
use subtle::ConstantTimeEq;
use zeroize::ZeroizeOnDrop;

/// Length of an X25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Whether a little-endian field element encoding is canonical: top bit clear and the value
/// below p = 2^255 - 19 (the only clear-top-bit encodings at or above p are
/// `ed ff .. ff 7f` to `ff ff .. ff 7f`).
fn is_canonical(bytes: &[u8; PUBLIC_KEY_LEN]) -> bool {
    let [first, middle @ .., last] = bytes;
    if last & 0x80 != 0 {
        return false;
    }
    let at_or_above_p = *last == 0x7f && middle.iter().all(|b| *b == 0xff) && *first >= 0xed;
    !at_or_above_p
}

/// An X25519 public key (a Montgomery u-coordinate).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct X25519PublicKey([u8; PUBLIC_KEY_LEN]);

impl X25519PublicKey {
    /// From its 32-byte encoding. Any 32 bytes decode; low-order points are caught at agreement.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// From a 32-byte encoding received from the wire, refusing non-canonical encodings: the
    /// top bit set, or a value at or above p = 2^255 - 19 (RFC 7748 §5 lets a decoder mask or
    /// reduce them, which would give one key several encodings). `None` for those.
    #[must_use]
    pub fn from_canonical_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Option<Self> {
        is_canonical(&bytes).then_some(Self(bytes))
    }

    /// The 32-byte encoding.
    #[must_use]
    pub const fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0
    }

    /// Borrows the encoding.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for X25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public keys can identify people; show only that one is present.
        f.write_str("X25519PublicKey(..)")
    }
}

/// An X25519 secret key. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct X25519Secret(x25519_dalek::StaticSecret);

impl X25519Secret {
    /// A fresh key from the caller's random source.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(x25519_dalek::StaticSecret::random_from_rng(rng))
    }

    /// From its 32-byte encoding (clamping happens at use).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(x25519_dalek::StaticSecret::from(bytes))
    }

    /// The secret encoding, for encrypted storage only.
    #[must_use]
    pub fn to_secret_bytes(&self) -> crate::secret::SecretBytes<32> {
        crate::secret::SecretBytes::copy_from(self.0.as_bytes())
    }

    /// The matching public key (one base-point multiplication).
    #[must_use]
    pub fn public_key(&self) -> X25519PublicKey {
        X25519PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// Diffie-Hellman with `their`; refuses an all-zero result.
    pub fn agree(&self, their: &X25519PublicKey) -> Result<SharedSecret, CryptoError> {
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(their.0));
        if !shared.was_contributory() {
            return Err(CryptoError::NonContributoryAgreement);
        }
        Ok(SharedSecret::copy_from(shared.as_bytes()))
    }
}

impl ZeroizeOnDrop for X25519Secret {}

impl ConstantTimeEq for X25519Secret {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.as_bytes().ct_eq(other.0.as_bytes())
    }
}

impl PartialEq for X25519Secret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for X25519Secret {}

impl fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(_) = self;
        f.write_str("X25519Secret([REDACTED])")
    }
}

/// A secret key together with its public key, so the base-point multiplication is done once.
#[derive(Clone, PartialEq, Eq)]
pub struct X25519KeyPair {
    secret: X25519Secret,
    public: X25519PublicKey,
}

impl X25519KeyPair {
    /// A fresh pair.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_secret(X25519Secret::generate(rng))
    }

    /// Derives the public half.
    #[must_use]
    pub fn from_secret(secret: X25519Secret) -> Self {
        let public = secret.public_key();
        Self { secret, public }
    }

    /// Reads `secret[32] || public[32]` and checks that the public key is the secret's (one
    /// base-point multiplication).
    pub fn read_checked(
        r: &mut crate::codec::Reader<'_>,
    ) -> Result<Self, crate::codec::DecodeError> {
        let secret = X25519Secret::from_bytes(r.array()?);
        let public = X25519PublicKey::from_bytes(r.array()?);
        if secret.public_key() != public {
            return Err(crate::codec::DecodeError::InvalidValue {
                field: "x25519 key pair",
            });
        }
        Ok(Self { secret, public })
    }

    /// Reads `secret[32] || public[32]` from authenticated stored state without recomputing
    /// the public key: they matched when the pair was stored (see [`crate::stored`]).
    pub fn read_authenticated(
        r: &mut crate::stored::AuthenticatedReader<'_>,
    ) -> Result<Self, crate::codec::DecodeError> {
        let secret = X25519Secret::from_bytes(r.array()?);
        let public = X25519PublicKey::from_bytes(r.array()?);
        Ok(Self { secret, public })
    }

    /// The secret half.
    #[must_use]
    pub fn secret(&self) -> &X25519Secret {
        &self.secret
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> X25519PublicKey {
        self.public
    }

    /// Diffie-Hellman with `their`; refuses an all-zero result.
    pub fn agree(&self, their: &X25519PublicKey) -> Result<SharedSecret, CryptoError> {
        self.secret.agree(their)
    }
}

impl fmt::Debug for X25519KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { secret, public } = self;
        f.debug_struct("X25519KeyPair")
            .field("secret", secret)
            .field("public", public)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn non_canonical_public_keys_are_refused() {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(
            super::X25519PublicKey::from_canonical_bytes(p).is_none(),
            "p itself"
        );
        let mut max = [0xffu8; 32];
        max[31] = 0x7f;
        assert!(
            super::X25519PublicKey::from_canonical_bytes(max).is_none(),
            "2^255 - 1"
        );
        let mut high = [9u8; 32];
        high[31] |= 0x80;
        assert!(
            super::X25519PublicKey::from_canonical_bytes(high).is_none(),
            "top bit"
        );
        let mut below = p;
        below[0] = 0xec;
        assert!(
            super::X25519PublicKey::from_canonical_bytes(below).is_some(),
            "p - 1"
        );
        assert!(super::X25519PublicKey::from_canonical_bytes([9; 32]).is_some());
    }

    use super::*;
    use chacha20::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn agreement_is_symmetric() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let a = X25519KeyPair::generate(&mut rng);
        let b = X25519KeyPair::generate(&mut rng);
        assert_eq!(
            a.agree(&b.public_key()).unwrap(),
            b.agree(&a.public_key()).unwrap()
        );
    }

    #[test]
    fn low_order_points_are_refused() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let a = X25519KeyPair::generate(&mut rng);
        // The zero point, the point of order 2 (u = 1) and an order-8 point.
        let mut order8 = [0u8; 32];
        order8.copy_from_slice(
            &hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .unwrap(),
        );
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [[0u8; 32], one, order8] {
            assert_eq!(
                a.agree(&X25519PublicKey::from_bytes(bad)),
                Err(CryptoError::NonContributoryAgreement)
            );
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let a = X25519KeyPair::generate(&mut rng);
        let shown = format!("{a:?}");
        assert!(shown.contains("REDACTED"));
        let hexed = hex::encode(a.secret().to_secret_bytes().expose());
        assert!(!shown.contains(&hexed));
    }
}
