//! Ed25519 signatures, verified strictly.
//!
//! Verification uses `verify_strict`: non-canonical encodings, small-order public keys and
//! small-order `R` components are all refused, so a signature cannot be mauled into another
//! valid one and a weak key cannot sign "for everyone". Every signed message in Confide starts
//! with a distinct context label (see [`crate::kdf::labels`]) so a signature made for one
//! purpose is never valid for another.

use core::fmt;

use crate::{CryptoError, CryptoRng};
use ed25519_dalek::Signer;
use subtle::ConstantTimeEq;

/// Length of an Ed25519 public key.
pub const VERIFYING_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 signing key. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A fresh key from the caller's random source.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        zeroize::Zeroize::zeroize(&mut seed);
        Self(key)
    }

    /// From its 32-byte seed.
    #[must_use]
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The seed, for encrypted storage only.
    #[must_use]
    pub fn to_secret_bytes(&self) -> crate::secret::SecretBytes<32> {
        crate::secret::SecretBytes::copy_from(self.0.as_bytes())
    }

    /// The public half.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// Signs `message` (deterministic, RFC 8032).
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl ConstantTimeEq for SigningKey {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.as_bytes().ct_eq(other.0.as_bytes())
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SigningKey {}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(_) = self;
        f.write_str("SigningKey([REDACTED])")
    }
}

/// A validated Ed25519 public key: a canonical point that is not of small order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// Parses and validates a public key; refuses invalid and weak (small-order) points.
    pub fn from_bytes(bytes: &[u8; VERIFYING_KEY_LEN]) -> Result<Self, CryptoError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| CryptoError::InvalidSigningKey)?;
        if key.is_weak() || key.to_bytes() != *bytes {
            return Err(CryptoError::InvalidSigningKey);
        }
        Ok(Self(key))
    }

    /// The 32-byte encoding.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; VERIFYING_KEY_LEN] {
        self.0.to_bytes()
    }

    /// Verifies `signature` on `message` under strict rules.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl core::hash::Hash for VerifyingKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bytes().hash(state);
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyingKey(..)")
    }
}

/// An Ed25519 signature (not yet verified: it is just 64 bytes until a key accepts it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// From its 64-byte encoding.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Self(bytes)
    }

    /// The 64-byte encoding.
    #[must_use]
    pub const fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn sign_verify_and_reject() {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let k = SigningKey::generate(&mut rng);
        let vk = k.verifying_key();
        let sig = k.sign(b"hello");
        assert!(vk.verify(b"hello", &sig).is_ok());
        assert_eq!(vk.verify(b"hellp", &sig), Err(CryptoError::BadSignature));
        let mut bad = sig.to_bytes();
        bad[10] ^= 1;
        assert!(vk.verify(b"hello", &Signature::from_bytes(bad)).is_err());
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (small order) encodes as 0x01 followed by zeros.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            VerifyingKey::from_bytes(&identity),
            Err(CryptoError::InvalidSigningKey)
        );
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let k = SigningKey::generate(&mut rng);
        let vk = k.verifying_key();
        let sig = k.sign(b"m").to_bytes();
        // Add the group order L to S: same signature mathematically, non-canonical encoding.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig[32..]);
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(l[i]) + carry;
            s[i] = (v & 0xff) as u8;
            carry = v >> 8;
        }
        let mut mauled = sig;
        mauled[32..].copy_from_slice(&s);
        assert!(vk.verify(b"m", &Signature::from_bytes(mauled)).is_err());
    }
}
