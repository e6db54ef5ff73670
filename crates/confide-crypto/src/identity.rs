//! Long-term identities.
//!
//! An identity is an Ed25519 signing key plus an X25519 agreement key. The signing key signs
//! the agreement key's public half (with the label [`labels::IDENTITY_BINDING`]), so anyone
//! holding the 128-byte [`IdentityPublicKey`] can check that both halves belong together.
//! Parsing an identity verifies that binding; an [`IdentityPublicKey`] value is always valid.

use core::fmt;

use crate::{
    CryptoError, CryptoRng,
    codec::{DecodeError, Reader},
    kdf::labels,
    secret::SecretBytes,
    signing::{Signature, SigningKey, VerifyingKey},
    stored::AuthenticatedReader,
    x25519::{X25519KeyPair, X25519PublicKey, X25519Secret},
};

/// Encoded length of an [`IdentityPublicKey`]: signing key, agreement key, binding signature.
pub const IDENTITY_PUBLIC_KEY_LEN: usize = 32 + 32 + 64;

/// The public half of an identity, with its self-signed binding. Always valid once constructed.
#[derive(Clone, Copy)]
pub struct IdentityPublicKey {
    signing: SigningHalf,
    agreement: X25519PublicKey,
    binding: Signature,
}

/// The Ed25519 half of an identity: decompressed when it was parsed from outside (which
/// checks the point), or kept as its 32 checked bytes when it came back from authenticated
/// storage, where decompressing it up front was most of the cost of loading an account with
/// many conversations (three identities each). A stored key is decompressed (and checked
/// again) only when it verifies a signature.
#[derive(Clone, Copy)]
enum SigningHalf {
    Decompressed(VerifyingKey),
    Stored([u8; 32]),
}

impl SigningHalf {
    fn to_bytes(self) -> [u8; 32] {
        match self {
            Self::Decompressed(key) => key.to_bytes(),
            Self::Stored(bytes) => bytes,
        }
    }

    fn key(self) -> Result<VerifyingKey, CryptoError> {
        match self {
            Self::Decompressed(key) => Ok(key),
            Self::Stored(bytes) => VerifyingKey::from_bytes(&bytes),
        }
    }
}

fn binding_message(agreement: &X25519PublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(labels::IDENTITY_BINDING.len() + 32);
    m.extend_from_slice(labels::IDENTITY_BINDING);
    m.extend_from_slice(agreement.as_bytes());
    m
}

impl IdentityPublicKey {
    /// The Ed25519 key that signs for this identity. Fails only for an identity read from
    /// authenticated storage whose key, checked when it was stored, no longer decompresses
    /// (storage that was not written by us).
    pub fn signing_key(&self) -> Result<VerifyingKey, CryptoError> {
        self.signing.key()
    }

    /// The X25519 key used in key agreement.
    #[must_use]
    pub fn agreement_key(&self) -> &X25519PublicKey {
        &self.agreement
    }

