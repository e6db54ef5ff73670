//! ML-KEM-768 (FIPS 203) for the post-quantum half of the handshake.
//!
//! Decapsulation keys are stored as their 64-byte seed `d || z` (the FIPS 203 preferred
//! form) and expanded when used. Encapsulation keys are checked on parse (the FIPS 203
//! modulus check), so an invalid key never reaches encapsulation.

use core::fmt;
use std::sync::OnceLock;

use crate::{CryptoError, CryptoRng, secret::SharedSecret};
use ml_kem::{Decapsulate, Encapsulate, KeyExport, MlKem768, array::Array};
use zeroize::Zeroize;

/// Length of an ML-KEM-768 encapsulation (public) key.
pub const KEM_PUBLIC_KEY_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// Length of the decapsulation-key seed.
pub const KEM_SEED_LEN: usize = 64;

type Ek = ml_kem::EncapsulationKey<MlKem768>;
type Dk = ml_kem::DecapsulationKey<MlKem768>;

/// A validated ML-KEM-768 encapsulation key.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey {
    key: Box<Ek>,
    encoded: Box<[u8; KEM_PUBLIC_KEY_LEN]>,
}

impl KemPublicKey {
    /// Parses and validates 1184 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; KEM_PUBLIC_KEY_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidKemKey)?;
        let key = Ek::new(&Array::from(arr)).map_err(|_| CryptoError::InvalidKemKey)?;
        Ok(Self {
            key: Box::new(key),
            encoded: Box::new(arr),
        })
    }

    /// The 1184-byte encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; KEM_PUBLIC_KEY_LEN] {
        &self.encoded
    }

    /// Encapsulates a fresh shared secret to this key.
    pub fn encapsulate<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> (KemCiphertext, SharedSecret) {
        let (ct, mut ss) = self.key.encapsulate_with_rng(rng);
        let mut ct_bytes = [0u8; KEM_CIPHERTEXT_LEN];
        ct_bytes.copy_from_slice(ct.as_slice());
        let mut ss_bytes = zeroize::Zeroizing::new([0u8; 32]);
        ss_bytes.copy_from_slice(ss.as_slice());
        ss.zeroize();
        (
            KemCiphertext(Box::new(ct_bytes)),
            SharedSecret::copy_from(&ss_bytes),
        )
    }
}

impl fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemPublicKey(..)")
    }
}

/// An ML-KEM-768 ciphertext (1088 bytes). Any bytes of the right length decapsulate (to a
/// pseudorandom value when tampered: implicit rejection), so failure shows up at the AEAD.
#[derive(Clone, PartialEq, Eq)]
pub struct KemCiphertext(Box<[u8; KEM_CIPHERTEXT_LEN]>);

impl KemCiphertext {
    /// From exactly 1088 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; KEM_CIPHERTEXT_LEN] = bytes.try_into().ok()?;
        Some(Self(Box::new(arr)))
    }

    /// The encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; KEM_CIPHERTEXT_LEN] {
        &self.0
    }
}

impl fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemCiphertext(..)")
    }
}

/// An ML-KEM-768 key pair, stored as its seed and expanded in memory the first time it is
/// used (the expansion costs about as much as a decapsulation; a restored prekey store holds
/// dozens of these, most of which are never used before the next save). Zeroized on drop.
#[derive(Clone)]
pub struct KemKeyPair {
    seed: crate::secret::SecretBytes<KEM_SEED_LEN>,
    /// The expanded decapsulation key and the public key, made from `seed` on first use.
    expanded: OnceLock<Box<ExpandedKemKey>>,
}

/// What a seed expands to (the decapsulation key zeroizes itself when dropped).
#[derive(Clone)]
struct ExpandedKemKey {
    decapsulation: Dk,
    public: KemPublicKey,
}

