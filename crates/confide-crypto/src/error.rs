use thiserror::Error;

/// Failures of the primitives. None of them carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// An X25519 exchange produced the all-zero output: the peer sent a low-order point.
    #[error("X25519 exchange with a low-order point was refused")]
    NonContributoryAgreement,
    /// An Ed25519 public key was not a valid point or had small order.
    #[error("invalid or weak Ed25519 public key")]
    InvalidSigningKey,
    /// An Ed25519 signature did not verify under strict rules.
    #[error("signature verification failed")]
    BadSignature,
    /// AEAD authentication failed (wrong key, tampered ciphertext or associated data).
    #[error("authenticated decryption failed")]
    AeadFailure,
    /// An ML-KEM encapsulation key failed its validity checks.
    #[error("invalid ML-KEM-768 encapsulation key")]
    InvalidKemKey,
    /// A KDF was asked for more output than it can give.
    #[error("KDF output length invalid")]
    KdfLength,
    /// Padding bytes were not in the canonical form.
    #[error("invalid padding")]
    BadPadding,
    /// The input is larger than the documented maximum.
    #[error("input of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// Length that was given.
        len: usize,
        /// The limit.
        max: usize,
    },
}