    /// The 128-byte encoding: `signing (32) || agreement (32) || binding signature (64)`.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; IDENTITY_PUBLIC_KEY_LEN] {
        let mut out = [0u8; IDENTITY_PUBLIC_KEY_LEN];
        let (a, rest) = out.split_at_mut(32);
        let (b, c) = rest.split_at_mut(32);
        a.copy_from_slice(&self.signing.to_bytes());
        b.copy_from_slice(self.agreement.as_bytes());
        c.copy_from_slice(&self.binding.to_bytes());
        out
    }

    /// The 64 bytes that name this identity: `signing || agreement` (no signature).
    #[must_use]
    pub fn key_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        let (a, b) = out.split_at_mut(32);
        a.copy_from_slice(&self.signing.to_bytes());
        b.copy_from_slice(self.agreement.as_bytes());
        out
    }

    /// Parses exactly 128 bytes and verifies the binding signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let id = Self::read(&mut r)?;
        r.finish()?;
        Ok(id)
    }

    /// Reads 128 bytes from `r` and verifies the binding signature.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let stored = Self::read_unverified(r)?;
        let signing = VerifyingKey::from_bytes(&stored.signing.to_bytes()).map_err(|_| {
            DecodeError::InvalidValue {
                field: "identity signing key",
            }
        })?;
        let id = Self {
            signing: SigningHalf::Decompressed(signing),
            ..stored
        };
        if X25519PublicKey::from_canonical_bytes(id.agreement.to_bytes()).is_none() {
            return Err(DecodeError::InvalidValue {
                field: "identity agreement key",
            });
        }
        signing
            .verify(&binding_message(&id.agreement), &id.binding)
            .map_err(|_| DecodeError::InvalidValue {
                field: "identity binding signature",
            })?;
        Ok(id)
    }

    /// Reads 128 bytes of authenticated stored state **without** re-verifying the binding
    /// signature or decompressing the Ed25519 key (it was checked to be a valid, non-weak
    /// point before it was stored, and is checked again when it verifies a signature): the
    /// identity was verified before it was stored. Only an [`AuthenticatedReader`] (state that
    /// came back through authenticated encryption, see [`crate::stored`]) is accepted;
    /// everything else must use [`IdentityPublicKey::read`].
    pub fn read_authenticated(r: &mut AuthenticatedReader<'_>) -> Result<Self, DecodeError> {
        Self::read_unverified(r)
    }

    /// Reads the three parts without checking any of them.
    fn read_unverified(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let signing = SigningHalf::Stored(r.array::<32>()?);
        let agreement = X25519PublicKey::from_bytes(r.array::<32>()?);
        let binding = Signature::from_bytes(r.array::<64>()?);
        Ok(Self {
            signing,
            agreement,
            binding,
        })
    }

    /// Verifies a signature made by this identity over `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        self.signing.key()?.verify(message, signature)
    }
}

impl PartialEq for IdentityPublicKey {
    fn eq(&self, other: &Self) -> bool {
        // The binding signature is deterministic and implied by the keys; identity is the keys.
        crate::secret::ct_eq(&self.key_bytes(), &other.key_bytes())
    }
}

impl Eq for IdentityPublicKey {}

impl core::hash::Hash for IdentityPublicKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.key_bytes().hash(state);
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An identity key names a person: never print it.
        f.write_str("IdentityPublicKey(..)")
    }
}

/// A full identity: both secret keys and the signed public half. Zeroized on drop.
#[derive(Clone)]
pub struct IdentityKeyPair {
    signing: SigningKey,
    agreement: X25519KeyPair,
    public: IdentityPublicKey,
}

/// Length of [`IdentityKeyPair::to_secret_bytes`]: signing seed then agreement secret.
pub const IDENTITY_SECRET_LEN: usize = 64;

impl IdentityKeyPair {
    /// A fresh identity.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let signing = SigningKey::generate(rng);
        let agreement = X25519KeyPair::generate(rng);
        Self::assemble(signing, agreement)
    }

    fn assemble(signing: SigningKey, agreement: X25519KeyPair) -> Self {
        let binding = signing.sign(&binding_message(&agreement.public_key()));
        let public = IdentityPublicKey {
            signing: SigningHalf::Decompressed(signing.verifying_key()),
            agreement: agreement.public_key(),
            binding,
        };
        Self {
            signing,
            agreement,
            public,
        }
    }

    /// Rebuilds an identity from [`Self::to_secret_bytes`].
    #[must_use]
    pub fn from_secret_bytes(bytes: &SecretBytes<IDENTITY_SECRET_LEN>) -> Self {
        let (s, a) = bytes.expose().split_at(32);
        let mut seed = [0u8; 32];
        seed.copy_from_slice(s);
        let signing = SigningKey::from_seed(&seed);
        let mut secret = [0u8; 32];
        secret.copy_from_slice(a);
        let agreement = X25519KeyPair::from_secret(X25519Secret::from_bytes(secret));
        zeroize::Zeroize::zeroize(&mut seed);
        zeroize::Zeroize::zeroize(&mut secret);
        Self::assemble(signing, agreement)
    }

    /// Both secrets, for encrypted storage only.
    #[must_use]
    pub fn to_secret_bytes(&self) -> SecretBytes<IDENTITY_SECRET_LEN> {
        let mut out = zeroize::Zeroizing::new([0u8; IDENTITY_SECRET_LEN]);
        let (s, a) = out.split_at_mut(32);
        s.copy_from_slice(self.signing.to_secret_bytes().expose());
        a.copy_from_slice(self.agreement.secret().to_secret_bytes().expose());
        SecretBytes::copy_from(&out)
    }

    /// The public identity.
    #[must_use]
    pub fn public(&self) -> IdentityPublicKey {
        self.public
    }

    /// Signs `message` with the identity's Ed25519 key.
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// The agreement key pair.
    #[must_use]
    pub fn agreement(&self) -> &X25519KeyPair {
        &self.agreement
    }
}