impl ExpandedKemKey {
    fn from_seed(seed: &crate::secret::SecretBytes<KEM_SEED_LEN>) -> Self {
        let dk = Dk::from_seed(Array::from(*seed.expose()));
        let ek = dk.encapsulation_key().clone();
        let mut encoded = [0u8; KEM_PUBLIC_KEY_LEN];
        encoded.copy_from_slice(ek.to_bytes().as_slice());
        Self {
            decapsulation: dk,
            public: KemPublicKey {
                key: Box::new(ek),
                encoded: Box::new(encoded),
            },
        }
    }
}

impl KemKeyPair {
    /// A fresh key pair (expanded at once: a new key is about to be published).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let pair = Self::from_seed(crate::secret::SecretBytes::random(rng));
        let _ = pair.expanded();
        pair
    }

    /// A key pair from its 64-byte seed (FIPS 203 `ML-KEM.KeyGen_internal(d, z)`). The
    /// expansion is deferred to the first use of the public key or of decapsulation, so
    /// restoring a store of many keys costs nothing until one of them is needed.
    #[must_use]
    pub fn from_seed(seed: crate::secret::SecretBytes<KEM_SEED_LEN>) -> Self {
        Self {
            seed,
            expanded: OnceLock::new(),
        }
    }

    fn expanded(&self) -> &ExpandedKemKey {
        self.expanded
            .get_or_init(|| Box::new(ExpandedKemKey::from_seed(&self.seed)))
    }

    /// The seed, for encrypted storage only.
    #[must_use]
    pub fn seed(&self) -> &crate::secret::SecretBytes<KEM_SEED_LEN> {
        &self.seed
    }

    /// The public half (expands the seed if this is its first use).
    #[must_use]
    pub fn public_key(&self) -> &KemPublicKey {
        &self.expanded().public
    }

    /// Decapsulates `ct` (implicit rejection: never fails, tampering yields an unrelated secret).
    #[must_use]
    pub fn decapsulate(&self, ct: &KemCiphertext) -> SharedSecret {
        let mut ss = self
            .expanded()
            .decapsulation
            .decapsulate(&Array::from(*ct.0));
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        out.copy_from_slice(ss.as_slice());
        ss.zeroize();
        SharedSecret::copy_from(&out)
    }
}

impl PartialEq for KemKeyPair {
    fn eq(&self, other: &Self) -> bool {
        self.seed == other.seed
    }
}

impl Eq for KemKeyPair {}

impl fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            seed: _,
            expanded: _,
        } = self;
        f.write_str("KemKeyPair([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn encapsulate_decapsulate() {
        let mut rng = ChaCha20Rng::from_seed([12; 32]);
        let kp = KemKeyPair::generate(&mut rng);
        let pk = KemPublicKey::from_bytes(kp.public_key().as_bytes()).unwrap();
        let (ct, ss) = pk.encapsulate(&mut rng);
        assert_eq!(kp.decapsulate(&ct), ss);
        let mut bad = *ct.as_bytes();
        bad[5] ^= 1;
        assert_ne!(
            kp.decapsulate(&KemCiphertext::from_bytes(&bad).unwrap()),
            ss
        );
        let again = KemKeyPair::from_seed(kp.seed().clone());
        assert!(
            again.expanded.get().is_none(),
            "a key from its seed is expanded on first use"
        );
        assert_eq!(again.decapsulate(&ct), ss);
        assert!(again.expanded.get().is_some());
        assert_eq!(again.public_key(), kp.public_key());
        let later = KemKeyPair::from_seed(kp.seed().clone());
        assert_eq!(later.public_key(), kp.public_key());
    }

    #[test]
    fn invalid_public_keys_are_refused() {
        assert!(KemPublicKey::from_bytes(&[0u8; 10]).is_err());
        // Coefficients of 0xFFF exceed q = 3329 and fail the modulus check.
        assert_eq!(
            KemPublicKey::from_bytes(&[0xFF; KEM_PUBLIC_KEY_LEN]),
            Err(CryptoError::InvalidKemKey)
        );
    }
}