impl PartialEq for IdentityKeyPair {
    fn eq(&self, other: &Self) -> bool {
        self.signing == other.signing && self.agreement == other.agreement
    }
}

impl Eq for IdentityKeyPair {}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The public half would identify a person; the rest is secret.
        let Self {
            signing: _,
            agreement: _,
            public: _,
        } = self;
        f.write_str("IdentityKeyPair([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn a_stored_identity_checks_its_signing_key_when_it_verifies() {
        let mut rng = ChaCha20Rng::from_seed([10; 32]);
        let id = IdentityKeyPair::generate(&mut rng);
        let bytes = id.public().to_bytes();
        let stored =
            crate::stored::AuthenticatedPlaintext::new(zeroize::Zeroizing::new(bytes.to_vec()));
        let read = IdentityPublicKey::read_authenticated(&mut stored.reader()).unwrap();
        // Same identity, same bytes, and it verifies what the identity signs.
        assert_eq!(read, id.public());
        assert_eq!(read.to_bytes(), bytes);
        assert!(read.verify(b"m", &id.sign(b"m")).is_ok());
        assert_eq!(
            read.verify(b"n", &id.sign(b"m")),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            read.signing_key().unwrap().to_bytes(),
            id.public().signing_key().unwrap().to_bytes()
        );
        // A signing key that is not a valid point (y = 2 does not decompress) is refused at
        // its first use, with an error, not accepted and not a panic.
        let mut broken = bytes;
        broken[..32].copy_from_slice(&[0; 32]);
        broken[0] = 2;
        let stored =
            crate::stored::AuthenticatedPlaintext::new(zeroize::Zeroizing::new(broken.to_vec()));
        let read = IdentityPublicKey::read_authenticated(&mut stored.reader()).unwrap();
        assert_eq!(
            read.verify(b"m", &id.sign(b"m")),
            Err(CryptoError::InvalidSigningKey)
        );
        assert!(read.signing_key().is_err());
        // From outside, the same bytes are refused when parsed.
        assert!(IdentityPublicKey::from_bytes(&broken).is_err());
    }

    #[test]
    fn round_trip_and_binding() {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let id = IdentityKeyPair::generate(&mut rng);
        let bytes = id.public().to_bytes();
        assert_eq!(IdentityPublicKey::from_bytes(&bytes).unwrap(), id.public());
        let restored = IdentityKeyPair::from_secret_bytes(&id.to_secret_bytes());
        assert_eq!(restored, id);
        assert_eq!(restored.public().to_bytes(), bytes);
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let mut rng = ChaCha20Rng::from_seed([10; 32]);
        let bytes = IdentityKeyPair::generate(&mut rng).public().to_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes;
                b[i] ^= 1 << bit;
                assert!(
                    IdentityPublicKey::from_bytes(&b).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn trailing_and_short_input_refused() {
        let mut rng = ChaCha20Rng::from_seed([11; 32]);
        let bytes = IdentityKeyPair::generate(&mut rng).public().to_bytes();
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(IdentityPublicKey::from_bytes(&long).is_err());
        assert!(IdentityPublicKey::from_bytes(&bytes[..127]).is_err());
    }
}
